/**
 * Installs Debian packages a script needs when they are missing (`apt-get update` once per process, then
 * `apt-get install -y`). The dev cluster, the tests and the benchmarks run as root on Debian, where this works as
 * it is; elsewhere the error says which packages to install by hand.
 * Concurrency: calls are serialized through one promise chain, so two callers never run apt-get at once.
 */
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';

let aptUpdated = false;
let queue: Promise<unknown> = Promise.resolve();

function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    const child = spawn(command, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    child.stderr.on('data', (c: Buffer) => {
      // Only the tail matters for the error message; keep it bounded.
      stderr = (stderr + c.toString()).slice(-4000);
    });
    child.once('error', (err) => reject(new Error(`${command} could not run: ${err.message}`)));
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`)),
    );
  });
}

/** True when every path exists. */
export async function allExist(paths: readonly string[]): Promise<boolean> {
  for (const p of paths) {
    try {
      await access(p);
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * Installs `packages` unless every path in `provides` already exists (the files those packages put in place), then
 * checks that they do. `why` says in the log line what needs them.
 */
export function ensureDebianPackages(
  packages: readonly string[],
  provides: readonly string[],
  why: string,
): Promise<void> {
  const next = queue.then(async () => {
    if (await allExist(provides)) return;
    process.stderr.write(`${why}: installing Debian packages ${packages.join(' ')}\n`);
    try {
      if (!aptUpdated) {
        await run('apt-get', ['update']);
        aptUpdated = true;
      }
      await run('apt-get', ['install', '-y', ...packages]);
    } catch (err) {
      throw new Error(
        `${why}: could not install ${packages.join(' ')} (${(err as Error).message}); install them as root with ` +
          `apt-get install -y ${packages.join(' ')}`,
      );
    }
    if (!(await allExist(provides)))
      throw new Error(
        `${why}: ${provides.join(', ')} still missing after apt-get install ${packages.join(' ')}`,
      );
  });
  queue = next.catch(() => undefined);
  return next;
}
