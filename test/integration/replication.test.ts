/**
 * Replication you can trust (issue 5), end to end over HTTP with in-process leaders and replicas on loopback:
 * catch-up after a missed push, a cut transfer resumed with Range, a file altered in transit refused and reported,
 * rollback and forward, retention that spares versions in use, and swaps under a steady stream of reads.
 * Fake leaders are node:http proxies in front of the real one, so the replica under test talks to real code.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { expect } from 'chai';
import { type SnapshotManifest, snapshotFileName } from '../../common/protocol.js';
import { H, HEADER_BYTES, readU64 } from '../../common/snapshot/format.js';
import {
  activate,
  bareSyncer,
  cleanup,
  csvOf,
  fakeServer,
  http,
  ingest,
  LEADER_AUTH,
  REPLICA_TOKEN,
  startLeader,
  startReplica,
  stopReplica,
  type TestLeader,
  tempDir,
  waitFor,
  waitForVersion,
} from '../helpers.js';

/** Retries quick enough for tests, many enough to outlast a fault the test turns off. */
const FAST_RETRY = { retry: { baseDelayMs: 50, maxDelayMs: 200, maxAttempts: 40 } };

/** A data set: `rows` ids, every price shifted by `priceBase`, so that two versions differ on every id. */
function dataSet(rows: number, priceBase: number) {
  const ids = Array.from({ length: rows }, (_, i) => `promo-${String(i).padStart(5, '0')}`);
  const lines = ids.map((id, i) => [id, (priceBase + i / 1000).toFixed(6), '2018-06-04 06:01:20 +0200 CEST']);
  const answers = new Map(
    lines.map(([id, price]) => [
      id,
      `{"id":"${id}","price":${price},"expiration_date":"2018-06-04 06:01:20"}`,
    ]),
  );
  return { ids, csv: csvOf(lines), answers };
}

/** Every version here goes past the shrink guard: the data sets differ in size from test to test. */
const FORCE = '?force=true';

interface ReplicaView {
  url: string;
  source: string;
  version: number | null;
  lag: number | null;
  lastError: string | null;
}

async function replicaView(leader: TestLeader, url: string): Promise<ReplicaView | undefined> {
  const list = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json
    .replicas as ReplicaView[];
  return list.find((r) => r.url === url);
}

/** Where version `version`'s directory starts, read from its header on the leader. */
async function directoryOffset(leader: TestLeader, version: number): Promise<number> {
  const res = await fetch(`${leader.url}/snapshots/${version}/file`, {
    headers: { authorization: `Bearer ${REPLICA_TOKEN}`, range: `bytes=0-${HEADER_BYTES - 1}` },
  });
  return readU64(Buffer.from(await res.arrayBuffer()), H.directoryOffset);
}

