/**
 * Sharding end to end with real processes and a real nginx (scripts/lib/nginx.ts, which installs Debian's nginx
 * and its njs module when they are missing): a leader, S = 4 shards x 2 replicas (SHARD=k/4), nginx routing each
 * read by the id's shard (k8s/router/). Every id of a 100,000-row file answers its exact JSON through nginx; each
 * replica holds only its shard; new versions, rollbacks, corrupted files and lost replicas behave per shard.
 */
import { join } from 'node:path';
import { expect } from 'chai';
import { shardOfId } from '../../common/snapshot/shard.js';
import { generateLines } from '../../scripts/generate.js';
import { ensureNginx, startNginx } from '../../scripts/lib/nginx.js';
import { type RoleProcess, startRole } from '../../scripts/lib/processes.js';
import {
  cleanup,
  fakeServer,
  http,
  LEADER_AUTH,
  LEADER_TOKEN,
  RawConnection,
  REPLICA_TOKEN,
  tempDir,
  waitFor,
} from '../helpers.js';

const SHARDS = 4;
const BITS = 2;
const REPLICAS_PER_SHARD = 2;

/** A generated file's CSV text, and id -> the exact JSON its row must answer, from the text itself. */
interface DataSet {
  readonly csv: string;
  readonly answers: Map<string, string>;
}

function dataSet(rows: number, seed: number): DataSet {
  const lines = [...generateLines({ rows, seed })];
  return { csv: `${lines.join('\n')}\n`, answers: answersOf(lines) };
}

function answersOf(lines: readonly string[]): Map<string, string> {
  const answers = new Map<string, string>();
  for (const line of lines) {
    const [id, price, date] = line.split(',');
    answers.set(id, `{"id":"${id}","price":${price},"expiration_date":"${date.slice(0, 19)}"}`);
  }
  return answers;
}

