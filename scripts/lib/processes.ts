/**
 * Starts leader and replica processes and learns their address from their `listening` log line.
 * Used by the dev cluster, the integration tests and the benchmarks; every process started here is stopped by
 * `stop()`, which sends SIGTERM and waits for the exit (SIGKILL after a grace period).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Node options that run the TypeScript sources: tsx in the main thread, and in worker threads (the leader's parse
 * workers, the replica's disk read workers) through ts-workers.cjs, since Node 20 applies `--import` loaders to the main thread only.
 */
export const TS_NODE_ARGS: readonly string[] = Object.freeze([
  '--import',
  'tsx',
  '--require',
  join(ROOT, 'scripts', 'lib', 'ts-workers.cjs'),
]);

export interface RoleProcess {
  readonly role: 'leader' | 'replica';
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Log lines seen so far (JSON strings), newest last; at most the last 2,000. */
  readonly lines: string[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  /** Environment for the process (merged over a minimal base: PATH, HOME). */
  readonly env: Record<string, string>;
  /** Also append every log line to this file. */
  readonly logFile?: string;
  /** How long to wait for the `listening` line. */
  readonly timeoutMs?: number;
}

/** Spawns `node TS_NODE_ARGS {role}/main.ts` and resolves once it listens. */
export function startRole(role: 'leader' | 'replica', options: StartOptions): Promise<RoleProcess> {
  const level = options.env.LOG_LEVEL;
  if (level !== undefined && !['info', 'debug', 'trace'].includes(level)) {
    // The address is learned from the `listening` line, logged at info.
    return Promise.reject(new Error(`startRole needs LOG_LEVEL info, debug or trace, got ${level}`));
  }
  const child = spawn(process.execPath, [...TS_NODE_ARGS, join(ROOT, role, 'main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : undefined;
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      log?.end();
      return code;
    }
    log?.end();
    return child.exitCode;
  };
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
      log?.write(c);
    });
    const timer = setTimeout(() => {
      void stop('SIGKILL');
      reject(new Error(`${role} did not start within ${options.timeoutMs ?? 30_000} ms: ${stderr}`));
    }, options.timeoutMs ?? 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      if (lines.length > 2000) lines.shift();
      log?.write(`${line}\n`);
      if (line.includes('"msg":"listening"')) {
        const { port, url } = JSON.parse(line) as { port: number; url: string };
        clearTimeout(timer);
        resolve({ role, url, port, child, lines, stop });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited with ${code} before listening: ${stderr}`));
    });
  });
}

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
