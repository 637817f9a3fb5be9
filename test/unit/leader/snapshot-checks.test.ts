import { expect } from 'chai';
import { SnapshotChecks } from '../../../leader/snapshot-checks.js';
import {
  activate,
  capturingLogger,
  cleanup,
  csvOf,
  fakeServer,
  http,
  ingest,
  LEADER_AUTH,
  quietLogger,
  REPLICA_TOKEN,
  startLeader,
  waitFor,
} from '../../helpers.js';
import { rot } from '../common/snapshot/rot.js';

function rows(tag: string, n = 300): string[][] {
  return Array.from({ length: n }, (_, i) => [`${tag}-${i}`, `${i}.5`, '2018-08-04 05:32:31 +0200 CEST']);
}

type Listed = {
  version: number;
  current: boolean;
  verification: { state: string; error: { code: string } | null };
};

async function listed(url: string): Promise<Listed[]> {
  return (await http(`${url}/snapshots`, { headers: LEADER_AUTH })).json.versions as Listed[];
}

describe('leader/snapshot-checks: the leader verifies its own files', () => {
  afterEach(cleanup);

  it('refuses to activate a version whose file rotted (409 SNAPSHOT_CORRUPT), keeps the current one, and stops offering the file', async () => {
    const leader = await startLeader({ SCRUB_BYTES_PER_SECOND: '0' });
    await ingest(leader.url, csvOf(rows('a')));
    await ingest(leader.url, csvOf(rows('b')));
    await rot(leader.store.filePath(1));
    const res = await activate(leader.url, 1);
    expect(res.status, res.text).to.equal(409);
    expect(res.json.error).to.equal('SNAPSHOT_CORRUPT');
    expect(res.json.message).to.match(/version 1's file .* corrupt \(SNAPSHOT_CHECKSUM_MISMATCH: /);
    expect((await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.current).to.equal(2);
    const [v2, v1] = await listed(leader.url);
    expect(v2.verification.state).to.equal('ok');
    expect(v1.verification.state).to.equal('corrupt');
    expect(v1.verification.error?.code).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
    const file = await http(`${leader.url}/snapshots/1/file`, {
      headers: { authorization: `Bearer ${REPLICA_TOKEN}` },
    });
    expect(file.status).to.equal(409);
    expect(file.json.error).to.equal('SNAPSHOT_CORRUPT');
    // A version that verifies still activates.
    await rot(leader.store.filePath(1)); // flipped back: the file is whole again
    expect((await activate(leader.url, 1)).status).to.equal(200);
  });

  it('at start, replaces a current version whose file rotted with the newest kept version that verifies, and says so', async () => {
    const first = await startLeader({ SCRUB_BYTES_PER_SECOND: '0' });
    for (const tag of ['a', 'b', 'c']) await ingest(first.url, csvOf(rows(tag)));
    await first.close();
    await first.server.close(0);
    await rot(first.store.filePath(3));
    const { logger, lines } = capturingLogger();
    const leader = await startLeader(
      { DATA_DIR: first.config.dataDir, SCRUB_BYTES_PER_SECOND: '0' },
      {},
      {},
      logger,
    );
    const ready = await http(`${leader.url}/readyz`);
    expect(ready.json).to.deep.equal({ status: 'ready', version: 2, verification: 'ok' });
    const versions = await listed(leader.url);
    expect(versions.map((v) => [v.version, v.current, v.verification.state])).to.deep.equal([
      [3, false, 'corrupt'],
      [2, true, 'ok'],
      [1, false, 'unchecked'],
    ]);
    const said = lines.map(
      (l) => JSON.parse(l) as { level: number; msg: string; corrupt?: number; current?: number },
    );
    expect(
      said.some((l) => l.level >= 50 && /fell back/.test(l.msg) && l.corrupt === 3 && l.current === 2),
    ).to.equal(true);
  });

  it('finds a kept version that rotted in the background scrub, and shows it in /snapshots and /metrics', async () => {
    const leader = await startLeader({ SCRUB_BYTES_PER_SECOND: '1GiB', SCRUB_INTERVAL_MS: '20' });
    await ingest(leader.url, csvOf(rows('a')));
    await ingest(leader.url, csvOf(rows('b')));
    await rot(leader.store.filePath(1));
    await waitFor(
      async () => (await listed(leader.url))[1].verification.state === 'corrupt' || undefined,
      10_000,
      'the scrub to find version 1 corrupt',
    );
    const text = (await http(`${leader.url}/metrics`)).text;
    expect(text).to.match(/^promotions_snapshot_corrupt_versions\{role="leader"\} 1$/m);
    expect(text).to.match(/^promotions_current_version_verified\{role="leader"\} 1$/m);
    expect(text).to.match(
      /^promotions_snapshot_verifications_total\{result="corrupt",role="leader"\} [1-9]/m,
    );
    expect(text).to.match(/^promotions_snapshot_scrubbed_bytes_total\{role="leader"\} [1-9]/m);
    expect((await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.current).to.equal(2);
  });

  it('falls back when the scrub finds the current version rotted, and publishes the version it falls back to', async () => {
    const notices: number[] = [];
    const replica = await fakeServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c;
      });
      req.on('end', () => {
        const { version } = JSON.parse(body) as { version: number };
        notices.push(version);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ version }));
      });
    });
    const leader = await startLeader({
      SCRUB_BYTES_PER_SECOND: '1GiB',
      SCRUB_INTERVAL_MS: '20',
      REPLICAS: replica,
    });
    await ingest(leader.url, csvOf(rows('a')));
    await ingest(leader.url, csvOf(rows('b')));
    await waitFor(() => (notices.at(-1) === 2 ? true : undefined), 10_000, 'the notice of version 2');
    await rot(leader.store.filePath(2));
    await waitFor(
      async () =>
        (await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.current === 1 || undefined,
      10_000,
      'the leader to fall back to version 1',
    );
    expect((await listed(leader.url))[0].verification.state).to.equal('corrupt');
    await waitFor(() => (notices.at(-1) === 1 ? true : undefined), 10_000, 'the notice of version 1');
  });

  it('keeps the scrub to SCRUB_BYTES_PER_SECOND (a fake clock that its waits move)', async () => {
    const leader = await startLeader({ SCRUB_BYTES_PER_SECOND: '0' });
    await ingest(leader.url, csvOf(rows('a', 40_000)));
    const bodyBytes = leader.store.get(1)?.bytes as number;
    expect(bodyBytes).to.be.above(1024 * 1024);
    let clock = 0;
    const waits: number[] = [];
    const rate = 256 * 1024;
    const checks = new SnapshotChecks(leader.store, quietLogger(), {
      scrubBytesPerSecond: rate,
      scrubIntervalMs: 1_000_000,
      now: () => clock,
      sleep: async (ms) => {
        waits.push(ms);
        clock += ms;
        // The pause after the first pass: stop there.
        if (ms === 1_000_000) void checks.close();
      },
    });
    checks.start();
    await waitFor(() => waits.includes(1_000_000) || undefined, 10_000, 'the end of the first pass');
    await checks.close();
    expect(checks.of(1).state).to.equal('ok');
    // Body bytes at 256 KiB/s: the waits add up to the body's size over the rate (header and directory unpaced).
    const paced = waits.filter((w) => w !== 1_000_000).reduce((a, b) => a + b, 0);
    expect(paced).to.be.within(((bodyBytes - 64 * 1024) / rate) * 1000, (bodyBytes / rate) * 1000);
    expect(checks.scrubbedBytes).to.be.within(bodyBytes - 64 * 1024, bodyBytes);
  });
});
