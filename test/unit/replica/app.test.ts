import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import {
  cleanup,
  csvOf,
  http,
  onCleanup,
  putCsv,
  REPLICA_TOKEN,
  startLeader,
  startReplica,
  waitFor,
} from '../../helpers.js';

const ID = 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118';
const ROWS = [
  [ID, '60.683466', '2018-08-04 05:32:31 +0200 CEST'],
  ['odd id/with?chars%', '2', '2018-01-01 00:00:00'],
  ['Case', '3', '2018-01-01 00:00:00'],
];

describe('replica app', () => {
  afterEach(cleanup);

  it('is alive but not ready, and answers reads 503, until a version is loaded', async () => {
    const replica = await startReplica('http://127.0.0.1:9');
    expect((await http(`${replica.url}/healthz`)).status).to.equal(200);
    const ready = await http(`${replica.url}/readyz`);
    expect(ready.status).to.equal(503);
    expect(ready.json.error).to.equal('REPLICA_NOT_READY');
    const read = await http(`${replica.url}/promotions/${ID}`);
    expect(read.status).to.equal(503);
    expect(read.headers.get('retry-after')).to.equal('1');
  });

  it('serves exact JSON, 404, 400 and caching headers once loaded', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(ROWS));
    const replica = await startReplica(leader.url);
    await waitFor(() => replica.index.current, 5000, 'the first version');

    const ok = await http(`${replica.url}/promotions/${ID}`);
    expect(ok.status).to.equal(200);
    expect(ok.text).to.equal(`{"id":"${ID}","price":60.683466,"expiration_date":"2018-08-04 05:32:31"}`);
    expect(ok.headers.get('content-type')).to.equal('application/json');
    expect(ok.headers.get('x-snapshot-version')).to.equal('1');
    const etag = ok.headers.get('etag') as string;
    expect(etag).to.match(/^"v1-[0-9a-f]+"$/);

    const traced = await http(`${replica.url}/promotions/${ID}`, { headers: { 'x-request-id': 'trace-42' } });
    expect(traced.status).to.equal(200);
    expect(traced.headers.get('x-request-id')).to.equal('trace-42');
    expect(traced.text).to.equal(ok.text);
    const tracedMiss = await http(`${replica.url}/promotions/nope`, {
      headers: { 'x-request-id': 'trace-43' },
    });
    expect(tracedMiss.status).to.equal(404);
    expect(tracedMiss.headers.get('x-request-id')).to.equal('trace-43');

    const cached = await http(`${replica.url}/promotions/${ID}`, { headers: { 'if-none-match': etag } });
    expect(cached.status).to.equal(304);
    expect(cached.text).to.equal('');

    const odd = await http(`${replica.url}/promotions/${encodeURIComponent('odd id/with?chars%')}`);
    expect(odd.json).to.deep.equal({
      id: 'odd id/with?chars%',
      price: 2,
      expiration_date: '2018-01-01 00:00:00',
    });

    const missing = await http(`${replica.url}/promotions/case`);
    expect(missing.status).to.equal(404);
    expect(missing.json.error).to.equal('PROMOTION_NOT_FOUND');
    expect(missing.headers.get('x-snapshot-version')).to.equal('1');

    for (const bad of ['', 'a,b', 'x'.repeat(129), '%E0%A4%A', '%C3%A9']) {
      const res = await http(`${replica.url}/promotions/${bad}`);
      expect(res.status, bad).to.equal(400);
      expect(res.json.error).to.equal('PROMOTION_BAD_ID');
    }
    const ready = await http(`${replica.url}/readyz`);
    expect(ready.json).to.deep.include({ status: 'ready', version: 1, rows: 3, mode: 'memory' });
  });

  it('takes a notice only with the replica token', async () => {
    const replica = await startReplica('http://127.0.0.1:9');
    const res = await http(`${replica.url}/internal/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer nope' },
      body: '{}',
    });
    expect(res.status).to.equal(401);
    const bad = await http(`${replica.url}/internal/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${REPLICA_TOKEN}` },
      body: '{"version":"x"}',
    });
    expect(bad.status).to.equal(400);
  });

  it('takes the replica token whatever the case of the Bearer scheme (RFC 9110 §11.1)', async () => {
    const replica = await startReplica('http://127.0.0.1:9');
    for (const scheme of ['bearer', 'BEARER', 'Bearer', 'bEaReR']) {
      const res = await http(`${replica.url}/internal/snapshots`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `${scheme} ${REPLICA_TOKEN}` },
        body: '{"version":"x"}',
      });
      // Past the token check: the body is what is wrong.
      expect([res.status, res.json.error], scheme).to.deep.equal([400, 'REQUEST_BAD']);
    }
    for (const authorization of [
      `Bearer${REPLICA_TOKEN}`,
      `Basic ${REPLICA_TOKEN}`,
      `Bearer ${REPLICA_TOKEN}x`,
    ]) {
      const res = await http(`${replica.url}/internal/snapshots`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization },
        body: '{"version":"x"}',
      });
      expect(res.status, authorization).to.equal(401);
    }
  });

  it('refuses a file altered in transit, reports it, and keeps serving its version', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(ROWS));
    const replica = await startReplica(leader.url);
    await waitFor(() => replica.index.current, 5000, 'the first version');
    await putCsv(leader.url, csvOf([...ROWS, ['new', '1', '2018-01-01 00:00:00']]));
    const manifest = (await http(`${leader.url}/snapshots/current`)).json as { bytes: number };
    // A fake leader that serves version 2's bytes with one bit flipped.
    const fake = createServer(async (req, res) => {
      const real = await fetch(`${leader.url}${req.url}`, {
        headers: { authorization: `Bearer ${REPLICA_TOKEN}` },
      });
      const bytes = Buffer.from(await real.arrayBuffer());
      if (req.url?.endsWith('/file')) bytes[Math.floor(bytes.length / 2)] ^= 1;
      res.writeHead(real.status, { 'content-length': bytes.length }).end(bytes);
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    onCleanup(() => new Promise((r) => fake.close(r)));
    const fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    const victim = await startReplica(fakeUrl);
    expect(victim.index.current).to.equal(undefined);
    await waitFor(() => victim.syncer.status.lastError ?? undefined, 5000, 'the refusal');
    expect(victim.syncer.status.lastError).to.match(/checksum/);
    expect(victim.index.current).to.equal(undefined);
    expect(manifest.bytes).to.be.greaterThan(0);

    // The notice path reports the refusal to the leader and keeps the served version.
    const notice = await http(`${replica.url}/internal/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${REPLICA_TOKEN}` },
      body: JSON.stringify({
        ...(await http(`${leader.url}/snapshots/current`)).json,
        checksum: 'ff'.repeat(32),
      }),
    });
    expect(notice.status).to.equal(502);
    expect(notice.json.error).to.equal('SNAPSHOT_ID_MISMATCH');
    // The replica registered itself with its poll, so the leader's notice brings it version 2.
    await waitFor(
      () => (replica.index.current?.manifest.version === 2 ? true : undefined),
      5000,
      'version 2',
    );
    expect((await http(`${replica.url}/promotions/new`)).status).to.equal(200);
  });

  it('turns /readyz to 503 while draining, and exposes its metrics', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(ROWS));
    const replica = await startReplica(leader.url);
    await waitFor(() => replica.index.current, 5000, 'the first version');
    await http(`${replica.url}/promotions/${ID}`);
    await http(`${replica.url}/promotions/absent`);
    const metrics = await http(`${replica.url}/metrics`);
    expect(metrics.headers.get('content-type')).to.match(/^text\/plain/);
    expect(metrics.text).to.match(/^promotions_snapshot_version\{role="replica"\} 1$/m);
    expect(metrics.text).to.match(/^promotions_snapshot_rows\{role="replica"\} 3$/m);
    expect(metrics.text).to.match(/^promotions_snapshot_serve_mode\{mode="memory",role="replica"\} 1$/m);
    expect(metrics.text).to.match(/status="404",role="replica"\} 1$/m);
    expect(metrics.text).to.match(/^process_resident_memory_bytes/m);
    expect(metrics.text).to.match(/^promotions_snapshot_load_duration_seconds_count\{role="replica"\} 1$/m);
    expect(metrics.text).to.match(/^promotions_snapshot_pulled_bytes_total\{role="replica"\} [1-9]\d*$/m);
    expect(metrics.text).to.match(/^nodejs_eventloop_lag_p99_seconds/m);
    replica.lifecycle.draining = true;
    const ready = await http(`${replica.url}/readyz`);
    expect(ready.status).to.equal(503);
    expect(ready.json.message).to.equal('shutting down');
  });
});
