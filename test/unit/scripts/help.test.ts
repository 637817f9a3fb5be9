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

function run(script: string, arg: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, arg], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('scripts: --help', function () {
  this.timeout(120_000);

  it('every script prints its usage for --help and exits 0; an unknown option exits 2 with the usage', async () => {
    const scripts = await entryScripts();
    expect(scripts.map((s) => s.path)).to.include.members([
      'scripts/generate.ts',
      'scripts/upload.ts',
      'scripts/bench/get.ts',
      'scripts/bench/ingest.ts',
    ]);
    const results = await Promise.all(
      scripts.map(async (s) => ({
        ...s,
        help: await run(s.path, '--help'),
        bad: s.shared ? await run(s.path, '--no-such-option') : undefined,
      })),
    );
    for (const r of results) {
      expect(r.help.code, `${r.path} --help: ${r.help.stderr}`).to.equal(0);
      expect(r.help.stdout.length, `${r.path} --help prints its usage`).to.be.greaterThan(40);
      if (r.bad === undefined) continue;
      expect(r.bad.code, `${r.path} --no-such-option`).to.equal(2);
      expect(r.bad.stderr).to.include("Unknown option '--no-such-option'");
    }
  });
});
