/** Every script answers --help with its usage (exit 0), and a script parsed by scripts/lib/cli.ts refuses an unknown option (exit 2). */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { ROOT } from '../../../scripts/lib/processes.js';

/** The scripts one runs: those that parse a command line. */
async function entryScripts(): Promise<{ path: string; shared: boolean }[]> {
  const out: { path: string; shared: boolean }[] = [];
  for (const dir of ['scripts', 'scripts/bench']) {
    for (const name of (await readdir(join(ROOT, dir))).filter((n) => n.endsWith('.ts'))) {
      const src = await readFile(join(ROOT, dir, name), 'utf8');
      if (/parseArgs\(|parseCommandLine\(/.test(src)) {
        out.push({ path: `${dir}/${name}`, shared: src.includes('parseCommandLine(') });
      }
    }
  }
  return out;
}

/** Scripts started at once: each loads tsx and its imports, so starting them all at once starves a busy machine. */
const AT_ONCE = 2;
/**
 * How long one run may take before it counts as hanging (it is then killed and named): a script's --help only
 * parses its command line, so a minute is far past what a slow machine needs, and a hang still shows.
 */
const RUN_BUDGET_MS = 60_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The run was killed at RUN_BUDGET_MS. */
  hung: boolean;
}

function run(script: string, arg: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, arg], { cwd: ROOT });
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, RUN_BUDGET_MS);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, hung });
    });
  });
}

/** `fn` over `items`, at most `limit` at a time, results in the order of `items`. */
async function inTurns<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

describe('scripts: --help', () => {
  it('every script prints its usage for --help and exits 0; an unknown option exits 2 with the usage', async function () {
    const scripts = await entryScripts();
    // The budget scales with the scripts: every run may use its own budget, AT_ONCE at a time, in the worst case.
    const runs = scripts.length + scripts.filter((s) => s.shared).length;
    this.timeout(Math.ceil(runs / AT_ONCE) * RUN_BUDGET_MS + 30_000);
    expect(scripts.map((s) => s.path)).to.include.members([
      'scripts/generate.ts',
      'scripts/upload.ts',
      'scripts/bench/get.ts',
      'scripts/bench/ingest.ts',
    ]);
    const results = await inTurns(scripts, AT_ONCE, async (s) => ({
      ...s,
      help: await run(s.path, '--help'),
      bad: s.shared ? await run(s.path, '--no-such-option') : undefined,
    }));
    for (const r of results) {
      expect(r.help.hung, `${r.path} --help still ran after ${RUN_BUDGET_MS} ms`).to.equal(false);
      expect(r.bad?.hung ?? false, `${r.path} --no-such-option still ran after ${RUN_BUDGET_MS} ms`).to.equal(
        false,
      );
      expect(r.help.code, `${r.path} --help: ${r.help.stderr}`).to.equal(0);
      expect(r.help.stdout.length, `${r.path} --help prints its usage`).to.be.greaterThan(40);
      if (r.bad === undefined) continue;
      expect(r.bad.code, `${r.path} --no-such-option`).to.equal(2);
      expect(r.bad.stderr).to.include("Unknown option '--no-such-option'");
    }
  });
});
