/**
 * The real nginx router (k8s/router/nginx.conf and shard.js, started on loopback by scripts/lib/nginx.ts) in front
 * of tiny fake replicas (node:http on 127.0.0.1 port 0): each id reaches its own shard's servers only, a failure
 * is retried only on a twin of the same shard, any HTTP answer (421, 503) is passed on as it is, upstream
 * connections are kept alive, and stop() ends nginx by its pid. nginx is installed from Debian's packages when
 * missing.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ERROR_CODES, type ErrorCode } from '../../../../common/errors.js';
import { keyHash1 } from '../../../../common/snapshot/key-hash.js';
import {
  loopbackConf,
  ROUTER_DIR,
  type RunningNginx,
  shardsConf,
  startNginx,
} from '../../../../scripts/lib/nginx.js';

interface FakeReplica {
  readonly name: string;
  readonly address: string;
  /** Paths received, in order. */
  readonly seen: string[];
  /** Connections accepted. */
  sockets: number;
  /** The Connection header of the last request. */
  lastConnection: string | undefined;
  server: Server;
}

/** A fake replica: answers `{"server": name, "url": ...}`, or `status` with a JSON error, or cuts the connection. */
async function fakeReplica(name: string, behaviour: 'ok' | 'cut' | 421 | 503 = 'ok'): Promise<FakeReplica> {
  const fake: FakeReplica = {
    name,
    address: '',
    seen: [],
    sockets: 0,
    lastConnection: undefined,
    server: createServer(),
  };
  fake.server.on('connection', () => fake.sockets++);
  fake.server.on('request', (req, res) => {
    fake.seen.push(req.url ?? '');
    fake.lastConnection = req.headers.connection;
    if (behaviour === 'cut') {
      (req.socket as Socket).destroy();
      return;
    }
    let body = 0;
    req.on('data', (c: Buffer) => {
      body += c.length;
    });
    req.on('end', () => {
      const status = behaviour === 'ok' ? 200 : behaviour;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          status === 200
            ? { server: name, url: req.url, method: req.method, body }
            : { error: `FAKE_${status}` },
        ),
      );
    });
  });
  await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
  (fake as { address: string }).address = `127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
  return fake;
}

function stopServer(s: Server): Promise<void> {
  s.closeAllConnections();
  return new Promise((resolve) => s.close(() => resolve()));
}

/** One GET over a fresh connection, no retries. */
function plainGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Ids whose shard (of 2^bits) is `k`. */
function idsOf(k: number, bits: number, count: number, prefix = 'id-'): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const id = `${prefix}${i}`;
    if (keyHash1(id) >>> (32 - bits) === k) out.push(id);
  }
  return out;
}

describe('nginx router on loopback (scripts/lib/nginx.ts)', function () {
  this.timeout(300_000); // apt-get install nginx, when missing
  const fakes: FakeReplica[] = [];
  const routers: RunningNginx[] = [];
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nginx-router-'));
  });
  afterEach(async () => {
    await Promise.all(routers.splice(0).map((r) => r.stop()));
    await Promise.all(fakes.splice(0).map((f) => stopServer(f.server)));
    await rm(dir, { recursive: true, force: true });
  });

  async function start(upstreams: FakeReplica[][], shardBits: number, deadAddresses: string[][] = []) {
    const router = await startNginx({
      dir,
      shardBits,
      upstreams: upstreams.map((shard, k) => [...(deadAddresses[k] ?? []), ...shard.map((f) => f.address)]),
    });
    routers.push(router);
    return router;
  }

  it('sends each id to its own shard only, percent-encoded ids too, with upstream keep-alive', async () => {
    const shards = await Promise.all(['s0', 's1', 's2', 's3'].map((n) => fakeReplica(n)));
    fakes.push(...shards);
    const router = await start(
      shards.map((f) => [f]),
      2,
    );
    const sent: string[][] = [[], [], [], []];
    for (let i = 0; i < 200; i++) {
      const id =
        i % 3 === 0 ? `odd id/${i}?%` : `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
      const k = keyHash1(id) >>> 30;
      const path = `/promotions/${encodeURIComponent(id)}`;
      const r = await fetch(`${router.url}${path}`);
      expect(r.status, path).to.equal(200);
      expect(r.headers.get('x-promotions-shard')).to.equal(String(k));
      expect(await r.json()).to.deep.equal({ server: `s${k}`, url: path, method: 'GET', body: 0 });
      sent[k].push(path);
    }
    for (const [k, f] of shards.entries()) {
      expect(f.seen, `shard ${k}`).to.deep.equal(sent[k]);
      expect(sent[k].length, `shard ${k} got some ids`).to.be.greaterThan(20);
      // One worker, sequential requests: the upstream connection is reused, and no `Connection: close` is sent.
      expect(f.sockets, `shard ${k} connections`).to.be.lessThan(3);
      expect(f.lastConnection).to.equal(undefined);
    }
    const health = await fetch(`${router.url}/healthz`);
    expect(health.status).to.equal(200);
    const other = await fetch(`${router.url}/readyz`);
    expect(other.status).to.equal(404);
    expect(((await other.json()) as { error: string }).error).to.equal('REQUEST_NOT_FOUND');
    expect(shards.flatMap((f) => f.seen)).to.not.include('/readyz');
  });

  it('retries a failed read only on a twin of the same shard, never on another shard', async () => {
    const s0 = await fakeReplica('s0');
    const twin = await fakeReplica('s1-twin');
    const cutter = await fakeReplica('s1-cut', 'cut');
    fakes.push(s0, twin, cutter);
    const router = await start([[s0], [cutter, twin]], 1);
    const ids = idsOf(1, 1, 20);
    for (const id of ids) {
      const r = await fetch(`${router.url}/promotions/${id}`);
      expect(r.status, id).to.equal(200);
      expect(((await r.json()) as { server: string }).server).to.equal('s1-twin');
    }
    expect(s0.seen).to.deep.equal([]);
    expect(cutter.seen.length, 'the cutting replica was tried').to.be.greaterThan(0);
  });

  it('answers 502 ROUTER_SHARD_UNAVAILABLE when a whole shard is down, while the other shard serves', async () => {
    const s0 = await fakeReplica('s0');
    const cutA = await fakeReplica('s1-a', 'cut');
    const cutB = await fakeReplica('s1-b', 'cut');
    fakes.push(s0, cutA, cutB);
    const router = await start([[s0], [cutA, cutB]], 1);
    for (const id of idsOf(1, 1, 5)) {
      const r = await fetch(`${router.url}/promotions/${id}`);
      expect(r.status, id).to.equal(502);
      expect(await r.json()).to.deep.include({ error: 'ROUTER_SHARD_UNAVAILABLE' });
    }
    for (const id of idsOf(0, 1, 5)) {
      const r = await fetch(`${router.url}/promotions/${id}`);
      expect(r.status, id).to.equal(200);
    }
    expect(s0.seen).to.have.length(5);
    expect(s0.seen.every((p) => keyHash1(p.slice('/promotions/'.length)) >>> 31 === 0)).to.equal(true);
  });

  it('passes a replica answer (421, 503) on as it is, without trying the twin', async () => {
    const misdirected = await fakeReplica('s0-421', 421);
    const busy = await fakeReplica('s1-503', 503);
    const twin0 = await fakeReplica('s0-twin', 421);
    const twin1 = await fakeReplica('s1-twin', 503);
    fakes.push(misdirected, busy, twin0, twin1);
    const router = await start(
      [
        [misdirected, twin0],
        [busy, twin1],
      ],
      1,
    );
    const [id0] = idsOf(0, 1, 1);
    const [id1] = idsOf(1, 1, 1);
    // node:http, not fetch: undici itself repeats a request that got 421 (RFC 9110 allows it), which would hide
    // what nginx did.
    expect(await plainGet(`${router.url}/promotions/${id0}`)).to.deep.equal({
      status: 421,
      body: '{"error":"FAKE_421"}',
    });
    expect(await plainGet(`${router.url}/promotions/${id1}`)).to.deep.equal({
      status: 503,
      body: '{"error":"FAKE_503"}',
    });
    expect(misdirected.seen.length + twin0.seen.length).to.equal(1);
    expect(busy.seen.length + twin1.seen.length).to.equal(1);
  });

  it('routes a batch to the shard its ids share, refuses one of several shards, and a POST by its X-Promotions-Shard', async () => {
    const shards = await Promise.all(['s0', 's1'].map((n) => fakeReplica(n)));
    fakes.push(...shards);
    const router = await start(
      shards.map((f) => [f]),
      1,
    );
    const [a, b] = idsOf(1, 1, 2);
    const [c] = idsOf(0, 1, 1);
    const one = `/promotions?id=${a}&id=${b}`;
    const r1 = await fetch(`${router.url}${one}`);
    expect(r1.status).to.equal(200);
    expect(r1.headers.get('x-promotions-shard')).to.equal('1');
    expect(await r1.json()).to.deep.equal({ server: 's1', url: one, method: 'GET', body: 0 });
    const mixed = await fetch(`${router.url}/promotions?id=${a}&id=${c}`);
    expect(mixed.status).to.equal(421);
    expect(await mixed.json()).to.deep.include({ error: 'PROMOTION_WRONG_SHARD' });
    const body = JSON.stringify({
      ids: Array.from({ length: 1000 }, (_, i) => `${a}-${i}`.padEnd(120, 'x')),
    });
    const post = (headers: Record<string, string>) =>
      fetch(`${router.url}/promotions:batchGet`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    const r2 = await post({ 'x-promotions-shard': '0' });
    expect(r2.status).to.equal(200);
    expect(await r2.json()).to.deep.equal({
      server: 's0',
      url: '/promotions:batchGet',
      method: 'POST',
      body: Buffer.byteLength(body),
    });
    for (const headers of [{}, { 'x-promotions-shard': '2' }] as Record<string, string>[]) {
      const refused = await post(headers);
      expect(refused.status, JSON.stringify(headers)).to.equal(421);
      expect(await refused.json()).to.deep.include({ error: 'PROMOTION_WRONG_SHARD' });
    }
    expect(shards[0].seen).to.deep.equal(['/promotions:batchGet']);
    expect(shards[1].seen).to.deep.equal([one]);
  });

  it('stop() ends nginx by its pid', async () => {
    const s0 = await fakeReplica('s0');
    fakes.push(s0);
    const router = await start([[s0]], 0);
    expect(isRunning(router.pid)).to.equal(true);
    await router.stop();
    expect(isRunning(router.pid)).to.equal(false);
    await router.stop(); // a second stop is harmless
  });

  it('refuses upstream lists that do not match the shard bits, and a configuration it cannot adapt', () => {
    expect(() => shardsConf([['127.0.0.1:1']], 1)).to.throw(/2 shards need 2 upstream lists/);
    expect(() => shardsConf([[]], 0)).to.throw(/shard 0 has no upstream server/);
    expect(() => shardsConf([['bad host;']], 0)).to.throw(/not host:port/);
    expect(() => shardsConf([['127.0.0.1:1']], 7)).to.throw(/shardBits/);
    expect(() => loopbackConf('worker_processes auto;', '/tmp/x', 1)).to.throw(/load_module/);
  });

  it('answers only error codes of common/errors.ts, with their status', async () => {
    const conf = await readFile(join(ROUTER_DIR, 'nginx.conf'), 'utf8');
    const answers = [...conf.matchAll(/return (\d{3}) '\{"error":"([A-Z_]+)"/g)].map((m) => [
      m[2],
      Number(m[1]),
    ]);
    expect(answers.length).to.be.greaterThan(2);
    for (const [code, status] of answers) {
      expect(ERROR_CODES, String(code)).to.have.property(String(code));
      // A timeout keeps its 504; the code's own status is 502.
      if (status !== 504) expect(ERROR_CODES[code as ErrorCode]).to.equal(status);
    }
  });
});
