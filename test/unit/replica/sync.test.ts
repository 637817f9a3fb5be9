import { readdir } from 'node:fs/promises';
import { expect } from 'chai';
import { loadReplicaConfig } from '../../../common/config.js';
import type { SnapshotManifest } from '../../../common/protocol.js';
import { LiveIndex } from '../../../replica/live-index.js';
import { Syncer } from '../../../replica/sync.js';
import {
  cleanup,
  csvOf,
  http,
  LEADER_AUTH,
  LEADER_TOKEN,
  onCleanup,
  putCsv,
  quietLogger,
  REPLICA_TOKEN,
  startLeader,
  startReplica,
  stopReplica,
  tempDir,
  waitFor,
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
    const config = loadReplicaConfig({ DATA_DIR: await tempDir(), LEADER_URL: leader.url, REPLICA_TOKEN });
    const index = new LiveIndex();
    const swapped: number[] = [];
    const swap = index.swap.bind(index);
    index.swap = (snapshot, manifest) => {
      swapped.push(manifest.version);
      return swap(snapshot, manifest);
    };
    const syncer = new Syncer(config, index, quietLogger());
    onCleanup(async () => index.current?.snapshot.close());

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
    await waitFor(() => (replica.index.current?.manifest.version === 2 ? true : undefined), 5000, 'v2');
    const rollback = await http(`${leader.url}/snapshots/1/activate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${LEADER_TOKEN}` },
    });
    expect(rollback.status).to.equal(200);
    await waitFor(() => (replica.index.current?.manifest.version === 1 ? true : undefined), 5000, 'v1');
    await stopReplica(replica);

    // The leader is out of reach: what it serves comes from its own files only.
    const back = await startReplica('http://127.0.0.1:9', { DATA_DIR: replica.config.dataDir });
    expect(back.index.current?.manifest.version).to.equal(1);
    expect((await http(`${back.url}/promotions/id-3`)).json.price).to.equal(1);
  });
});
