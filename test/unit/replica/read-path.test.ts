import { expect } from 'chai';
import { cleanup, http, waitFor } from '../../helpers.js';
import { heldSnapshot, readServer } from './fakes.js';

for (const transport of ['fast', 'node'] as const) {
  describe(`replica/read-path: overload protection (${transport} transport)`, () => {
    afterEach(cleanup);

    it('answers past the in-flight and queue limits with 503 at once, and serves the admitted reads', async () => {
      const held = heldSnapshot();
      const { server, metrics } = await readServer(held.snapshot, { transport, maxInFlight: 2, maxQueue: 2 });

      const admitted = [1, 2, 3, 4].map((i) => http(`${server.url}/promotions/id-${i}`));
      // Wait until two reads reached the snapshot and the other two are queued (the gauge counts both).
      await waitFor(
        async () => ((await metrics.inFlight.get()).values[0]?.value === 4 ? true : undefined),
        5000,
        'four reads admitted',
      );
      expect(held.started()).to.equal(2);
      const shed = await Promise.all([5, 6, 7].map((i) => http(`${server.url}/promotions/id-${i}`)));
      for (const res of shed) {
        expect(res.status).to.equal(503);
        expect(res.json.error).to.equal('REPLICA_OVERLOADED');
        expect(res.headers.get('retry-after')).to.equal('1');
      }
      expect(held.started()).to.equal(2);
      held.release();
      const answers = await Promise.all(admitted);
      expect(answers.map((a) => a.status)).to.deep.equal([200, 200, 200, 200]);
      expect(answers.map((a) => a.json.id)).to.deep.equal([1, 2, 3, 4].map((i) => `id-${i}`));

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

    it('weighs a batch by its ids: it queues while they do not fit, and is shed past the queue', async () => {
      const held = heldSnapshot();
      const { server, metrics } = await readServer(held.snapshot, { transport, maxInFlight: 3, maxQueue: 2 });
      const batch = (ids: string[]) =>
        http(`${server.url}/promotions:batchGet`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ids }),
        });
      // Two ids in flight; a batch of two more does not fit under 3 and queues; a single read queues behind it
      // (arrival order), and the next batch finds the queue full.
      const first = batch(['a', 'b']);
      await waitFor(() => (held.started() === 2 ? true : undefined), 5000, 'the first batch');
      const second = batch(['c', 'd']);
      await waitFor(
        async () => ((await metrics.inFlight.get()).values[0]?.value === 2 ? true : undefined),
        5000,
        'the second batch queued',
      );
      const single = http(`${server.url}/promotions/e`);
      await waitFor(
        async () => ((await metrics.inFlight.get()).values[0]?.value === 3 ? true : undefined),
        5000,
        'the single read queued',
      );
      const shed = await batch(['f']);
      expect(shed.status).to.equal(503);
      expect(shed.json.error).to.equal('REPLICA_OVERLOADED');
      expect(shed.headers.get('retry-after')).to.equal('1');
      expect(held.started()).to.equal(2);
      held.release();
      const idsOf = (a: { json: Record<string, unknown> }) =>
        (a.json.promotions as { id: string }[]).map((p) => p.id);
      expect(idsOf(await first)).to.deep.equal(['a', 'b']);
      expect(idsOf(await second)).to.deep.equal(['c', 'd']);
      expect((await single).json.id).to.equal('e');
      const text = await metrics.registry.metrics();
      expect(text).to.match(/^promotions_http_requests_shed_total\{role="replica"\} 1$/m);
      expect(text).to.match(
        /^promotions_http_requests_total\{route="\/promotions:batchGet",method="POST",status="503",role="replica"\} 1$/m,
      );
    });

    it('lets reads in flight finish when the server closes (what SIGTERM does)', async () => {
      const held = heldSnapshot();
      const { server } = await readServer(held.snapshot, { transport });
      const reads = [1, 2, 3].map((i) => http(`${server.url}/promotions/id-${i}`));
      await waitFor(() => (held.started() === 3 ? true : undefined), 5000, 'the three lookups');
      const order: string[] = [];
      const answered = reads.map((r) =>
        r.then((res) => {
          order.push('read');
          return res;
        }),
      );
      const closed = server.close(10_000).then(() => order.push('closed'));
      // The close has begun (the listener is shut) and kept the connections of the reads it waits for, at once
      // (close drops idle connections synchronously), not after some wait.
      expect(server.server.listening).to.equal(false);
      const open = await new Promise<number>((resolve, reject) =>
        server.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
      );
      expect(open).to.be.greaterThan(0);
      expect(order).to.deep.equal([]);
      held.release();
      expect((await Promise.all(answered)).map((r) => r.status)).to.deep.equal([200, 200, 200]);
      await closed;
      expect(order).to.deep.equal(['read', 'read', 'read', 'closed']);
    });

    it('answers 503 with Retry-After before the first version is loaded', async () => {
      const { server } = await readServer(undefined, { transport });
      const res = await http(`${server.url}/promotions/a`);
      expect(res.status).to.equal(503);
      expect(res.json.error).to.equal('REPLICA_NOT_READY');
      expect(res.headers.get('retry-after')).to.equal('1');
    });
  });
}
