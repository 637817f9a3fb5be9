import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { SnapshotManifest } from '../../../common/protocol.js';
import { shardOfId } from '../../../common/snapshot/shard.js';
import {
  activate,
  bareSyncer,
  cleanup,
  csvOf,
  fakeServer,
  http,
  LEADER_AUTH,
  putCsv,
  startLeader,
  startReplica,
  stopReplica,
  waitFor,
  waitForVersion,
} from '../../helpers.js';

const rows = (price: string) =>
  csvOf(Array.from({ length: 20 }, (_, i) => [`id-${i}`, price, '2018-01-01 00:00:00']));

async function manifestOf(leaderUrl: string, version: number): Promise<SnapshotManifest> {
  return (await http(`${leaderUrl}/snapshots/${version}`, { headers: LEADER_AUTH }))
    .json as unknown as SnapshotManifest;
}

describe('replica/sync', () => {
  afterEach(cleanup);

  it('loads one version at a time; a newer request replaces a pending older one', async () => {
    const leader = await startLeader();
    for (const price of ['1', '2', '3']) await putCsv(leader.url, rows(price), '?force=true');
    const [m1, m2, m3] = await Promise.all([1, 2, 3].map((v) => manifestOf(leader.url, v)));
    const { config, index, syncer } = await bareSyncer(leader.url);
    const swapped: number[] = [];
    const swap = index.swap.bind(index);
    index.swap = (snapshot, manifest) => {
      swapped.push(manifest.version);
      return swap(snapshot, manifest);
    };

    // Not started: no poll, only these three requests, made while the first load runs.
    const all = [syncer.follow(m1), syncer.follow(m2), syncer.follow(m3)];
    expect(syncer.status.loading).to.equal(1);
    await Promise.all(all);
    expect(swapped).to.deep.equal([1, 3]);
    expect(syncer.status).to.include({ loading: null, lastError: null });
    expect((await readdir(config.dataDir)).sort()).to.deep.equal([
      'SERVING',
      'tmp',
      'v000001.snap',
      'v000003.snap',
    ]);
  });

  it('after a restart serves the version it served last, even when a rollback made it the older one', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, rows('1'));
    await putCsv(leader.url, rows('2'));
    const replica = await startReplica(leader.url);
    await waitForVersion(replica, 2);
    const rollback = await activate(leader.url, 1);
    expect(rollback.status).to.equal(200);
    await waitForVersion(replica, 1);
    // SERVING is written just after the swap: stop once it records the rollback.
    const serving = join(replica.config.dataDir, 'SERVING');
    await waitFor(
      async () => (JSON.parse(await readFile(serving, 'utf8')).version === 1 ? true : undefined),
      5000,
      'SERVING to say version 1',
    );
    await stopReplica(replica);

    // The leader is out of reach: what it serves comes from its own files only.
    const back = await startReplica('http://127.0.0.1:9', { DATA_DIR: replica.config.dataDir });
    expect(back.index.current?.manifest.version).to.equal(1);
    expect((await http(`${back.url}/promotions/id-3`)).json.price).to.equal(1);
  });

  describe('with SHARD=k/S', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `shard-id-${i}`);
    const csv = (price: string) => csvOf(ids.map((id) => [id, price, '2018-01-01 00:00:00']));
    const mine = (k: number) => ids.filter((id) => shardOfId(id, 2) === k);

    for (const mode of ['memory', 'disk']) {
      it(`pulls, keeps and serves only its shard; other shards' ids get 421 (${mode} mode)`, async () => {
        const leader = await startLeader();
        await putCsv(leader.url, csv('1.5'));
        const m = await manifestOf(leader.url, 1);
        const replica = await startReplica(leader.url, { SHARD: '1/4', SERVE_MODE: mode });
        await waitFor(() => replica.index.current, 10_000, 'the shard loaded');

        const ready = await http(`${replica.url}/readyz`);
        expect(ready.json).to.include({ version: 1, rows: mine(1).length, mode });
        expect(ready.json.shard).to.deep.equal({ index: 1, count: 4 });
        expect(mine(1).length).to.be.within(800, 1200);
        for (const id of mine(1).slice(0, 300)) {
          const r = await http(`${replica.url}/promotions/${id}`);
          expect([r.status, r.json.price], id).to.deep.equal([200, 1.5]);
        }
        const other = await http(`${replica.url}/promotions/${mine(3)[0]}`);
        expect(other.status).to.equal(421);
        expect(other.json.error).to.equal('PROMOTION_WRONG_SHARD');
        expect(other.json.message).to.include('shard 3/4');
        // An absent id of its own shard is a plain 404.
        const absent = ids.length + ids.findIndex((_, i) => shardOfId(`shard-id-${ids.length + i}`, 2) === 1);
        expect((await http(`${replica.url}/promotions/shard-id-${absent}`)).status).to.equal(404);
        // A batch of its own shard's ids is answered; one holding another shard's id is 421 as a whole (a batch
        // spanning shards is the client's or the proxy's to split).
        const batch = (batchIds: string[]) =>
          http(`${replica.url}/promotions?${batchIds.map((id) => `id=${id}`).join('&')}`);
        const own = await batch(mine(1).slice(0, 50));
        expect(own.status).to.equal(200);
        expect((own.json.promotions as unknown[]).length).to.equal(50);
        const spanning = await batch([...mine(1).slice(0, 5), mine(3)[0]]);
        expect(spanning.status).to.equal(421);
        expect(spanning.json.error).to.equal('PROMOTION_WRONG_SHARD');
        expect(spanning.json.message).to.include('split a batch by shard');

        // The leader knows the replica's shard from its poll, and that the version is not live on every shard.
        await waitFor(
          async () => {
            const list = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json as {
              replicas: { shard: string; version: number }[];
              shards: { currentLive: boolean; layouts: { shards: number; missingCurrent: number[] }[] };
            };
            if (list.replicas[0]?.version !== 1) return undefined;
            expect(list.replicas[0].shard).to.equal('1/4');
            expect(list.shards.currentLive).to.equal(false);
            expect(list.shards.layouts.map((l) => [l.shards, l.missingCurrent])).to.deep.equal([
              [4, [0, 2, 3]],
            ]);
            return true;
          },
          10_000,
          'the leader sees shard 1/4 on v1',
        );

        // Only the shard's range came over the network, and the file on disk holds about a quarter of the bytes.
        expect(replica.syncer.pulledBytes).to.be.within(m.bytes * 0.15, m.bytes * 0.35);
        const file = await stat(join(replica.config.dataDir, 'v000001.snap'));
        expect(file.size).to.equal(m.bytes);
        expect(file.blocks * 512).to.be.below(m.bytes * 0.5);

        // A restart serves its shard of the local file at once, the leader out of reach.
        await stopReplica(replica);
        const back = await startReplica('http://127.0.0.1:9', {
          DATA_DIR: replica.config.dataDir,
          SHARD: '1/4',
          SERVE_MODE: mode,
        });
        expect(back.index.current?.manifest.version).to.equal(1);
        expect((await http(`${back.url}/promotions/${mine(1)[5]}`)).json.price).to.equal(1.5);
      });
    }

    it('refuses a version whose shard bytes do not verify, and keeps serving the one it has', async () => {
      const leader = await startLeader();
      await putCsv(leader.url, csv('1.5'));
      let flip = false;
      // Passes everything on; once `flip` is set, flips a byte in the middle of each body range it relays.
      const proxy = await fakeServer((req, res) => {
        void (async () => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(req.headers))
            if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
          const up = await fetch(`${leader.url}${req.url}`, { headers });
          const body = Buffer.from(await up.arrayBuffer());
          if (flip && up.status === 206 && body.length > 4096) body[body.length >> 1] ^= 0x20;
          const range = up.headers.get('content-range');
          res.writeHead(up.status, {
            'content-length': body.length,
            ...(range ? { 'content-range': range } : {}),
          });
          res.end(body);
        })().catch(() => res.destroy());
      });
      const replica = await startReplica(proxy, { SHARD: '2/4' });
      await waitFor(() => replica.index.current, 10_000, 'v1');
      flip = true;
      await putCsv(leader.url, csv('2.5'));
      const m2 = await manifestOf(leader.url, 2);
      let code: unknown;
      await replica.syncer.follow(m2).catch((err: { code?: unknown }) => {
        code = err.code;
      });
      expect(code).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
      expect(replica.index.current?.manifest.version).to.equal(1);
      expect((await http(`${replica.url}/promotions/${mine(2)[0]}`)).json.price).to.equal(1.5);
      // Undamaged, the same version loads.
      flip = false;
      await replica.syncer.follow(m2);
      expect((await http(`${replica.url}/promotions/${mine(2)[0]}`)).json.price).to.equal(2.5);
    });

    it('follows a new version; restarted as another shard, refuses the local file and pulls its own', async () => {
      const leader = await startLeader();
      await putCsv(leader.url, csv('1.5'));
      const replica = await startReplica(leader.url, { SHARD: '0/2' });
      await waitFor(() => replica.index.current, 10_000, 'v1');
      await putCsv(leader.url, csv('2.5'));
      await replica.syncer.follow(await manifestOf(leader.url, 2));
      const [zero, one] = [0, 1].map((k) => ids.find((x) => shardOfId(x, 1) === k) as string);
      expect((await http(`${replica.url}/promotions/${zero}`)).json.price).to.equal(2.5);
      await stopReplica(replica);

      // Shard 1 of 2 is not in this file: it fails verification and goes; the version is pulled again.
      const other = await startReplica(leader.url, { DATA_DIR: replica.config.dataDir, SHARD: '1/2' });
      await waitFor(() => other.index.current, 10_000, 'v2 of shard 1/2');
      expect(other.index.current?.manifest.version).to.equal(2);
      expect((await http(`${other.url}/promotions/${one}`)).json.price).to.equal(2.5);
      expect((await http(`${other.url}/promotions/${zero}`)).status).to.equal(421);
    });
  });
});
