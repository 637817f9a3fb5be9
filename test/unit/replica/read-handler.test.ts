import { expect } from 'chai';
import { listen } from '../../../common/http.js';
import { createHttpMetrics } from '../../../common/metrics.js';
import type { SnapshotManifest } from '../../../common/protocol.js';
import type { LoadedSnapshot } from '../../../common/snapshot/reader.js';
import { LiveIndex } from '../../../replica/live-index.js';
import { createReadHandler } from '../../../replica/read-handler.js';
import { cleanup, http, onCleanup, quietLogger } from '../../helpers.js';

const MANIFEST: SnapshotManifest = {
  version: 7,
  snapshotId: 'ab'.repeat(16),
  checksum: 'cd'.repeat(32),
  rows: 1,
  duplicates: 0,
  badRows: 0,
  bytes: 1,
  sourceSha256: 'ef'.repeat(32),
  createdAt: new Date(0).toISOString(),
};

/** A disk-mode-like snapshot whose lookups wait until the test releases them. */
function heldSnapshot(): { snapshot: LoadedSnapshot; release: () => void; started: () => number } {
  const waiting: (() => void)[] = [];
  let started = 0;
  let released = false;
  return {
    snapshot: {
      header: {} as LoadedSnapshot['header'],
      mode: 'disk',
      residentBytes: 0,
      lookup: (id) => {
        started++;
        const body = `{"id":"${id}"}`;
        return released ? Promise.resolve(body) : new Promise((r) => waiting.push(() => r(body)));
      },
      close: async () => undefined,
    },
    release: () => {
      released = true;
      for (const w of waiting.splice(0)) w();
    },
    started: () => started,
  };
}

describe('replica/read-handler: overload protection', () => {
  afterEach(cleanup);

  it('answers past the in-flight and queue limits with 503 at once, and serves the admitted reads', async () => {
    const index = new LiveIndex();
    const held = heldSnapshot();
    index.swap(held.snapshot, MANIFEST);
    const metrics = createHttpMetrics('replica');
    const handler = createReadHandler(index, (_req, res) => res.writeHead(404).end(), {
      maxInFlight: 2,
      maxQueue: 2,
      metrics,
      logger: quietLogger(),
    });
    const server = await listen(handler, '127.0.0.1', 0);
    onCleanup(() => server.close(100));

    const admitted = [1, 2, 3, 4].map((i) => http(`${server.url}/promotions/id-${i}`));
    // Wait until the two in-flight reads reached the snapshot; the other two are queued.
    while (held.started() < 2) await new Promise((r) => setTimeout(r, 10));
    const t0 = performance.now();
    const shed = await Promise.all([5, 6, 7].map((i) => http(`${server.url}/promotions/id-${i}`)));
    const shedMs = performance.now() - t0;
    for (const res of shed) {
      expect(res.status).to.equal(503);
      expect(res.json.error).to.equal('REPLICA_OVERLOADED');
      expect(res.headers.get('retry-after')).to.equal('1');
    }
    expect(shedMs).to.be.lessThan(5000);
    expect(held.started()).to.equal(2);
    held.release();
    const answers = await Promise.all(admitted);
    expect(answers.map((a) => a.status)).to.deep.equal([200, 200, 200, 200]);
    expect(answers.map((a) => a.text)).to.deep.equal([1, 2, 3, 4].map((i) => `{"id":"id-${i}"}`));

    const text = await metrics.registry.metrics();
    expect(text).to.match(/^promotions_http_requests_shed_total\{role="replica"\} 3$/m);
    expect(text).to.match(
      /^promotions_http_requests_total\{route="\/promotions\/:id",method="GET",status="200",role="replica"\} 4$/m,
    );
    expect(text).to.match(
      /^promotions_http_requests_total\{route="\/promotions\/:id",method="GET",status="503",role="replica"\} 3$/m,
    );
    expect(text).to.match(
      /^promotions_http_request_duration_seconds_count\{route="\/promotions\/:id",role="replica"\} 7$/m,
    );
  });

  it('lets reads in flight finish when the server closes (what SIGTERM does)', async () => {
    const index = new LiveIndex();
    const held = heldSnapshot();
    index.swap(held.snapshot, MANIFEST);
    const handler = createReadHandler(index, (_req, res) => res.writeHead(404).end(), {
      maxInFlight: 10,
      maxQueue: 10,
      metrics: createHttpMetrics('replica'),
      logger: quietLogger(),
    });
    const server = await listen(handler, '127.0.0.1', 0);
    const reads = [1, 2, 3].map((i) => http(`${server.url}/promotions/id-${i}`));
    while (held.started() < 3) await new Promise((r) => setTimeout(r, 10));
    const closed = server.close(10_000);
    let isClosed = false;
    void closed.then(() => {
      isClosed = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(isClosed).to.equal(false);
    held.release();
    expect((await Promise.all(reads)).map((r) => r.status)).to.deep.equal([200, 200, 200]);
    await closed;
  });
});