async function keptVersions(leader: TestLeader): Promise<number[]> {
  return (
    (await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.versions as { version: number }[]
  ).map((v) => v.version);
}

/** Size of the replica's transfer in progress (its .part file), if any. */
async function partBytes(dataDir: string): Promise<number | undefined> {
  const names = await readdir(join(dataDir, 'tmp')).catch(() => [] as string[]);
  const part = names.find((n) => n.endsWith('.part'));
  return part === undefined ? undefined : (await stat(join(dataDir, 'tmp', part))).size;
}

interface FakeLeader {
  readonly url: string;
  /** Every file request: its Range header and the status answered. */
  readonly fileRequests: { range: string | undefined; status: number }[];
  /** Flip one bit in the middle of every file answer longer than 1 KiB (the body: header and directory pass). */
  flip: boolean;
  /** Cut the next file answer longer than this many bytes after that many, once `beforeCut` resolves. */
  cutAt: number | undefined;
  beforeCut: () => Promise<unknown>;
}

/**
 * A fake leader: forwards every request to the real one (with the headers a replica sends, so polls register
 * the replica), and serves files honestly, with a flipped bit, or cut off mid-file, as the test sets it.
 */
async function fakeLeader(leaderUrl: string): Promise<FakeLeader> {
  const fake: FakeLeader = {
    url: '',
    fileRequests: [],
    flip: false,
    cutAt: undefined,
    beforeCut: async () => undefined,
  };
  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    const headers: Record<string, string> = {};
    for (const h of ['authorization', 'range', 'x-replica-url', 'x-replica-version', 'content-type']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const real = await fetch(`${leaderUrl}${req.url}`, {
      method: req.method,
      headers,
      body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
    });
    const bytes = Buffer.from(await real.arrayBuffer());
    const out: Record<string, string | number> = { 'content-length': bytes.length };
    for (const h of ['content-type', 'content-range', 'accept-ranges', 'etag']) {
      const v = real.headers.get(h);
      if (v !== null) out[h] = v;
    }
    const isFile = req.url?.endsWith('/file') === true;
    if (isFile) fake.fileRequests.push({ range: req.headers.range, status: real.status });
    if (isFile && fake.flip && bytes.length > 1024) bytes[bytes.length >> 1] ^= 0x01;
    if (isFile && fake.cutAt !== undefined && bytes.length > fake.cutAt) {
      const cutAt = fake.cutAt;
      fake.cutAt = undefined;
      res.writeHead(real.status, out);
      await new Promise((r) => res.write(bytes.subarray(0, cutAt), r));
      await fake.beforeCut();
      res.socket?.destroy();
      return;
    }
    res.writeHead(real.status, out).end(bytes);
  };
  const url = await fakeServer((req, res) => {
    forward(req, res).catch((err: Error) => res.writeHead(500).end(err.message));
  });
  return Object.assign(fake, { url });
}

describe('replication (issue 5)', function () {
  this.timeout(60_000);
  afterEach(cleanup);

  it('a replica down during a push serves its last version at once when back, then catches up', async () => {
    const leader = await startLeader({}, {}, FAST_RETRY);
    const a = dataSet(50, 1);
    const b = dataSet(50, 2);
    await ingest(leader.url, a.csv, FORCE);
    const r1 = await startReplica(leader.url);
    const r2 = await startReplica(leader.url);
    await waitForVersion(r1, 1);
    await waitForVersion(r2, 1);
    await waitFor(
      async () => (await replicaView(leader, r2.url))?.version ?? undefined,
      5000,
      'r2 registered',
    );

    await stopReplica(r2);
    expect(await ingest(leader.url, b.csv, FORCE)).to.equal(2);
    await waitForVersion(r1, 2);
    const down = await waitFor(
      async () => {
        const v = await replicaView(leader, r2.url);
        return v?.lastError ? v : undefined;
      },
      5000,
      'the failed notice to r2',
    );
    expect(down).to.deep.include({ version: 1, lag: 1 });
    expect(down.lastError).to.match(/^version 2: ECONNREFUSED/);

    // Back on the same address with its files: it serves version 1 before it has heard from the leader.
    const back = await startReplica(leader.url, {
      PORT: String(r2.server.port),
      DATA_DIR: r2.config.dataDir,
    });
    expect(back.index.current?.manifest.version).to.equal(1);
    await waitForVersion(back, 2);
    expect((await http(`${back.url}/promotions/promo-00007`)).text).to.equal(b.answers.get('promo-00007'));
    await waitFor(
      async () => ((await replicaView(leader, r2.url))?.lag === 0 ? true : undefined),
      5000,
      'the leader to see r2 on version 2',
    );
    expect(await replicaView(leader, r2.url)).to.deep.include({ version: 2, lag: 0, lastError: null });
  });

  it('a replica the leader cannot notify catches up by its periodic check', async () => {
    const leader = await startLeader();
    await ingest(leader.url, dataSet(20, 1).csv, FORCE);
    // No advertised address: the leader never learns of it, so every notice misses it.
    const bare = await bareSyncer(leader.url, { SYNC_INTERVAL_MS: '100' });
    await bare.syncer.start();
    await waitForVersion(bare, 1);
    await ingest(leader.url, dataSet(20, 2).csv, FORCE);
    await waitForVersion(bare, 2);
    expect((await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json.replicas).to.deep.equal([]);
  });

  it('a transfer cut mid-file resumes with Range from the bytes already written', async () => {
    const leader = await startLeader();
    const a = dataSet(3000, 1);
    await ingest(leader.url, a.csv, FORCE);
    const manifest = (await http(`${leader.url}/snapshots/current`)).json as {
      bytes: number;
      checksum: string;
    };
    const dirAt = await directoryOffset(leader, 1);
    const fake = await fakeLeader(leader.url);
    const dataDir = await tempDir();
    const cutAt = Math.floor(manifest.bytes * 0.4);
    fake.cutAt = cutAt;
    // Cut only once the replica has written every byte sent (after the header), so the resume point is exact.
    fake.beforeCut = () =>
      waitFor(
        async () => ((await partBytes(dataDir)) === HEADER_BYTES + cutAt ? true : undefined),
        5000,
        'the bytes on disk',
      );

    const replica = await startReplica(fake.url, { DATA_DIR: dataDir });
    await waitForVersion(replica, 1);
    // Header, directory, body; then the rest of the body after the cut.
    expect(fake.fileRequests).to.deep.equal([
      { range: `bytes=0-${HEADER_BYTES - 1}`, status: 206 },
      { range: `bytes=${dirAt}-${manifest.bytes - 1}`, status: 206 },
      { range: `bytes=${HEADER_BYTES}-${dirAt - 1}`, status: 206 },
      { range: `bytes=${HEADER_BYTES + cutAt}-${dirAt - 1}`, status: 206 },
    ]);
    expect(replica.index.current?.manifest.checksum).to.equal(manifest.checksum);
    for (const id of ['promo-00000', 'promo-01500', 'promo-02999']) {
      expect((await http(`${replica.url}/promotions/${id}`)).text).to.equal(a.answers.get(id));
    }
    expect(await readdir(join(dataDir, 'tmp'))).to.deep.equal([]);
  });

  it('a transfer left on disk by an earlier process is verified, then only the rest is pulled', async () => {
    // Small partitions, so that the bytes on disk hold whole partitions and end inside one.
    const leader = await startLeader({}, { targetPartitionRows: 100 });
    const a = dataSet(3000, 1);
    await ingest(leader.url, a.csv, FORCE);
    const manifest = (await http(`${leader.url}/snapshots/current`)).json as unknown as SnapshotManifest;
    const dirAt = await directoryOffset(leader, 1);
    const file = await readFile(leader.store.filePath(1));
    const partName = `${snapshotFileName(1)}.${manifest.checksum.slice(0, 16)}.part`;
    const have = Math.floor(file.length * 0.6);
    const rest = { range: `bytes=${have}-${dirAt - 1}`, status: 206 };
    const all = { range: `bytes=${HEADER_BYTES}-${dirAt - 1}`, status: 206 };

    const cases = [
      { name: 'intact', flipAt: undefined, body: [rest] },
      // A flipped bit in a whole partition on disk is caught before anything is asked: the body is pulled whole.
      { name: 'a bad partition', flipAt: HEADER_BYTES + 10, body: [all] },
      // A torn end (a crash before fsync) shows only once the network completes that partition: start over.
      { name: 'a torn end', flipAt: have - 1, body: [rest, all] },
    ];
    for (const c of cases) {
      const dataDir = await tempDir();
      await mkdir(join(dataDir, 'tmp'));
      const prefix = Buffer.from(file.subarray(0, have));
      if (c.flipAt !== undefined) prefix[c.flipAt] ^= 0x01;
      await writeFile(join(dataDir, 'tmp', partName), prefix);
      const fake = await fakeLeader(leader.url);
      const replica = await startReplica(fake.url, { DATA_DIR: dataDir });
      await waitForVersion(replica, 1);
      // After the header and the directory: the body, as much of it as the bytes on disk did not cover.
      expect(fake.fileRequests.slice(2), c.name).to.deep.equal(c.body);
      expect((await http(`${replica.url}/promotions/promo-02999`)).text).to.equal(
        a.answers.get('promo-02999'),
      );
      expect(await readFile(join(dataDir, snapshotFileName(1))), c.name).to.deep.equal(file);
      await stopReplica(replica);
    }
  });

  it('a file altered in transit is refused and reported; the replica keeps serving its version', async () => {
    const leader = await startLeader({}, {}, FAST_RETRY);
    const a = dataSet(500, 1);
    const b = dataSet(500, 2);
    await ingest(leader.url, a.csv, FORCE);
    const fake = await fakeLeader(leader.url);
    const dataDir = await tempDir();
    const replica = await startReplica(fake.url, { DATA_DIR: dataDir });
    await waitForVersion(replica, 1);
    await waitFor(
      async () => (await replicaView(leader, replica.url))?.version ?? undefined,
      5000,
      'registered',
    );

    fake.flip = true;
    await ingest(leader.url, b.csv, FORCE);
    const view = await waitFor(
      async () => {
        const v = await replicaView(leader, replica.url);
        return v?.lastError ? v : undefined;
      },
      5000,
      'the refusal reported to the leader',
    );
    expect(view).to.deep.include({ version: 1, lag: 1 });
    expect(view.lastError).to.equal('version 2: 502 SNAPSHOT_CHECKSUM_MISMATCH');
    const ready = await http(`${replica.url}/readyz`);
    expect(ready.json).to.deep.include({ status: 'ready', version: 1 });
    expect((ready.json.sync as { lastError: string }).lastError).to.match(/checksum/);
    const read = await http(`${replica.url}/promotions/promo-00042`);
    expect(read.text).to.equal(a.answers.get('promo-00042'));
    expect(read.headers.get('x-snapshot-version')).to.equal('1');
    // The bad bytes never took a version's name.
    expect((await readdir(dataDir)).filter((n) => n.endsWith('.snap'))).to.deep.equal(['v000001.snap']);

    // Once the transfers are honest again, the leader's retries bring version 2 and the error clears.
    fake.flip = false;
    await waitForVersion(replica, 2);
    expect((await http(`${replica.url}/promotions/promo-00042`)).text).to.equal(b.answers.get('promo-00042'));
    await waitFor(
      async () => ((await replicaView(leader, replica.url))?.lastError === null ? true : undefined),
      5000,
      'the error to clear',
    );
  });

  it('rolls back to an older version on every replica, and forward again', async () => {
    const leader = await startLeader({ KEEP_VERSIONS: '3' }, {}, FAST_RETRY);
    const a = dataSet(100, 1);
    const b = dataSet(100, 2);
    await ingest(leader.url, a.csv, FORCE);
    await ingest(leader.url, b.csv, FORCE);
    const replicas = [await startReplica(leader.url), await startReplica(leader.url)];
    for (const r of replicas) await waitForVersion(r, 2);
    const id = 'promo-00033';
    const v2 = await http(`${replicas[0].url}/promotions/${id}`);
    const v2Etag = v2.headers.get('etag') as string;

    expect((await activate(leader.url, 1, 'wrong-token-0123456789')).status).to.equal(401);
    expect((await activate(leader.url, 9)).json.error).to.equal('SNAPSHOT_NOT_FOUND');
    const back = await activate(leader.url, 1);
    expect(back.status).to.equal(200);
    expect(back.json).to.deep.include({ version: 1, current: true });
    for (const r of replicas) {
      await waitForVersion(r, 1);
      const res = await http(`${r.url}/promotions/${id}`, { headers: { 'if-none-match': v2Etag } });
      expect(res.status).to.equal(200);
      expect(res.text).to.equal(a.answers.get(id));
      expect(res.headers.get('x-snapshot-version')).to.equal('1');
      const etag = res.headers.get('etag') as string;
      expect(etag).to.not.equal(v2Etag);
      const cached = await http(`${r.url}/promotions/${id}`, { headers: { 'if-none-match': etag } });
      expect(cached.status).to.equal(304);
      expect(cached.headers.get('x-snapshot-version')).to.equal('1');
    }
    for (const r of replicas) {
      await waitFor(
        async () => ((await replicaView(leader, r.url))?.version === 1 ? true : undefined),
        5000,
        'v1',
      );
      expect(await replicaView(leader, r.url)).to.deep.include({ lag: 0, lastError: null });
    }
    // Prometheus sees the same: one series per replica.
    const metrics = (await http(`${leader.url}/metrics`)).text;
    for (const r of replicas) {
      expect(metrics).to.include(`promotions_replica_lag_versions{replica="${r.url}",role="leader"} 0`);
    }

    expect((await activate(leader.url, 2)).status).to.equal(200);
    for (const r of replicas) {
      await waitForVersion(r, 2);
      expect((await http(`${r.url}/promotions/${id}`)).text).to.equal(b.answers.get(id));
    }
  });

  it('deletes a version past KEEP_VERSIONS only once no replica serves it', async () => {
    const leader = await startLeader({ KEEP_VERSIONS: '2' }, {}, FAST_RETRY);
    await ingest(leader.url, dataSet(30, 1).csv, FORCE);
    const replica = await startReplica(leader.url);
    await waitForVersion(replica, 1);
    await waitFor(
      async () => (await replicaView(leader, replica.url))?.version ?? undefined,
      5000,
      'registered',
    );
    await stopReplica(replica);

    await ingest(leader.url, dataSet(30, 2).csv, FORCE);
    await ingest(leader.url, dataSet(30, 3).csv, FORCE);
    // Version 1 is past KEEP_VERSIONS, but the leader last heard the replica serve it.
    expect(await keptVersions(leader)).to.deep.equal([3, 2, 1]);

    const back = await startReplica(leader.url, {
      PORT: String(replica.server.port),
      DATA_DIR: replica.config.dataDir,
    });
    await waitForVersion(back, 3);
    await waitFor(
      async () => ((await keptVersions(leader)).length === 2 ? true : undefined),
      5000,
      'version 1 to be pruned',
    );
    expect(await keptVersions(leader)).to.deep.equal([3, 2]);
  });

  for (const mode of ['memory', 'disk'] as const) {
    it(`swaps back and forth 52 times under steady reads with no failed or mixed answer (${mode} mode)`, async () => {
      const leader = await startLeader({}, {}, FAST_RETRY);
      const v1 = dataSet(400, 1);
      const v2 = dataSet(400, 2);
      await ingest(leader.url, v1.csv, FORCE);
      await ingest(leader.url, v2.csv, FORCE);
      const replica = await startReplica(leader.url, { SERVE_MODE: mode });
      await waitForVersion(replica, 2);
      const expected = [undefined, v1.answers, v2.answers];

      const SWAPS = 52;
      const MAX_REQUESTS = 200_000;
      const deadline = Date.now() + 30_000;
      let stop = false;
      let requests = 0;
      const byVersion = [0, 0, 0];
      const failures: string[] = [];
      const client = async () => {
        while (!stop && requests < MAX_REQUESTS && Date.now() < deadline) {
          requests++;
          const id = v1.ids[Math.floor(Math.random() * v1.ids.length)];
          try {
            const res = await fetch(`${replica.url}/promotions/${id}`);
            const body = await res.text();
            const version = Number(res.headers.get('x-snapshot-version'));
            if (res.status !== 200 || expected[version]?.get(id) !== body) {
              failures.push(`${res.status} v${version} ${id}: ${body}`);
            } else {
              byVersion[version]++;
            }
          } catch (err) {
            failures.push(`${id}: ${(err as Error).message}`);
          }
        }
      };
      const clients = Array.from({ length: 8 }, client);

      let swaps = 0;
      try {
        for (let i = 1; i <= SWAPS; i++) {
          const target = i % 2 === 1 ? 1 : 2;
          expect((await activate(leader.url, target)).status).to.equal(200);
          await waitForVersion(replica, target);
          swaps++;
        }
      } finally {
        stop = true;
        await Promise.all(clients);
      }
      expect(swaps).to.equal(SWAPS);
      expect(failures, failures.slice(0, 5).join('\n')).to.deep.equal([]);
      expect(byVersion[1]).to.be.greaterThan(100);
      expect(byVersion[2]).to.be.greaterThan(100);
      expect(requests).to.equal(byVersion[1] + byVersion[2]);
    });
  }
});
