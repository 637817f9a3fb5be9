import { expect } from 'chai';
import { ReplicaRegistry, STALE_SYNC_INTERVALS } from '../../../leader/replica-registry.js';
import {
  cleanup,
  csvOf,
  http,
  LEADER_AUTH,
  putCsv,
  quietLogger,
  REPLICA_TOKEN,
  startLeader,
} from '../../helpers.js';

describe('leader/replicas: when each replica was last heard from', () => {
  afterEach(cleanup);

  it('marks a replica stale once it is silent for several of its sync intervals, and one never heard from', () => {
    let clock = 1_000_000;
    const registry = new ReplicaRegistry(['http://127.0.0.1:7001'], REPLICA_TOKEN, 1000, quietLogger(), {
      now: () => clock,
    });
    registry.seen('http://127.0.0.1:7002', 3, { wantedVersion: 3, error: null, syncIntervalMs: 1000 });
    const at = (url: string) => registry.list(3).find((r) => r.url === url);
    expect(at('http://127.0.0.1:7001')).to.deep.include({ stale: true, lastContact: null });
    expect(at('http://127.0.0.1:7002')).to.deep.include({ stale: false, lag: 0, lastError: null });
    clock += STALE_SYNC_INTERVALS * 1000;
    expect(at('http://127.0.0.1:7002')?.stale).to.equal(false);
    clock += 1;
    expect(at('http://127.0.0.1:7002')).to.deep.include({
      stale: true,
      lag: 0,
      lastContact: new Date(1_000_000).toISOString(),
    });
    registry.seen('http://127.0.0.1:7002', 3, { wantedVersion: 3, error: null, syncIntervalMs: 1000 });
    expect(at('http://127.0.0.1:7002')?.stale).to.equal(false);
  });

  it('takes only well-formed poll reports (numbers and codes, never free text) and shows them in GET /replicas', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf([['a', '1', '2018-01-01 00:00:00']]));
    const poll = (headers: Record<string, string>) =>
      http(`${leader.url}/snapshots/current`, {
        headers: {
          authorization: `Bearer ${REPLICA_TOKEN}`,
          'x-replica-url': 'http://127.0.0.1:7003',
          ...headers,
        },
      });
    await poll({
      'x-replica-version': '1',
      'x-replica-wanted-version': '1',
      'x-replica-error': '1 502 SNAPSHOT_CHECKSUM_MISMATCH: <script>alert(1)</script>',
      'x-replica-sync-interval-ms': 'soon',
    });
    let [r] = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json.replicas as Record<
      string,
      unknown
    >[];
    expect(r).to.deep.include({ version: 1, wantedVersion: 1, behind: false, lastError: null, stale: false });
    await poll({
      'x-replica-version': '',
      'x-replica-wanted-version': '1',
      'x-replica-error': '1 502 SNAPSHOT_ID_MISMATCH',
    });
    [r] = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json.replicas as Record<
      string,
      unknown
    >[];
    expect(r).to.deep.include({
      version: null,
      wantedVersion: 1,
      behind: true,
      lastError: 'version 1: 502 SNAPSHOT_ID_MISMATCH (reported by its poll)',
    });
  });
});
