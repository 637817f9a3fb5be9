import { appendFile, readdir, readFile, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import { expect } from 'chai';
import { loadSnapshot } from '../../../common/snapshot/reader.js';
import { generateFile, generateLines } from '../../../scripts/generate.js';
import {
  cleanup,
  csvOf,
  http,
  ingest,
  LEADER_TOKEN,
  startLeader,
  type TestLeader,
  tempDir,
  waitFor,
} from '../../helpers.js';

const TUS = { authorization: `Bearer ${LEADER_TOKEN}`, 'tus-resumable': '1.0.0' };
const CHUNK = { ...TUS, 'content-type': 'application/offset+octet-stream' };

/** Creates a tus upload of `length` bytes; returns its URL. */
async function create(leader: TestLeader, length: number, metadata = ''): Promise<string> {
  const res = await http(`${leader.url}/uploads`, {
    method: 'POST',
    headers: {
      ...TUS,
      'upload-length': String(length),
      ...(metadata ? { 'upload-metadata': metadata } : {}),
    },
  });
  expect(res.status, res.text).to.equal(201);
  return `${leader.url}${res.headers.get('location')}`;
}

async function offsetOf(url: string): Promise<number> {
  const res = await http(url, { method: 'HEAD', headers: TUS });
  expect(res.status).to.equal(200);
  return Number(res.headers.get('upload-offset'));
}

function patch(url: string, offset: number, body: Buffer) {
  return http(url, {
    method: 'PATCH',
    headers: { ...CHUNK, 'upload-offset': String(offset) },
    body: new Uint8Array(body),
  });
}

/**
 * Sends `bytes` as a PATCH body but cuts the connection after `sendBytes` of them, as a dropped link does: once the
 * leader has written some of them to the upload's file in `uploadDir` (so that there is something to resume from).
 */
async function patchAndCut(url: string, bytes: Buffer, sendBytes: number, uploadDir: string): Promise<void> {
  const req = request(url, {
    method: 'PATCH',
    headers: { ...CHUNK, 'upload-offset': '0', 'content-length': String(bytes.length) },
  });
  const ended = new Promise<void>((resolve) => {
    req.on('error', () => resolve());
    req.on('close', () => resolve());
  });
  req.write(bytes.subarray(0, sendBytes));
  const file = join(uploadDir, 'tus', basename(new URL(url, 'http://x').pathname));
  await waitFor(
    async () => ((await stat(file).catch(() => undefined))?.size ?? 0) > 0 || undefined,
    10_000,
    'the leader to write part of the cut body',
  );
  req.destroy();
  await ended;
}

/**
 * The idle timeout of the "kept open while ingested" tests, and their file: small enough to arrive in a moment (a
 * body that stalls longer than the timeout is rightly cut, and a loaded machine can stall a large one that long),
 * while the ingest is held past the timeout by holdCommitPastIdleTimeout, whatever the machine's speed.
 */
const HELD_IDLE_MS = 1000;
const HELD_ROWS = 1000;

/**
 * Holds the leader's next commit until the leader has cut a connection left silent from then on: proof that
 * IDLE_TIMEOUT_MS has passed while the request being ingested sent nothing either.
 */
function holdCommitPastIdleTimeout(leader: TestLeader): void {
  const commit = leader.store.commit.bind(leader.store);
  leader.store.commit = async (...args) => {
    leader.store.commit = commit;
    const silent = connect(Number(new URL(leader.url).port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      silent.once('error', reject);
      silent.once('close', () => resolve());
    });
    return commit(...args);
  };
}

/** Every id of a generated file answers the same in both snapshots; rows and source checksum are equal. */
async function expectSameSnapshot(a: TestLeader, b: TestLeader, csv: string): Promise<void> {
  const ma = a.store.current();
  const mb = b.store.current();
  expect(ma?.rows).to.be.greaterThan(0);
  expect({ rows: ma?.rows, dup: ma?.duplicates, src: ma?.sourceSha256 }).to.deep.equal({
    rows: mb?.rows,
    dup: mb?.duplicates,
    src: mb?.sourceSha256,
  });
  const sa = await loadSnapshot(a.store.filePath(ma!.version));
  const sb = await loadSnapshot(b.store.filePath(mb!.version));
  try {
    for (const line of csv.split('\n').filter((l) => l !== '')) {
      const id = line.split(',')[0];
      expect(sa.lookup(id)).to.equal(sb.lookup(id));
    }
  } finally {
    await sa.close();
    await sb.close();
  }
}

describe('leader resumable uploads (tus 1.0)', () => {
  afterEach(cleanup);

  it('resumes after the connection is cut mid-upload; the snapshot equals a single-shot upload', async () => {
    const csv = `${[...generateLines({ rows: 20_000, seed: 7, duplicates: 0.01 })].join('\n')}\n`;
    const bytes = Buffer.from(csv);
    const leader = await startLeader();
    const url = await create(leader, bytes.length, `filename ${Buffer.from('a.csv').toString('base64')}`);
    await patchAndCut(url, bytes, 300_000, leader.config.uploadDir);
    // The leader keeps what arrived; it answers the offset once the cut request is done with.
    const offset = await waitFor(
      async () => {
        const o = await offsetOf(url);
        return o > 0 ? o : undefined;
      },
      5000,
      'the offset of the cut upload',
    );
    expect(offset).to.be.at.most(300_000);
    expect(leader.store.current()).to.equal(undefined);
    const done = await patch(url, offset, bytes.subarray(offset));
    expect(done.status, done.text).to.equal(200);
    expect(done.json).to.include({
      version: 1,
      rows: leader.store.current()?.rows,
      sourceBytes: bytes.length,
    });
    // The upload's bytes are gone once ingested.
    expect((await http(url, { method: 'HEAD', headers: TUS })).status).to.equal(404);

    const single = await startLeader();
    await ingest(single.url, csv);
    await expectSameSnapshot(leader, single, csv);
  });

  it('resumes after a leader restart mid-upload', async () => {
    const csv = `${[...generateLines({ rows: 5000, seed: 8 })].join('\n')}\n`;
    const bytes = Buffer.from(csv);
    const first = await startLeader();
    const url = await create(first, bytes.length);
    expect((await patch(url, 0, bytes.subarray(0, 100_000))).status).to.equal(204);
    await first.server.close(100);
    await first.close();

    const second = await startLeader({ DATA_DIR: first.config.dataDir });
    const again = url.replace(first.url, second.url);
    expect(await offsetOf(again)).to.equal(100_000);
    const done = await patch(again, 100_000, bytes.subarray(100_000));
    expect(done.status, done.text).to.equal(200);
    expect(done.json).to.include({ version: 1, rows: 5000 });
  });

  it('ingests at start an upload that was complete when the leader stopped', async () => {
    const csv = `${[...generateLines({ rows: 5000, seed: 9 })].join('\n')}\n`;
    const bytes = Buffer.from(csv);
    const first = await startLeader();
    const url = await create(first, bytes.length);
    expect((await patch(url, 0, bytes.subarray(0, bytes.length - 1))).status).to.equal(204);
    await first.server.close(100);
    await first.close();
    // The last byte reached the disk, and the leader stopped before the ingest committed (SIGTERM, a crash).
    const id = url.slice(url.lastIndexOf('/') + 1);
    await appendFile(join(first.uploads.directory, id), bytes.subarray(bytes.length - 1));

    const second = await startLeader({ DATA_DIR: first.config.dataDir });
    const current = await waitFor(async () => second.store.current(), 10_000, 'the upload ingested at start');
    expect(current).to.include({ version: 1, rows: 5000 });
    await waitFor(
      async () => ((await readdir(second.uploads.directory)).length === 0 ? true : undefined),
      5000,
      'the ingested upload deleted',
    );
  });

  it('answers a refused file on the last PATCH with its bad rows, keeps the live version, drops the bytes', async () => {
    const leader = await startLeader();
    const good = csvOf([['a', '1', '2018-01-04 06:01:20']]);
    await ingest(leader.url, good);
    const bad = Buffer.from(
      csvOf([
        ['b', '2', '2018-01-04 06:01:20'],
        ['c', 'NaN', '2018-01-04 06:01:20'],
      ]),
    );
    const url = await create(leader, bad.length);
    const res = await patch(url, 0, bad);
    expect(res.status).to.equal(422);
    expect(res.json).to.deep.include({ error: 'INGEST_BAD_ROWS', badRowCount: 1 });
    expect(res.json.message).to.match(/^line 2: /);
    expect(leader.store.current()?.version).to.equal(1);
    expect(await readdir(leader.uploads.directory)).to.deep.equal([]);
  });

  it('passes the shrink guard only with metadata force=true', async () => {
    const leader = await startLeader();
    const big = csvOf([...generateLines({ rows: 10, seed: 1 })].map((l) => l.split(',')));
    await ingest(leader.url, big);
    const small = Buffer.from(csvOf([['x', '1', '2018-01-04 06:01:20']]));
    const refused = await patch(await create(leader, small.length), 0, small);
    expect(refused.json.error).to.equal('INGEST_SHRINK');
    const force = `force ${Buffer.from('true').toString('base64')}`;
    const forced = await patch(await create(leader, small.length, force), 0, small);
    expect(forced.status, forced.text).to.equal(200);
    expect(forced.json).to.include({ version: 2, rows: 1 });
  });

  it('expires uploads idle for UPLOAD_IDLE_EXPIRY_MS and keeps active ones', async () => {
    const leader = await startLeader({ UPLOAD_IDLE_EXPIRY_MS: '60000' });
    const idle = await create(leader, 100);
    const active = await create(leader, 100);
    const sent = await patch(active, 0, Buffer.from('a,1,2018-01-04'));
    expect(sent.status).to.equal(204);
    // tus expiration: every PATCH says when the upload expires if nothing more arrives.
    const expires = Date.parse(sent.headers.get('upload-expires') ?? '');
    expect(expires - Date.now()).to.be.within(55_000, 61_000);
    // A sweep 61 s from now finds both idle; one right now finds none.
    expect(await leader.uploads.sweep()).to.equal(0);
    expect(await leader.uploads.sweep(Date.now() + 61_000)).to.equal(2);
    expect((await http(idle, { method: 'HEAD', headers: TUS })).status).to.equal(404);
    expect(await readdir(leader.uploads.directory)).to.deep.equal([]);
  });

  it('deletes an idle upload by itself, on the sweep schedule', async () => {
    const leader = await startLeader({ UPLOAD_IDLE_EXPIRY_MS: '300' });
    const created = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...TUS, 'upload-length': '100' },
    });
    expect(created.status).to.equal(201);
    expect(Date.parse(created.headers.get('upload-expires') ?? '')).to.be.greaterThan(Date.now() - 1000);
    const url = `${leader.url}${created.headers.get('location')}`;
    await waitFor(
      async () => ((await http(url, { method: 'HEAD', headers: TUS })).status === 404 ? true : undefined),
      5000,
      'the idle upload expired',
    );
    // The upload's bytes and its metadata are removed one after the other: both go.
    await waitFor(
      async () => ((await readdir(leader.uploads.directory)).length === 0 ? true : undefined),
      5000,
      'the idle upload removed from disk',
    );
  });

  it('refuses more than MAX_UPLOADS uploads at once with 429, and terminates with DELETE', async () => {
    const leader = await startLeader({ MAX_UPLOADS: '2' });
    const one = await create(leader, 10);
    await create(leader, 10);
    const third = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...TUS, 'upload-length': '10' },
    });
    expect(third.status).to.equal(429);
    expect(third.json.error).to.equal('UPLOAD_LIMIT');
    expect((await http(one, { method: 'DELETE', headers: TUS })).status).to.equal(204);
    expect(
      (await http(`${leader.url}/uploads`, { method: 'POST', headers: { ...TUS, 'upload-length': '10' } }))
        .status,
    ).to.equal(201);
  });

  it('answers a wrong offset with 409 UPLOAD_OFFSET_MISMATCH and a file over MAX_UPLOAD_BYTES with 413', async () => {
    const leader = await startLeader({ MAX_UPLOAD_BYTES: '1000' });
    const url = await create(leader, 100);
    const wrong = await patch(url, 5, Buffer.from('x'));
    expect([wrong.status, wrong.json.error]).to.deep.equal([409, 'UPLOAD_OFFSET_MISMATCH']);
    const big = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...TUS, 'upload-length': '1001' },
    });
    expect([big.status, big.json.error]).to.deep.equal([413, 'REQUEST_TOO_LARGE']);
    // No way to read an upload's bytes back.
    const read = await http(url, { headers: TUS });
    expect(read.status).to.equal(405);
  });

  it('keeps the connection open while a large finished upload is ingested, past IDLE_TIMEOUT_MS', async () => {
    const dir = await tempDir();
    const file = join(dir, 'big.csv');
    await generateFile(file, { rows: HELD_ROWS, seed: 3 });
    const bytes = await readFile(file);
    const leader = await startLeader({ IDLE_TIMEOUT_MS: String(HELD_IDLE_MS) });
    const url = await create(leader, bytes.length);
    holdCommitPastIdleTimeout(leader);
    const res = await patch(url, 0, bytes);
    expect(res.status, res.text).to.equal(200);
    expect(res.json).to.include({ rows: HELD_ROWS });
    expect(res.json.durationMs as number).to.be.at.least(HELD_IDLE_MS);
  });

  it('keeps the connection open while a file sent with its creation (creation-with-upload) is ingested', async () => {
    const dir = await tempDir();
    const file = join(dir, 'big.csv');
    await generateFile(file, { rows: HELD_ROWS, seed: 4 });
    const bytes = await readFile(file);
    const leader = await startLeader({ IDLE_TIMEOUT_MS: String(HELD_IDLE_MS) });
    holdCommitPastIdleTimeout(leader);
    const res = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...CHUNK, 'upload-length': String(bytes.length) },
      body: new Uint8Array(bytes),
    });
    expect(res.status, res.text).to.equal(201);
    expect(res.json).to.include({ version: 1, rows: HELD_ROWS });
    expect(res.json.durationMs as number).to.be.at.least(HELD_IDLE_MS);
    expect(await readdir(leader.uploads.directory)).to.deep.equal([]);
  });

  it('answers a POST that carries the whole file as a tus creation: 201, Location, Upload-Offset, the report', async () => {
    const leader = await startLeader();
    const csv = Buffer.from(csvOf([['a', '1', '2018-01-04 06:01:20']]));
    const res = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...CHUNK, 'upload-length': String(csv.length) },
      body: new Uint8Array(csv),
    });
    expect(res.status, res.text).to.equal(201);
    expect(res.headers.get('location')).to.match(/^\/uploads\/[0-9a-f]+$/);
    expect(res.headers.get('upload-offset')).to.equal(String(csv.length));
    expect(res.json).to.include({ version: 1, rows: 1 });
    // A refused file created the same way: the refusal, and no upload left to resume.
    const bad = Buffer.from(csvOf([['b', 'x', '2018-01-04 06:01:20']]));
    const refused = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...CHUNK, 'upload-length': String(bad.length) },
      body: new Uint8Array(bad),
    });
    expect([refused.status, refused.json.error]).to.deep.equal([422, 'INGEST_BAD_ROWS']);
    expect(await readdir(leader.uploads.directory)).to.deep.equal([]);
    expect(leader.store.current()?.version).to.equal(1);
  });
});
