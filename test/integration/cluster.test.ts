/**
 * The walking skeleton end to end, with real processes: a leader and replicas on ephemeral loopback ports,
 * files uploaded over HTTP, answers checked against the CSV text itself.
 */
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { generateLines } from '../../scripts/generate.js';
import { type RoleProcess, startRole } from '../../scripts/lib/processes.js';
import { uploadFile } from '../../scripts/upload.js';
import {
  cleanup,
  http,
  LEADER_AUTH,
  LEADER_TOKEN,
  onCleanup,
  REPLICA_TOKEN,
  tempDir,
  waitFor,
} from '../helpers.js';

/** A port free right now (the leader is started on it so replicas can be told its address first). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

interface DataSet {
  readonly path: string;
  /** id -> the exact JSON a replica must answer, derived from the CSV text. */
  readonly answers: Map<string, string>;
}

async function dataSet(dir: string, name: string, rows: number, seed: number): Promise<DataSet> {
  const lines = [...generateLines({ rows, seed, duplicates: 0.02 })];
  const path = join(dir, name);
  await writeFile(path, `${lines.join('\n')}\n`);
  const answers = new Map<string, string>();
  for (const line of lines) {
    const [id, price, date] = line.split(',');
    answers.set(id, `{"id":"${id}","price":${price},"expiration_date":"${date.slice(0, 19)}"}`);
  }
  return { path, answers };
}

async function servedVersion(replica: RoleProcess): Promise<number | undefined> {
  const r = await http(`${replica.url}/readyz`);
  return r.status === 200 ? (r.json.version as number) : undefined;
}

/** The mode the replica holds its version in, as its metrics say. */
async function serveModeOf(replica: RoleProcess): Promise<string | undefined> {
  const metrics = (await http(`${replica.url}/metrics`)).text;
  return /^promotions_snapshot_serve_mode\{mode="(\w+)",role="replica"\} 1$/m.exec(metrics)?.[1];
}

async function expectServes(replica: RoleProcess, set: DataSet, version: number): Promise<void> {
  for (const [id, body] of set.answers) {
    const res = await http(`${replica.url}/promotions/${id}`);
    expect(res.status, `${replica.url} ${id}`).to.equal(200);
    expect(res.text).to.equal(body);
    expect(res.headers.get('x-snapshot-version')).to.equal(String(version));
  }
}

async function expectAbsent(replica: RoleProcess, set: DataSet): Promise<void> {
  for (const id of [...set.answers.keys()].slice(0, 200)) {
    const res = await http(`${replica.url}/promotions/${id}`);
    expect(res.status, id).to.equal(404);
    expect(res.json.error).to.equal('PROMOTION_NOT_FOUND');
  }
}

describe('cluster: a CSV goes from the leader to every replica (real processes)', function () {
  this.timeout(120_000);
  const started: RoleProcess[] = [];
  after(async () => {
    await Promise.all(started.map((p) => p.stop()));
    await cleanup();
  });

  it('replaces the data set on every replica, refuses a bad file, and lets a late replica catch up', async () => {
    const dir = await tempDir();
    const a = await dataSet(dir, 'a.csv', 1500, 1);
    const b = await dataSet(dir, 'b.csv', 1500, 2);
    const bad = join(dir, 'bad.csv');
    const bLines = [...generateLines({ rows: 10, seed: 3 })];
    bLines.splice(6, 0, 'e3b0c442-98fc-4c14-9afb-f4c8996fb924,12.5,2018-02-30 10:00:00 +0100 CET');
    await writeFile(bad, `${bLines.join('\n')}\n`);

    const leaderPort = await freePort();
    const leaderUrl = `http://127.0.0.1:${leaderPort}`;
    const common = { HOST: '127.0.0.1', REPLICA_TOKEN, LOG_LEVEL: 'info' };
    // Replica 2 serves from disk: its reads go through worker threads, which run the sources only with the
    // preload that startRole passes (scripts/lib/ts-workers.cjs).
    const replicaEnv = (n: number) => ({
      ...common,
      PORT: '0',
      DATA_DIR: join(dir, `replica-${n}`),
      LEADER_URL: leaderUrl,
      SYNC_INTERVAL_MS: '60000',
      SERVE_MODE: n === 2 ? 'disk' : 'memory',
    });
    const r1 = await startRole('replica', { env: replicaEnv(1) });
    started.push(r1);
    const r2 = await startRole('replica', { env: replicaEnv(2) });
    started.push(r2);
    const leader = await startRole('leader', {
      env: {
        ...common,
        PORT: String(leaderPort),
        DATA_DIR: join(dir, 'leader'),
        LEADER_TOKEN,
        REPLICAS: `${r1.url},${r2.url}`,
      },
    });
    started.push(leader);
    onCleanup(() => leader.stop());

    // File A reaches both replicas through the leader's notices (their only poll was before any version).
    const upA = await uploadFile(leader.url, LEADER_TOKEN, a.path);
    expect(upA.status, JSON.stringify(upA.body)).to.equal(201);
    expect(upA.body).to.include({ version: 1, rows: a.answers.size });
    for (const r of [r1, r2]) {
      await waitFor(
        async () => ((await servedVersion(r)) === 1 ? true : undefined),
        10_000,
        `${r.url} on v1`,
      );
      await expectServes(r, a, 1);
      await expectAbsent(r, b);
    }
    // Each in the mode it was given: replica 2's answers came from its disk read workers.
    expect(await serveModeOf(r1)).to.equal('memory');
    expect(await serveModeOf(r2)).to.equal('disk');

    // File B replaces A entirely.
    const upB = await uploadFile(leader.url, LEADER_TOKEN, b.path);
    expect(upB.status).to.equal(201);
    for (const r of [r1, r2]) {
      await waitFor(
        async () => ((await servedVersion(r)) === 2 ? true : undefined),
        10_000,
        `${r.url} on v2`,
      );
      await expectServes(r, b, 2);
      await expectAbsent(r, a);
    }

    // A bad file is refused with its line named; B stays live everywhere.
    const upBad = await uploadFile(leader.url, LEADER_TOKEN, bad, true);
    expect(upBad.status).to.equal(422);
    expect(upBad.body.error).to.equal('INGEST_BAD_ROWS');
    expect(upBad.body.message).to.match(/^line 7: day 30 does not exist in 2018-02/);
    expect((await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.current).to.equal(2);
    for (const r of [r1, r2]) {
      expect(await servedVersion(r)).to.equal(2);
      await expectServes(r, b, 2);
    }

    // A replica started after the uploads catches up by itself and becomes ready.
    const r3 = await startRole('replica', { env: replicaEnv(3) });
    started.push(r3);
    await waitFor(
      async () => ((await servedVersion(r3)) === 2 ? true : undefined),
      10_000,
      'the late replica',
    );
    await expectServes(r3, b, 2);

    const status = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json.replicas as {
      url: string;
      version: number;
    }[];
    expect(status.find((s) => s.url === r3.url)?.version).to.equal(2);

    // SIGTERM stops each process cleanly.
    for (const p of [r3, r2, r1, leader]) expect(await p.stop()).to.equal(0);
  });
});
