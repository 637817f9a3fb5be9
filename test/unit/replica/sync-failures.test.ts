/**
 * A replica that cannot load the version it is told to serve: it backs off instead of pulling at every poll, tells
 * the leader what failed, and says when it serves an older version than it was told to (after a restart whose
 * served file rotted).
 */
import { join } from 'node:path';
import { expect } from 'chai';
import { PULL_BACKOFF_MAX_MS } from '../../../replica/sync.js';
import {
  bareSyncer,
  cleanup,
  csvOf,
  http,
  ingest,
  LEADER_AUTH,
  putCsv,
  startLeader,
  startReplica,
  stopReplica,
  waitFor,
  waitForVersion,
} from '../../helpers.js';
import { rot } from '../common/snapshot/rot.js';

const rows = (price: string) =>
  csvOf(Array.from({ length: 50 }, (_, i) => [`id-${i}`, price, '2018-01-01 00:00:00']));

/** How many times the leader was asked for a version's file (its own request counter). */
async function filePulls(leaderUrl: string): Promise<number> {
  const text = (await http(`${leaderUrl}/metrics`, { headers: LEADER_AUTH })).text;
  let n = 0;
  for (const m of text.matchAll(
    /^promotions_http_requests_total\{route="\/snapshots\/:version\/file",[^}]*\} (\d+)$/gm,
  )) {
    n += Number(m[1]);
  }
  return n;
}

type Listed = {
  url: string;
  version: number | null;
  wantedVersion: number | null;
  behind: boolean;
  stale: boolean;
  lastError: string | null;
};

async function replicasOf(leaderUrl: string): Promise<Listed[]> {
  return (await http(`${leaderUrl}/replicas`, { headers: LEADER_AUTH })).json.replicas as Listed[];
}

describe('replica/sync: versions that fail to load', () => {
  afterEach(cleanup);

  it('backs off from a version that fails to verify (doubling, capped) instead of pulling it at every poll, and reports it to the leader', async () => {
    // The leader's file rotted after it was built; without a scrub the leader does not know.
    const leader = await startLeader({ SCRUB_BYTES_PER_SECOND: '0' });
    await ingest(leader.url, rows('1'));
    await rot(leader.store.filePath(1));
    let clock = 1_000_000;
    const { index, syncer } = await bareSyncer(
      leader.url,
      { SYNC_INTERVAL_MS: '1000' },
      { now: () => clock },
    );
    syncer.advertiseUrl = 'http://127.0.0.1:1';

    await syncer.poll();
    expect(await filePulls(leader.url)).to.be.at.least(1);
    const afterFirst = await filePulls(leader.url);
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      const f = syncer.status.failure;
      expect(f?.code).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
      const retryAt = Date.parse(f?.retryAt as string);
      waits.push(retryAt - clock);
      // Polls before the wait is over pull nothing.
      clock = retryAt - 1;
      const before = await filePulls(leader.url);
      await syncer.poll();
      await syncer.poll();
      expect(await filePulls(leader.url)).to.equal(before);
      clock = retryAt;
      await syncer.poll();
      expect(await filePulls(leader.url)).to.be.above(before);
      expect(syncer.status.failure?.attempts).to.equal(i + 2);
    }
    expect(afterFirst).to.be.at.least(1);
    expect(waits.slice(0, 5)).to.deep.equal([1000, 2000, 4000, 8000, 16000]);
    expect(waits.at(-1)).to.equal(PULL_BACKOFF_MAX_MS);
    expect(index.current).to.equal(undefined);

    const [seen] = await replicasOf(leader.url);
    expect(seen.url).to.equal('http://127.0.0.1:1');
    expect(seen.lastError).to.equal('version 1: 502 SNAPSHOT_CHECKSUM_MISMATCH (reported by its poll)');
    expect(seen.wantedVersion).to.equal(1);
  });

  it('after a restart whose served file rotted, with no leader, serves the previous version, ready, and says it is behind; the leader sees it', async () => {
    const leader = await startLeader({ SCRUB_BYTES_PER_SECOND: '0' });
    await putCsv(leader.url, rows('1'));
    const first = await startReplica(leader.url);
    await waitForVersion(first, 1);
    await putCsv(leader.url, rows('2'));
    await waitForVersion(first, 2);
    await stopReplica(first);
    await rot(join(first.config.dataDir, 'v000002.snap'));

    // No leader: only its own files.
    const alone = await startReplica('http://127.0.0.1:9', { DATA_DIR: first.config.dataDir });
    const ready = await http(`${alone.url}/readyz`);
    expect(ready.status).to.equal(200);
    expect(ready.json).to.deep.include({ status: 'ready', version: 1, behind: true, wantedVersion: 2 });
    expect((await http(`${alone.url}/promotions/id-3`)).json.price).to.equal(1);
    const metrics = (await http(`${alone.url}/metrics`)).text;
    expect(metrics).to.match(/^promotions_snapshot_behind\{role="replica"\} 1$/m);
    expect(metrics).to.match(/^promotions_snapshot_wanted_version\{role="replica"\} 2$/m);
    expect(metrics).to.match(/^promotions_snapshot_version\{role="replica"\} 1$/m);
    await stopReplica(alone);

    // The leader answers, but its own copy of version 2 rotted too: the replica stays behind, and the leader
    // shows it.
    await rot(leader.store.filePath(2));
    const back = await startReplica(leader.url, { DATA_DIR: first.config.dataDir });
    const seen = await waitFor(
      async () => (await replicasOf(leader.url)).find((r) => r.url === back.url && r.behind),
      10_000,
      'the leader to see the replica behind',
    );
    expect(seen).to.deep.include({ version: 1, wantedVersion: 2, behind: true, stale: false });
    expect(seen.lastError).to.match(/^version 2: 502 SNAPSHOT_CHECKSUM_MISMATCH/);
    expect((await http(`${back.url}/readyz`)).json).to.deep.include({ behind: true, wantedVersion: 2 });
  });
});
