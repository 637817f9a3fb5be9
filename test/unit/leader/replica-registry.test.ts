/**
 * The leader's replica registry (leader/replica-registry.ts): what each replica serves and of which shard, lag,
 * expiry of silent registered replicas, and replicas found and forgotten through DNS (a fake resolver).
 */

import { expect } from 'chai';
import type { Resolve4 } from '../../../leader/replica-dns.js';
import { cleanup, waitFor } from '../../helpers.js';
import { FAST, fakeReplica, manifest, ok, registry, statusOf } from './replica-fixtures.js';

describe('leader/replica-registry', () => {
  afterEach(cleanup);

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
      // Lookups that answer when the test says: the second is answered, and its publish done, before the first.
      const answers: ((urls: string[]) => void)[] = [];
      const resolve: Resolve4 = () => new Promise((res) => answers.push(res));
      const r = registry([], { dns: { host: 'replicas', port: a.port }, resolve });
      const first = r.notifyAll(manifest(1));
      const second = r.notifyAll(manifest(2));
      await waitFor(() => (answers.length === 2 ? true : undefined), 5000, 'both lookups');
      answers[1](['127.0.0.1']);
      await second;
      expect(a.notices.map((n) => n.version)).to.deep.equal([2]);
      answers[0](['127.0.0.1']);
      await first;
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

    it('looks the name up again periodically once started, and no more once closed', async () => {
      const dns = fakeDns([]);
      // The refresh fires when the test says; `running` is whether it has been stopped.
      const refresh: { fire: () => void; ms: number; running: boolean } = {
        fire: () => {},
        ms: 0,
        running: false,
      };
      const r = registry([], {
        dns: { host: 'replicas', port: 8081 },
        resolve: dns.resolve,
        dnsRefreshMs: 30,
        setRepeat: (fn, ms) => {
          Object.assign(refresh, { fire: fn, ms, running: true });
          return () => {
            refresh.running = false;
          };
        },
      });
      r.start();
      expect(refresh).to.include({ ms: 30, running: true });
      refresh.fire();
      refresh.fire();
      await waitFor(() => (dns.state.lookups.length === 3 ? true : undefined), 5000, 'three lookups');
      dns.state.answer = ['10.1.2.3'];
      refresh.fire();
      await waitFor(
        () => (r.list(undefined).some((s) => s.url === 'http://10.1.2.3:8081') ? true : undefined),
        5000,
        'the new address',
      );
      r.close();
      expect(refresh.running).to.equal(false);
      expect(dns.state.lookups).to.have.length(4);
    });
  });
});
