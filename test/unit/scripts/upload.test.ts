import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { generateFile } from '../../../scripts/generate.js';
import { ROOT } from '../../../scripts/lib/processes.js';
import { ProgressView, resumableUpload } from '../../../scripts/upload.js';
import {
  cleanup,
  csvOf,
  http,
  LEADER_TOKEN,
  onCleanup,
  startLeader,
  tempDir,
  waitFor,
} from '../../helpers.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts the upload command: `child` to interrupt it, `done` for its exit code and output. */
function spawnUpload(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'upload.ts'), ...args], {
    env: { ...process.env, LEADER_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const run: Run = { code: null, stdout: '', stderr: '' };
  child.stdout?.on('data', (c: Buffer) => {
    run.stdout += c;
  });
  child.stderr?.on('data', (c: Buffer) => {
    run.stderr += c;
  });
  const done = new Promise<Run>((resolve) =>
    child.on('close', (code) => {
      run.code = code;
      resolve(run);
    }),
  );
  return { child, done };
}

function runUpload(args: string[]): Promise<Run> {
  return spawnUpload(args).done;
}

/**
 * A TCP proxy in front of the leader, as a flaky link: the first connection that carries more than `cutAfter` bytes
 * towards the leader is cut there, or stalled there (`stallAfter`: nothing more goes through, nothing closes); the
 * connections after it pass. `offsets` lists the Upload-Offset of each PATCH that went through, in order.
 */
async function startLink(
  target: string,
  rule: { cutAfter?: number; stallAfter?: number },
): Promise<{ url: string; offsets: number[]; triggered: boolean }> {
  const { hostname, port } = new URL(target);
  const state = { url: '', offsets: [] as number[], triggered: false };
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const limit = state.triggered ? Infinity : (rule.cutAfter ?? rule.stallAfter ?? Infinity);
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      const part = chunk.subarray(0, Math.max(0, limit - sent));
      sent += part.length;
      // A request head arrives in one write from these clients; the CSV bodies hold no such header.
      const offset = /^PATCH [^\r]*\r\n(?:[^\r]*\r\n)*?upload-offset: (\d+)\r\n/im.exec(
        part.toString('latin1'),
      );
      if (offset !== null) state.offsets.push(Number(offset[1]));
      if (part.length > 0) upstream.write(part);
      if (sent < limit) return;
      state.triggered = true;
      if (rule.cutAfter !== undefined) {
        client.destroy();
        upstream.destroy();
      } else {
        client.pause();
      }
    });
    upstream.on('data', (c: Buffer) => client.write(c));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(
    () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(resolve);
      }),
  );
  const address = server.address();
  state.url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  return state;
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

  it('retries a link dropped mid-upload and sends only the rest', async () => {
    const dir = await tempDir();
    const file = join(dir, 'promotions.csv');
    await generateFile(file, { rows: 20_000, seed: 6 });
    const size = (await readFile(file)).length;
    const leader = await startLeader();
    const link = await startLink(leader.url, { cutAfter: Math.floor(size * 0.6) });
    const result = await resumableUpload({
      leader: link.url,
      token: LEADER_TOKEN,
      path: file,
      storagePath: join(dir, 'uploads.json'),
    });
    expect(link.triggered).to.equal(true);
    expect(result.status, JSON.stringify(result.body)).to.equal(200);
    expect(result.body).to.include({ version: 1, rows: 20_000, sourceBytes: size });
    // The rest was sent from the offset the leader had, not the whole file again.
    expect(link.offsets).to.have.length(2);
    expect(link.offsets[0]).to.equal(0);
    expect(link.offsets[1]).to.be.greaterThan(0).and.lessThan(size);
  });

  it('stops on Ctrl-C (exit 130) and, run again, resumes the upload and prints the report', async () => {
    const dir = await tempDir();
    const file = join(dir, 'promotions.csv');
    await generateFile(file, { rows: 20_000, seed: 7 });
    const size = (await readFile(file)).length;
    const leader = await startLeader();
    // A link that stalls midway, so that the upload is still running when Ctrl-C comes.
    const link = await startLink(leader.url, { stallAfter: Math.floor(size * 0.4) });
    const args = [file, '--leader', link.url, '--state', join(dir, 'state.json')];
    const first = spawnUpload(args);
    await waitFor(async () => (link.triggered ? true : undefined), 20_000, 'the upload to reach the stall');
    first.child.kill('SIGINT');
    const stopped = await first.done;
    expect(stopped.code, stopped.stderr).to.equal(130);
    expect(stopped.stderr).to.include('run the same command again to resume');
    expect(leader.store.current()).to.equal(undefined);

    const again = await runUpload(args);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stderr).to.include('resuming an earlier upload of this file');
    expect(JSON.parse(again.stdout)).to.include({ version: 1, rows: 20_000, sourceBytes: size });
    // The second run sent the rest, from where the first stopped.
    expect(link.offsets).to.have.length(2);
    expect(link.offsets[0]).to.equal(0);
    expect(link.offsets[1]).to.be.greaterThan(0).and.lessThan(size);
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

  it('says it is retrying, and why, while the leader cannot be reached', async () => {
    const dir = await tempDir();
    const file = join(dir, 'a.csv');
    await writeFile(file, csvOf([['a', '1', '2018-01-04 06:01:20']]));
    // A port that was just free: nothing answers there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((r) => probe.close(() => r()));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'scripts', 'upload.ts'),
        file,
        '--leader',
        `http://127.0.0.1:${port}`,
        '--state',
        join(dir, 's.json'),
      ],
      { env: { ...process.env, LEADER_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    onCleanup(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c;
    });
    const line = await waitFor(
      () => stderr.split('\n').find((l) => l.includes('retrying in 1 s')),
      30_000,
      'a second retry notice',
    );
    expect(stderr).to.match(/^upload: .*ECONNREFUSED.*; retrying in 0 s \(retry 1 of 8\)$/m);
    expect(line).to.match(/^upload: .*ECONNREFUSED.*; retrying in 1 s \(retry 2 of 8\)$/);
  });

  it('once the bytes are out, says the leader is ingesting, with the time waited', () => {
    let t = 0;
    const tty: string[] = [];
    const bar = new ProgressView({ isTTY: true, write: (s: string) => tty.push(s) }, 5000, () => t);
    bar.ingesting(12_400);
    expect(tty).to.deep.equal(['\rsent; the leader is ingesting (12 s)\u001b[K']);
    const plain: string[] = [];
    const lines = new ProgressView({ write: (s: string) => plain.push(s) }, 5000, () => t);
    t = 6000;
    lines.ingesting(3000);
    t = 8000;
    lines.ingesting(5000);
    t = 11_000;
    lines.ingesting(8000);
    expect(plain).to.deep.equal([
      'upload: sent; the leader is ingesting (3 s)\n',
      'upload: sent; the leader is ingesting (8 s)\n',
    ]);
  });
});
