/**
 * The leader's replica registry against fake replicas (node:http on loopback) and a fake DNS resolver: notices
 * retried with growing waits, given up on, refused, superseded by a later publish; failures recorded and cleared;
 * replicas found and forgotten through DNS.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { SnapshotManifest } from '../../../common/protocol.js';
import type { Resolve4 } from '../../../leader/replica-dns.js';
import {
  MAX_NOTICE_REPLY_BYTES,
  ReplicaRegistry,
  type ReplicaRegistryOptions,
  type ReplicaStatus,
} from '../../../leader/replicas.js';
import { cleanup, fakeServer, onCleanup, quietLogger, REPLICA_TOKEN, waitFor } from '../../helpers.js';

function manifest(version: number): SnapshotManifest {
  return {
    version,
    snapshotId: 'ab'.repeat(16),
    checksum: `${version}`.padStart(64, '0'),
    rows: 1,
    duplicates: 0,
    badRows: 0,
    bytes: 100,
    sourceSha256: 'cd'.repeat(32),
    createdAt: new Date(0).toISOString(),
  };
}

interface Notice {
  readonly at: number;
  readonly version: number;
  readonly authorization: string | undefined;
}

interface FakeReplica {
  readonly url: string;
  readonly port: number;
  readonly notices: Notice[];
  close(): Promise<void>;
}

type Answer = (version: number, n: number) => { status: number; body: Record<string, unknown> };

/** A replica that records every notice and answers as `answer` says (n counts notices from 1). */
async function fakeReplica(answer: Answer, port = 0): Promise<FakeReplica> {
  const notices: Notice[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => {
      text += c.toString();
    });
    req.on('end', () => {
      const version = (JSON.parse(text) as SnapshotManifest).version;
      notices.push({ at: Date.now(), version, authorization: req.headers.authorization });
      const { status, body } = answer(version, notices.length);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  onCleanup(close);
  const actual = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${actual}`, port: actual, notices, close };
}

const FAST = { baseDelayMs: 40, maxDelayMs: 1000 };

function registry(urls: string[], options: ReplicaRegistryOptions = {}): ReplicaRegistry {
  const r = new ReplicaRegistry(urls, REPLICA_TOKEN, 5000, quietLogger(), { retry: FAST, ...options });
  onCleanup(async () => r.close());
  return r;
}

function statusOf(r: ReplicaRegistry, url: string, current?: number): ReplicaStatus {
  const s = r.list(current).find((x) => x.url === url);
  if (s === undefined) throw new Error(`${url} is not listed`);
  return s;
}

const ok = (version: number) => ({ status: 200, body: { version } });
const refusedFile = {
  status: 502,
  body: { error: 'SNAPSHOT_CHECKSUM_MISMATCH', message: 'snapshot partition 3 does not match its checksum' },
};

describe('leader/replicas: the registry and its notices', () => {
  afterEach(cleanup);

  it('retries a failed notice with growing waits until the replica takes it', async () => {
    const replica = await fakeReplica((v, n) => (n <= 3 ? refusedFile : ok(v)));
    const r = registry([replica.url], { retry: { ...FAST, maxAttempts: 6 } });
    await r.notifyAll(manifest(4));

    expect(replica.notices.map((n) => n.version)).to.deep.equal([4, 4, 4, 4]);
    expect(replica.notices.every((n) => n.authorization === `Bearer ${REPLICA_TOKEN}`)).to.equal(true);
    const gaps = replica.notices.slice(1).map((n, i) => n.at - replica.notices[i].at);
    // The k-th wait is base*2^(k-1) less up to half as jitter: at least 20, 40, 80 ms (a busy machine adds).
    expect(gaps).to.have.length(3);
    for (const [k, gap] of gaps.entries()) {
      expect(gap, `wait ${k + 1}`).to.be.at.least((FAST.baseDelayMs * 2 ** k) / 2 - 2);
    }
    expect(statusOf(r, replica.url, 4)).to.deep.include({
      version: 4,
      lastError: null,
      lag: 0,
      notice: { version: 4, state: 'done', attempts: 4, nextAttemptAt: null },
    });
  });

  it('gives up after the last attempt, keeping the status and code the replica gave', async () => {
    const replica = await fakeReplica(() => refusedFile);
    const r = registry([replica.url], { retry: { ...FAST, maxAttempts: 3 } });
    r.seen(replica.url, 1);
    await r.notifyAll(manifest(2));
    expect(replica.notices).to.have.length(3);
    const s = statusOf(r, replica.url, 2);
    expect(s).to.deep.include({ version: 1, lag: 1 });
    expect(s.lastError).to.equal('version 2: 502 SNAPSHOT_CHECKSUM_MISMATCH');
    expect(s.notice).to.deep.include({ version: 2, state: 'failed', attempts: 3 });
    expect(s.lastContact).to.be.a('string');

    // Its own poll brings it to version 2 later: the failure is over.
    r.seen(replica.url, 2);
    expect(statusOf(r, replica.url, 2)).to.deep.include({ version: 2, lastError: null, lag: 0 });
  });

  it('does not retry a notice the replica refuses as wrong (401)', async () => {
    const replica = await fakeReplica(() => ({
      status: 401,
      body: { error: 'AUTH_REQUIRED', message: 'this route needs an Authorization: Bearer token' },
    }));
    const r = registry([replica.url]);
    await r.notifyAll(manifest(1));
    expect(replica.notices).to.have.length(1);
    expect(statusOf(r, replica.url).lastError).to.match(/^version 1: 401 AUTH_REQUIRED/);
    expect(statusOf(r, replica.url).notice?.state).to.equal('failed');
  });

  it('reaches a replica that was down when the version was published, once it is back', async () => {
    const probe = await fakeReplica(ok);
    const port = probe.port;
    await probe.close();
    const url = `http://127.0.0.1:${port}`;
    const r = registry([url], { retry: { ...FAST, maxAttempts: 10 } });
    const done = r.notifyAll(manifest(7));
    await waitFor(() => statusOf(r, url).lastError ?? undefined, 5000, 'the first failure');
    expect(statusOf(r, url).lastError).to.match(/^version 7: ECONNREFUSED/);
    const back = await fakeReplica(ok, port);
    await done;
    expect(back.notices.map((n) => n.version)).to.deep.equal([7]);
    expect(statusOf(r, url, 7)).to.deep.include({ version: 7, lastError: null, lag: 0 });
  });

  it('stops retrying an older version once a newer one is published', async () => {
    const replica = await fakeReplica((v) => (v === 1 ? refusedFile : ok(v)));
    // Backoff timers that fire only when the test says, so that "no more retries" is checked, not waited for.
    const timers = new Map<number, () => void>();
    let id = 0;
    const setTimer = (fn: () => void) => {
      const key = ++id;
      timers.set(key, fn);
      return () => void timers.delete(key);
    };
    const r = registry([replica.url], {
      retry: { baseDelayMs: 200, maxDelayMs: 200, maxAttempts: 20 },
      setTimer,
    });
    const first = r.notifyAll(manifest(1));
    await waitFor(
      () => (statusOf(r, replica.url).notice?.state === 'waiting' ? true : undefined),
      5000,
      'a retry',
    );
    expect(timers.size).to.equal(1);
    await r.notifyAll(manifest(2));
    await first;
    // The publish cancelled version 1's backoff: nothing is left to fire, so it can send no more.
    expect(timers.size).to.equal(0);
    expect(replica.notices.at(-1)?.version).to.equal(2);
    expect(replica.notices.filter((n) => n.version === 1)).to.have.length(1);
    expect(statusOf(r, replica.url, 2)).to.deep.include({ version: 2, lastError: null });
  });

  it('ends pending retries when the replica reports the version by its own poll', async () => {
    const replica = await fakeReplica(() => refusedFile);
    const r = registry([replica.url], { retry: { baseDelayMs: 200, maxDelayMs: 200, maxAttempts: 20 } });
    const done = r.notifyAll(manifest(3));
    await waitFor(
      () => (statusOf(r, replica.url).notice?.state === 'waiting' ? true : undefined),
      5000,
      'a retry',
    );
    r.seen(replica.url, 3);
    await done;
    expect(replica.notices).to.have.length(1);
    expect(statusOf(r, replica.url, 3)).to.deep.include({ version: 3, lastError: null });
    expect(statusOf(r, replica.url).notice?.state).to.equal('done');
  });

  it('shows only the status and a well-formed error code of a failed notice, never the text of the answer', async () => {
    const refused = await fakeReplica(() => ({
      status: 502,
      body: { error: 'SNAPSHOT_ID_MISMATCH', message: '<script>secret internal page</script>' },
    }));
    const odd = await fakeReplica(() => ({
      status: 400,
      body: { error: 'not a code <b>', message: 'hello' },
    }));
    const page = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/html' }).end('<html>secret admin page</html>');
    });
    const r = registry([refused.url, odd.url, page], { retry: { ...FAST, maxAttempts: 1 } });
    await r.notifyAll(manifest(1));
    expect([refused.url, odd.url, page].map((u) => statusOf(r, u).lastError)).to.deep.equal([
      'version 1: 502 SNAPSHOT_ID_MISMATCH',
      'version 1: 400',
      'version 1: 404',
    ]);
    expect(JSON.stringify(r.list(1)))
      .not.to.include('secret')
      .and.not.to.include('hello');
  });

  it('never follows a redirect from a replica, so the token is not sent elsewhere', async () => {
    const elsewhere: string[] = [];
    const target = await fakeServer((req, res) => {
      elsewhere.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
      res.end('{}');
    });
    const replica = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(307, { location: `${target}/steal?x=` }).end();
    });
    const r = registry([replica]);
    await r.notifyAll(manifest(1));
    expect(elsewhere).to.deep.equal([]);
    expect(statusOf(r, replica)).to.deep.include({ lastError: 'version 1: 307' });
    expect(statusOf(r, replica).notice).to.deep.include({ state: 'failed', attempts: 1 });
  });

  it('stops reading an answer past MAX_NOTICE_REPLY_BYTES, declared or streamed, and does not retry it', async () => {
    let sent = 0;
    const endless = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      // Writes as long as the leader reads; the leader must cancel after about MAX_NOTICE_REPLY_BYTES.
      const more = () => {
        while (!res.destroyed && sent < 1024 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
      };
      more();
    });
    const declared = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(500, { 'content-length': String(10 * 1024 * 1024) }).write('x');
    });
    const r = registry([endless, declared]);
    await r.notifyAll(manifest(1));
    expect(statusOf(r, endless).lastError).to.equal(
      `version 1: 200 reply larger than ${MAX_NOTICE_REPLY_BYTES} bytes`,
    );
    expect(statusOf(r, declared).lastError).to.equal(
      `version 1: 500 reply larger than ${MAX_NOTICE_REPLY_BYTES} bytes`,
    );
    for (const url of [endless, declared]) {
      expect(statusOf(r, url).notice).to.deep.include({ state: 'failed', attempts: 1 });
    }
    // What the sockets buffer on the way is a few MiB at most; the leader did not read the gigabyte.
    expect(sent).to.be.below(32 * 1024 * 1024);
  });

  it('counts a replica still on a newer version after a rollback as behind', () => {
    const r = registry([]);
    r.seen('http://a:1', 5);
    r.seen('http://b:1', 4);
    r.seen('http://c:1', null);
    expect(r.list(4).map((s) => [s.url, s.source, s.lag])).to.deep.equal([
      ['http://a:1', 'registered', 1],
      ['http://b:1', 'registered', 0],
      ['http://c:1', 'registered', null],
    ]);
    expect([...r.versionsInUse()].sort()).to.deep.equal([4, 5]);
  });

  it('records the shard each replica says it serves; every shard keeps its version from pruning', () => {
    const shardReport = (shard: string | null) => ({
      wantedVersion: null,
      error: null,
      syncIntervalMs: null,
      shard,
    });
    const r = registry([]);
    r.seen('http://a:1', 5, shardReport('0/2'));
    r.seen('http://b:1', 4, shardReport('1/2'));
    r.seen('http://c:1', 5, shardReport(null));
    r.seen('http://d:1', 5, shardReport('nonsense'));
    r.seen('http://e:1', 5, shardReport('0/1'));
    expect(r.list(5).map((s) => [s.url, s.shard])).to.deep.equal([
      ['http://a:1', '0/2'],
      ['http://b:1', '1/2'],
      ['http://c:1', null],
      ['http://d:1', null],
      ['http://e:1', null],
    ]);
    // Shard 1 of 2 still serves 4 only: version 4 must stay.
    expect([...r.versionsInUse()].sort()).to.deep.equal([4, 5]);
    expect(r.served()).to.deep.include({ shard: '1/2', version: 4 });
  });

  it('tells the leader when a replica moves, so that old versions can be pruned', () => {
    let calls = 0;
    const r = registry([], { onServedChange: () => calls++ });
    r.seen('http://a:1', 1);
    r.seen('http://a:1', 1);
    r.seen('http://a:1', 2);
    expect(calls).to.equal(2);
  });

  describe('REPLICA_EXPIRY_MS', () => {
    it('forgets a registered replica silent for longer than the expiry, and only such ones', () => {
      let now = 1_000_000;
      let moves = 0;
      const r = registry(['http://10.9.9.9:8081'], {
        expiryMs: 60_000,
        now: () => now,
        onServedChange: () => moves++,
      });
      r.seen('http://a:1', 3);
      r.seen('http://b:1', 4);
      moves = 0;
      now += 40_000;
      r.seen('http://b:1', 4);
      now += 30_000;
      // a: silent 70 s; b: 30 s; the configured replica was never heard from and stays whatever.
      expect([...r.versionsInUse()], 'an expired replica pins nothing, even before the sweep').to.deep.equal([
        4,
      ]);
      r.forgetExpired();
      expect(r.list(4).map((s) => s.url)).to.deep.equal(['http://10.9.9.9:8081', 'http://b:1']);
      expect(moves, 'the leader prunes').to.equal(1);

      // Back from the dead: its next poll registers it again.
      r.seen('http://a:1', 4);
      expect(r.list(4).map((s) => [s.url, s.source])).to.deep.include(['http://a:1', 'registered']);
    });

    it('notifies no expired replica, and counts an answered notice as contact', async () => {
      const alive = await fakeReplica(ok);
      let now = 1_000_000;
      const r = registry([], { expiryMs: 60_000, now: () => now, retry: { ...FAST, maxAttempts: 1 } });
      // A replica that registered, then died: nothing listens on its port any more.
      const dead = await fakeReplica(ok);
      await dead.close();
      r.seen(alive.url, 1);
      r.seen(dead.url, 1);
      now += 50_000;
      await r.notifyAll(manifest(2));
      expect(statusOf(r, dead.url).lastError).to.match(/^version 2: ECONNREFUSED/);
      now += 20_000;
      // The live one answered a notice 20 s ago (its last poll was 70 s ago); the dead one is 70 s silent.
      await r.notifyAll(manifest(3));
      expect(alive.notices.map((n) => n.version)).to.deep.equal([2, 3]);
      expect(r.list(3).map((s) => s.url)).to.deep.equal([alive.url]);
    });

    it('sweeps periodically once started; 0 never forgets', async () => {
      let now = 0;
      const r = registry([], { expiryMs: 200, now: () => now });
      const never = registry([], { expiryMs: 0, now: () => now });
      r.seen('http://a:1', 1);
      never.seen('http://a:1', 1);
      r.start();
      never.start();
      now = 1_000_000;
      await waitFor(() => (r.list(undefined).length === 0 ? true : undefined), 5000, 'the sweep');
      never.forgetExpired();
      expect(never.list(undefined)).to.have.length(1);
    });
  });

  describe('REPLICAS_DNS', () => {
    /** A resolver whose answer the test sets; it counts lookups. */
    function fakeDns(initial: string[] | Error) {
      const state = { answer: initial, lookups: [] as string[] };
      const resolve: Resolve4 = async (host) => {
        state.lookups.push(host);
        if (state.answer instanceof Error) throw state.answer;
        return state.answer;
      };
      return { state, resolve };
    }
    const dnsError = (code: string) => Object.assign(new Error(`queryA ${code}`), { code });

    it('notifies the replicas behind the name, looked up at publish', async () => {
      const a = await fakeReplica(ok);
      const dns = fakeDns(['127.0.0.1']);
      const r = registry([], {
        dns: { host: 'replicas-headless.test.svc', port: a.port },
        resolve: dns.resolve,
      });
      await r.notifyAll(manifest(2));
      expect(dns.state.lookups).to.deep.equal(['replicas-headless.test.svc']);
      expect(a.notices.map((n) => n.version)).to.deep.equal([2]);
      expect(statusOf(r, a.url, 2)).to.deep.include({ source: 'dns', version: 2, lag: 0 });
    });

    it('never lets an earlier publish overtake a later one while DNS answers', async () => {
      const a = await fakeReplica(ok);
      let calls = 0;
      // The first lookup answers after the second.
      const resolve: Resolve4 = async () => {
        const delay = ++calls === 1 ? 150 : 10;
        await new Promise((res) => setTimeout(res, delay));
        return ['127.0.0.1'];
      };
      const r = registry([], { dns: { host: 'replicas', port: a.port }, resolve });
      await Promise.all([r.notifyAll(manifest(1)), r.notifyAll(manifest(2))]);
      expect(a.notices.map((n) => n.version)).to.deep.equal([2]);
      expect(statusOf(r, a.url, 2).version).to.equal(2);
    });

    it('adds and forgets addresses as the answer changes, and keeps them when DNS fails', async () => {
      const dns = fakeDns(['10.0.0.2', '10.0.0.1', '10.0.0.2']);
      const r = registry(['http://10.9.9.9:8081'], {
        dns: { host: 'replicas', port: 8081 },
        resolve: dns.resolve,
      });
      r.seen('http://10.0.0.3:8081', 1);
      await r.refreshDns();
      const view = () => r.list(undefined).map((s) => `${s.source} ${s.url}`);
      expect(view()).to.deep.equal([
        'config http://10.9.9.9:8081',
        'registered http://10.0.0.3:8081',
        'dns http://10.0.0.1:8081',
        'dns http://10.0.0.2:8081',
      ]);

      // A registered replica that DNS now lists becomes a DNS one; an address gone from DNS is forgotten.
      dns.state.answer = ['10.0.0.2', '10.0.0.3'];
      await r.refreshDns();
      expect(view()).to.deep.equal([
        'config http://10.9.9.9:8081',
        'dns http://10.0.0.3:8081',
        'dns http://10.0.0.2:8081',
      ]);

      // A failing DNS server says nothing about the replicas: keep them.
      dns.state.answer = dnsError('ETIMEOUT');
      await r.refreshDns();
      expect(view()).to.have.length(3);

      // An empty Service is NXDOMAIN: no replica behind the name now.
      dns.state.answer = dnsError('ENOTFOUND');
      await r.refreshDns();
      expect(view()).to.deep.equal(['config http://10.9.9.9:8081']);
    });

    it('looks the name up again periodically once started', async () => {
      const dns = fakeDns([]);
      const r = registry([], {
        dns: { host: 'replicas', port: 8081 },
        resolve: dns.resolve,
        dnsRefreshMs: 30,
      });
      r.start();
      await waitFor(() => (dns.state.lookups.length >= 3 ? true : undefined), 5000, 'three lookups');
      dns.state.answer = ['10.1.2.3'];
      await waitFor(
        () => (r.list(undefined).some((s) => s.url === 'http://10.1.2.3:8081') ? true : undefined),
        5000,
        'the new address',
      );
      r.close();
      const seen = dns.state.lookups.length;
      await new Promise((res) => setTimeout(res, 100));
      expect(dns.state.lookups.length).to.equal(seen);
    });
  });
});
