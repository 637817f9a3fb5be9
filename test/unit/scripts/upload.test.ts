import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { generateFile } from '../../../scripts/generate.js';
import { ROOT } from '../../../scripts/lib/processes.js';
import { ProgressView, resumableUpload } from '../../../scripts/upload.js';
import { cleanup, csvOf, http, LEADER_TOKEN, startLeader, tempDir } from '../../helpers.js';

function runUpload(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'upload.ts'), ...args], {
      env: { ...process.env, LEADER_TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('scripts/upload', () => {
  afterEach(cleanup);

  it('resumes an upload stopped midway where the leader left off, when run again', async () => {
    const dir = await tempDir();
    const file = join(dir, 'promotions.csv');
    await generateFile(file, { rows: 20_000, seed: 5 });
    const size = (await readFile(file)).length;
    const storagePath = join(dir, 'uploads.json');
    const leader = await startLeader();
    const common = { leader: leader.url, token: LEADER_TOKEN, path: file, storagePath, chunkSize: 64 * 1024 };

    // First run: stopped (as Ctrl-C does) once the third chunk is being sent, so two have arrived.
    const stopped = await new Promise<string>((resolve, reject) => {
      let upload: { abort(): Promise<void>; url: string | null } | undefined;
      let stopping = false;
      resumableUpload({
        ...common,
        onStart: (u) => {
          upload = u;
        },
        onProgress: (sent) => {
          if (stopping || upload === undefined || sent < 2 * common.chunkSize + 1) return;
          stopping = true;
          const u = upload;
          void u.abort().then(() => resolve(u.url as string));
        },
      }).catch(reject);
    });
    const offset = Number(
      (
        await http(stopped, {
          method: 'HEAD',
          headers: { authorization: `Bearer ${LEADER_TOKEN}`, 'tus-resumable': '1.0.0' },
        })
      ).headers.get('upload-offset'),
    );
    expect(offset).to.be.greaterThan(0).and.lessThan(size);
    expect(leader.store.current()).to.equal(undefined);

    // Second run: resumes the same upload from its offset and gets the ingest report.
    let resumed: boolean | undefined;
    let firstSent: number | undefined;
    const result = await resumableUpload({
      ...common,
      onStart: (_u, r) => {
        resumed = r;
      },
      onProgress: (sent) => {
        firstSent ??= sent;
      },
    });
    expect(resumed).to.equal(true);
    expect(result.status, JSON.stringify(result.body)).to.equal(200);
    expect(result.body).to.include({ version: 1, rows: 20_000, sourceBytes: size });
    expect(firstSent).to.be.greaterThan(offset - 1);
    // Finished uploads are forgotten: nothing left to resume.
    expect(JSON.parse(await readFile(storagePath, 'utf8'))).to.deep.equal({});
  });

  it('prints the report and exits 1 when the leader refuses the file; 0 when it becomes current', async () => {
    const dir = await tempDir();
    const leader = await startLeader();
    const bad = join(dir, 'bad.csv');
    await writeFile(
      bad,
      csvOf([
        ['a', '1', '2018-01-04 06:01:20'],
        ['b', 'abc', '2018-01-04 06:01:20'],
      ]),
    );
    const state = ['--state', join(dir, 'state.json'), '--leader', leader.url];
    const refused = await runUpload([bad, ...state]);
    expect(refused.code, refused.stderr).to.equal(1);
    expect(JSON.parse(refused.stdout)).to.deep.include({ error: 'INGEST_BAD_ROWS', badRowCount: 1 });
    expect(refused.stderr).to.match(/^upload: 100\.0% /m);

    const good = join(dir, 'good.csv');
    await writeFile(good, csvOf([['a', '1', '2018-01-04 06:01:20']]));
    const accepted = await runUpload([good, ...state]);
    expect(accepted.code, accepted.stderr).to.equal(0);
    expect(JSON.parse(accepted.stdout)).to.include({ version: 1, rows: 1 });
  });

  it('shows bytes, rate and ETA: a bar on a terminal, a line every few seconds otherwise', () => {
    let t = 0;
    const tty: string[] = [];
    const bar = new ProgressView({ isTTY: true, write: (s: string) => tty.push(s) }, 5000, () => t);
    bar.update(0, 10 * 1024 * 1024);
    t = 1000;
    bar.update(5 * 1024 * 1024, 10 * 1024 * 1024);
    expect(tty[1]).to.match(/^\r\[#{15}\.{15}\] 50\.0% 5\.0 MiB \/ 10\.0 MiB, 5\.0 MiB\/s, ETA 1 s/);

    const plain: string[] = [];
    const lines = new ProgressView({ write: (s: string) => plain.push(s) }, 5000, () => t);
    t = 6000;
    lines.update(1, 4);
    t = 7000;
    lines.update(2, 4);
    t = 11_000;
    lines.update(3, 4);
    t = 11_500;
    lines.update(4, 4);
    expect(plain.map((l) => l.split(' ')[1])).to.deep.equal(['25.0%', '75.0%', '100.0%']);
  });
});