async function putFile(leaderUrl: string, body: string): Promise<Record<string, unknown>> {
  const r = await http(`${leaderUrl}/promotions?force=true`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${LEADER_TOKEN}`, 'content-type': 'text/csv' },
    body,
  });
  expect(r.status, r.text).to.equal(201);
  return r.json;
}

async function activate(leaderUrl: string, version: number): Promise<void> {
  const r = await http(`${leaderUrl}/snapshots/${version}/activate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${LEADER_TOKEN}` },
  });
  expect(r.status, r.text).to.equal(200);
}

interface Ready {
  readonly version: number;
  readonly rows: number;
  readonly shard: { index: number; count: number };
  readonly sync: { lastError: string | null };
}

/** Waits until every replica of `group` is ready on `version` with a sync error that `why` accepts. */
async function refusedOn(group: RoleProcess[], version: number, why: RegExp, what: string): Promise<void> {
  let last: unknown;
  try {
    await waitFor(
      async () => {
        const states = await Promise.all(group.map(readyOf));
        last = states.map((s) => ({ version: s?.version, lastError: s?.sync.lastError }));
        return states.every((s) => s?.version === version && why.test(s.sync.lastError ?? ''))
          ? true
          : undefined;
      },
      60_000,
      what,
    );
  } catch (err) {
    const logs = group.map((r) => r.lines.filter((l) => /"level":(40|50)/.test(l)).slice(-5));
    throw new Error(
      `${(err as Error).message}; last seen: ${JSON.stringify(last)}; logs: ${JSON.stringify(logs)}`,
    );
  }
}

async function readyOf(replica: RoleProcess): Promise<Ready | undefined> {
  const r = await http(`${replica.url}/readyz`).catch(() => undefined);
  return r?.status === 200 ? (r.json as unknown as Ready) : undefined;
}

/**
 * GETs every id through `baseUrl` on 4 keep-alive connections, 100 pipelined requests at a time (a fetch per id
 * would take minutes on a busy machine); returns [id, status, body] of each answer that `ok` rejects.
 */
async function readAll(
  baseUrl: string,
  ids: readonly string[],
  ok: (id: string, status: number, body: string) => boolean,
): Promise<[string, number, string][]> {
  const port = Number(new URL(baseUrl).port);
  const bad: [string, number, string][] = [];
  let next = 0;
  const worker = async () => {
    let conn = await RawConnection.open(port);
    for (let batches = 0; next < ids.length; batches++) {
      // nginx closes a client connection after keepalive_requests (10,000) requests: take a fresh one before.
      if (batches > 0 && batches % 50 === 0) {
        conn.socket.destroy();
        conn = await RawConnection.open(port);
      }
      const batch = ids.slice(next, next + 100);
      next += batch.length;
      conn.send(batch.map((id) => `GET /promotions/${id} HTTP/1.1\r\nHost: router\r\n\r\n`).join(''));
      for (const id of batch) {
        const r = await conn.next(30_000);
        if (!ok(id, r.status, r.body)) bad.push([id, r.status, r.body.slice(0, 200)]);
      }
    }
    conn.socket.destroy();
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return bad;
}

type Tamper = 'flip' | 'cut';

/**
 * A pass-through proxy in front of the leader for the replicas of some shards: it forwards every request, and for
 * the file of a chosen version it flips one byte in the middle of the asked range, or sends only half of it and
 * closes the connection (a truncated transfer). Buffers each answer: file ranges here are about a megabyte.
 */
async function tamperingProxy(
  leaderUrl: string,
): Promise<{ url: string; set(version: number, how: Tamper | null): void }> {
  const tampered = new Map<number, Tamper>();
  const url = await fakeServer((req, res) => {
    void (async () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (typeof v === 'string' && k !== 'host') headers[k] = v;
      const up = await fetch(`${leaderUrl}${req.url}`, { method: req.method, headers });
      const body = Buffer.from(await up.arrayBuffer());
      const out: Record<string, string> = {};
      for (const k of ['content-type', 'content-range', 'accept-ranges', 'etag']) {
        const v = up.headers.get(k);
        if (v !== null) out[k] = v;
      }
      const m = /^\/snapshots\/(\d+)\/file$/.exec(req.url ?? '');
      const how =
        m === null || up.status !== 206 || body.length < 4096 ? undefined : tampered.get(Number(m[1]));
      res.writeHead(up.status, { ...out, 'content-length': String(body.length) });
      if (how === 'flip') body[body.length >> 1] ^= 0x20;
      if (how === 'cut') {
        res.write(body.subarray(0, body.length >> 1), () => res.destroy());
        return;
      }
      res.end(body);
    })().catch(() => res.destroy());
  });
  return {
    url,
    set: (version, how) => (how === null ? tampered.delete(version) : tampered.set(version, how)),
  };
}

describe('sharding: S = 4 shards x 2 replicas behind nginx (real processes)', function () {
  this.timeout(600_000);
  const started: { stop(): Promise<unknown> }[] = [];
  let dir: string;
  let leader: RoleProcess;
  /** replicas[k] are shard k's replicas. */
  const replicas: RoleProcess[][] = [];
  let nginxUrl: string;
  let a: Map<string, string>;
  let b: Map<string, string>;
  let csvA: string;
  let csvB: string;
  let absent: string[];
  /** proxies[k]: what shard k's replicas pull through (shards 2 and 3 only). */
  const proxies: Awaited<ReturnType<typeof tamperingProxy>>[] = [];

  before(async () => {
    await ensureNginx();
    dir = await tempDir();
    ({ csv: csvA, answers: a } = dataSet(100_000, 11));
    ({ csv: csvB, answers: b } = dataSet(60_000, 12));
    absent = [...answersOf([...generateLines({ rows: 300, seed: 13 })]).keys()];
    const common = { HOST: '127.0.0.1', REPLICA_TOKEN, LOG_LEVEL: 'info' };
    leader = await startRole('leader', {
      env: { ...common, PORT: '0', DATA_DIR: join(dir, 'leader'), LEADER_TOKEN, INGEST_WORKERS: '1' },
    });
    started.push(leader);
    // Shards 2 and 3 pull through proxies that can damage what they receive.
    for (let k = 0; k < SHARDS; k++) proxies.push(await tamperingProxy(leader.url));
    for (let k = 0; k < SHARDS; k++) {
      replicas.push([]);
      for (let n = 0; n < REPLICAS_PER_SHARD; n++) {
        const r = await startRole('replica', {
          env: {
            ...common,
            PORT: '0',
            DATA_DIR: join(dir, `replica-${k}-${n}`),
            LEADER_URL: k >= 2 ? proxies[k].url : leader.url,
            SYNC_INTERVAL_MS: '60000',
            SHARD: `${k}/${SHARDS}`,
            // One half of the replicas serves from memory, the other from disk.
            SERVE_MODE: n === 0 ? 'memory' : 'disk',
          },
        });
        started.push(r);
        replicas[k].push(r);
      }
    }
    const upstreams = replicas.map((group) => group.map((r) => new URL(r.url).host));
    const nginx = await startNginx({ dir: join(dir, 'nginx'), upstreams, shardBits: BITS });
    started.push(nginx);
    nginxUrl = nginx.url;
  });

  after(async () => {
    await Promise.all(started.map((p) => p.stop().catch(() => undefined)));
    await cleanup();
  });

  const everyReplica = () => replicas.flat();

  async function allOn(version: number, who: RoleProcess[] = everyReplica()): Promise<void> {
    await waitFor(
      async () => {
        const versions = await Promise.all(who.map(async (r) => (await readyOf(r))?.version));
        return versions.every((v) => v === version) ? true : undefined;
      },
      60_000,
      `every replica on v${version}`,
    );
  }

  it('answers every id of a 100,000-row file with its exact JSON through nginx; absent ids 404', async () => {
    const up = await putFile(leader.url, csvA);
    expect(up).to.include({ version: 1, rows: a.size });
    await allOn(1);
    const bad = await readAll(
      nginxUrl,
      [...a.keys()],
      (id, status, body) => status === 200 && body === a.get(id),
    );
    expect(bad.slice(0, 5), `${bad.length} wrong answers`).to.deep.equal([]);
    const missing = await readAll(
      nginxUrl,
      absent,
      (_, status, body) => status === 404 && body.includes('PROMOTION_NOT_FOUND'),
    );
    expect(missing).to.deep.equal([]);
  });

  it("holds only its shard's rows on each replica; the rows add up; another shard's id gets 421", async () => {
    let total = 0;
    for (let k = 0; k < SHARDS; k++) {
      const mine = [...a.keys()].filter((id) => shardOfId(id, BITS) === k).length;
      for (const r of replicas[k]) {
        const ready = (await readyOf(r)) as Ready;
        expect(ready.shard).to.deep.equal({ index: k, count: SHARDS });
        expect(ready.rows, r.url).to.equal(mine);
      }
      total += ((await readyOf(replicas[k][0])) as Ready).rows;
      const other = [...a.keys()].find((id) => shardOfId(id, BITS) === (k + 1) % SHARDS) as string;
      const direct = await http(`${replicas[k][1].url}/promotions/${other}`);
      expect(direct.status).to.equal(421);
      expect(direct.json.error).to.equal('PROMOTION_WRONG_SHARD');
    }
    expect(total).to.equal(a.size);
    // The leader sees every shard served on the current version.
    const list = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json as {
      replicas: { shard: string }[];
      shards: { currentLive: boolean; layouts: { shards: number; live: number[] }[] };
    };
    expect(list.replicas.map((r) => r.shard).sort()).to.deep.equal([
      '0/4',
      '0/4',
      '1/4',
      '1/4',
      '2/4',
      '2/4',
      '3/4',
      '3/4',
    ]);
    expect(list.shards.currentLive).to.equal(true);
    expect(list.shards.layouts.map((l) => [l.shards, l.live])).to.deep.equal([[4, [1]]]);
  });

  it('takes a new version on every shard, and a rollback', async () => {
    const up = await putFile(leader.url, csvB);
    expect(up).to.include({ version: 2 });
    await allOn(2);
    const sampleB = [...b.keys()].filter((_, i) => i % 20 === 0);
    const badB = await readAll(nginxUrl, sampleB, (id, s, body) => s === 200 && body === b.get(id));
    expect(badB).to.deep.equal([]);
    const goneA = await readAll(nginxUrl, [...a.keys()].slice(0, 500), (_, s) => s === 404);
    expect(goneA).to.deep.equal([]);

    await activate(leader.url, 1);
    await allOn(1);
    const sampleA = [...a.keys()].filter((_, i) => i % 20 === 0);
    expect(await readAll(nginxUrl, sampleA, (id, s, body) => s === 200 && body === a.get(id))).to.deep.equal(
      [],
    );
    await activate(leader.url, 2);
    await allOn(2);
  });

  it("refuses a flipped byte or a cut transfer in a shard's range on that shard's replicas, which keep their version", async () => {
    // Version 3 (file A again) reaches shard 2 with a flipped byte; the other shards take it.
    proxies[2].set(3, 'flip');
    const up = await putFile(leader.url, csvA);
    expect(up).to.include({ version: 3 });
    await allOn(
      3,
      [0, 1, 3].flatMap((k) => replicas[k]),
    );
    await refusedOn(replicas[2], 2, /checksum/i, "shard 2's replicas refuse v3's flipped byte and keep v2");
    // Shard 2 answers v2 (file B), shard 0 v3 (file A): each shard serves what it verified.
    const shard2 = [...b.keys()].filter((id) => shardOfId(id, BITS) === 2).slice(0, 300);
    expect(await readAll(nginxUrl, shard2, (id, st, body) => st === 200 && body === b.get(id))).to.deep.equal(
      [],
    );
    const shard0 = [...a.keys()].filter((id) => shardOfId(id, BITS) === 0).slice(0, 300);
    expect(await readAll(nginxUrl, shard0, (id, st, body) => st === 200 && body === a.get(id))).to.deep.equal(
      [],
    );

    // Version 4 (file B again) reaches shard 3 cut short: refused, v3 kept; the other shards take it.
    proxies[2].set(3, null);
    proxies[3].set(4, 'cut');
    expect(await putFile(leader.url, csvB)).to.include({ version: 4 });
    await allOn(
      4,
      [0, 1, 2].flatMap((k) => replicas[k]),
    );
    await refusedOn(
      replicas[3],
      3,
      /version 4/,
      "shard 3's replicas refuse the cut transfer of v4 and keep v3",
    );
    const shard3 = [...a.keys()].filter((id) => shardOfId(id, BITS) === 3).slice(0, 300);
    expect(await readAll(nginxUrl, shard3, (id, st, body) => st === 200 && body === a.get(id))).to.deep.equal(
      [],
    );

    // Undamaged, v4 reaches every shard.
    proxies[3].set(4, null);
    await activate(leader.url, 3);
    await activate(leader.url, 4);
    await allOn(4);
  });

  it("serves a shard from its twin when one replica stops; only that shard's ids fail when both do", async () => {
    const ids = [...b.keys()];
    const shard0 = ids.filter((id) => shardOfId(id, BITS) === 0);
    await replicas[0][0].stop();
    const lost = await readAll(nginxUrl, shard0, (id, s, body) => s === 200 && body === b.get(id));
    expect(lost.slice(0, 5), `${lost.length} lost`).to.deep.equal([]);

    await replicas[0][1].stop();
    const sample = ids.filter((_, i) => i % 10 === 0);
    const wrong = await readAll(nginxUrl, sample, (id, s, body) =>
      shardOfId(id, BITS) === 0 ? s === 502 || s === 503 : s === 200 && body === b.get(id),
    );
    expect(wrong.slice(0, 5), `${wrong.length} wrong`).to.deep.equal([]);
  });
});
