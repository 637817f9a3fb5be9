import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import {
  capturingLogger,
  cleanup,
  csvOf,
  http,
  onCleanup,
  putCsv,
  REPLICA_TOKEN,
  rawExchange,
  startLeader,
  startReplica,
  waitFor,
  waitForVersion,
} from '../../helpers.js';
import { MANIFEST, memorySnapshot } from './fakes.js';

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
    expect(etag).to.match(/^"[0-9a-f]{16}"$/);

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

  it('keeps the ETag of every row whose answer did not change across an ingest: 304 for those, 200 for the changed one', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => [`row-${i}`, `${i}.10`, '2018-01-01 00:00:00']);
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(rows));
    const replica = await startReplica(leader.url, { READ_MAX_AGE_S: '60' });
    await waitFor(() => replica.index.current, 5000, 'the first version');
    const before = new Map<string, string>();
    for (const [id] of rows) {
      const res = await http(`${replica.url}/promotions/${id}`);
      expect(res.headers.get('cache-control')).to.equal('max-age=60');
      before.set(id, res.headers.get('etag') as string);
    }
    expect(new Set(before.values()).size).to.equal(rows.length);
    const batchIds = ['row-1', 'row-2', 'row-3'];
    const batchUrl = `${replica.url}/promotions?${batchIds.map((id) => `id=${id}`).join('&')}`;
    const batchBefore = (await http(batchUrl)).headers.get('etag') as string;
    const changedBatchUrl = `${replica.url}/promotions?id=row-1&id=row-7`;
    const changedBatchBefore = (await http(changedBatchUrl)).headers.get('etag') as string;

    // Version 2: one price changed (7.10 becomes 7.11), every other row as it was.
    const next = rows.map((r) => (r[0] === 'row-7' ? ['row-7', '7.11', r[2]] : r));
    await putCsv(leader.url, csvOf(next));
    await waitForVersion(replica, 2);
    for (const [id] of rows) {
      for (const method of ['GET', 'HEAD']) {
        const res = await http(`${replica.url}/promotions/${id}`, {
          method,
          headers: { 'if-none-match': before.get(id) as string },
        });
        expect(res.headers.get('x-snapshot-version'), id).to.equal('2');
        if (id === 'row-7') {
          expect(res.status, `${method} ${id}`).to.equal(200);
          expect(res.headers.get('etag')).to.not.equal(before.get(id));
          if (method === 'GET') expect(res.json.price).to.equal(7.11);
        } else {
          expect(res.status, `${method} ${id}`).to.equal(304);
          expect(res.text).to.equal('');
          expect(res.headers.get('etag')).to.equal(before.get(id));
          expect(res.headers.get('cache-control')).to.equal('max-age=60');
        }
      }
    }
    // A batch's tag is its body's: unchanged rows, same tag (304); a changed row, a new tag.
    expect((await http(batchUrl, { headers: { 'if-none-match': batchBefore } })).status).to.equal(304);
    const changed = await http(changedBatchUrl, { headers: { 'if-none-match': changedBatchBefore } });
    expect(changed.status).to.equal(200);
    expect(changed.headers.get('etag')).to.not.equal(changedBatchBefore);
  });

  it('takes a notice only with the replica token', async () => {
    const replica = await startReplica('http://127.0.0.1:9');
    const res = await http(`${replica.url}/internal/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer nope' },
      body: '{}',
    });
    expect(res.status).to.equal(401);
    expect(res.json.message).to.match(/^token not accepted/);
    expect(res.headers.get('www-authenticate')).to.equal('Bearer error="invalid_token"');
    const none = await http(`${replica.url}/internal/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(none.status).to.equal(401);
    expect(none.json.message).to.equal('this route needs an Authorization: Bearer token');
    expect(none.headers.get('www-authenticate')).to.equal('Bearer');
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
    await waitForVersion(replica, 2);
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

  it('refuses a bad notice body with 400, 413 or 415 and a named code, never a 500 the leader would retry', async () => {
    const replica = await startReplica('http://127.0.0.1:9');
    const notice = (body: BodyInit, headers: Record<string, string> = {}) =>
      http(`${replica.url}/internal/snapshots`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${REPLICA_TOKEN}`,
          'content-type': 'application/json',
          ...headers,
        },
        body,
      });
    const cases: [string, string, Record<string, string>, number, string][] = [
      ['not JSON', '{bad', {}, 400, 'REQUEST_BAD_JSON'],
      ['a __proto__ key', '{"__proto__": {"polluted": true}}', {}, 400, 'REQUEST_BAD_JSON'],
      ['not an object', '"x"', {}, 400, 'REQUEST_BAD_JSON'],
      ['past 16 KiB', `{"pad":"${'x'.repeat(20_000)}"}`, {}, 413, 'REQUEST_TOO_LARGE'],
      [
        'deep nesting past 16 KiB',
        `${'{"a":'.repeat(4000)}1${'}'.repeat(4000)}`,
        {},
        413,
        'REQUEST_TOO_LARGE',
      ],
      ['deep nesting within 16 KiB', `${'['.repeat(7000)}${']'.repeat(7000)}`, {}, 400, 'REQUEST_BAD'],
      ['a corrupt gzip body', '{"not":"gzip"}', { 'content-encoding': 'gzip' }, 400, 'REQUEST_BAD_ENCODING'],
      ['an unknown encoding', '{}', { 'content-encoding': 'x-unknown' }, 415, 'REQUEST_UNSUPPORTED_ENCODING'],
    ];
    for (const [what, body, headers, status, code] of cases) {
      const res = await notice(body, headers);
      expect({ status: res.status, code: res.json.error }, what).to.deep.equal({ status, code });
      expect(res.json.message, what)
        .to.be.a('string')
        .and.not.match(/internal error/);
    }
    // A well-formed gzip notice body is read (and found to be no manifest).
    const zipped = await notice(new Uint8Array(gzipSync('{"version":"x"}')), { 'content-encoding': 'gzip' });
    expect(zipped.json.error).to.equal('REQUEST_BAD');
    // 100 MB announced with the token: refused on its head, and the connection closed rather than read through.
    const { text } = await rawExchange(
      replica.server.port,
      `POST /internal/snapshots HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${REPLICA_TOKEN}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n{"version":`,
    );
    expect(text)
      .to.match(/^HTTP\/1.1 413 /)
      .and.match(/\r\nConnection: close\r\n/i);
    expect(text).to.include('"error":"REQUEST_TOO_LARGE"');
  });

  it('logs what goes wrong outside an answer through its logger, never as stack traces on stderr', async () => {
    const { logger, lines } = capturingLogger();
    const replica = await startReplica('http://127.0.0.1:9', {}, logger);
    const printed: unknown[][] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => {
      printed.push(args);
    };
    try {
      // A malformed request pipelined behind one that Koa is answering: node:http's parser fails and destroys the
      // socket under Koa's answer, which Koa reports as an app error.
      const { text } = await rawExchange(
        replica.server.port,
        'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x01bad\r\n\r\n',
      );
      expect(text).to.match(/^HTTP\/1.1 400 /);
      await waitFor(() => lines.find((l) => l.includes('client went away')), 5000, 'the log line');
    } finally {
      console.error = consoleError;
    }
    expect(printed).to.deep.equal([]);
    const line = JSON.parse(lines.find((l) => l.includes('client went away')) as string);
    expect(line.level).to.equal(30);
    expect(line.code).to.match(/^HPE_/);
  });

  it('logs /readyz "not yet" at debug, and a change of readiness once at info', async () => {
    const { logger, lines } = capturingLogger();
    const replica = await startReplica('http://127.0.0.1:9', {}, logger);
    for (let i = 0; i < 3; i++) expect((await http(`${replica.url}/readyz`)).status).to.equal(503);
    replica.index.swap(memorySnapshot(['a']), MANIFEST);
    for (let i = 0; i < 2; i++) expect((await http(`${replica.url}/readyz`)).status).to.equal(200);
    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string; ready?: boolean });
    const probes = logged.filter((l) => l.msg === 'request');
    expect(probes.map((l) => l.level)).to.deep.equal([20, 20, 20, 20, 20]);
    const changes = logged.filter((l) => l.msg === 'readiness changed');
    expect(changes.map((l) => [l.level, l.ready])).to.deep.equal([
      [30, false],
      [30, true],
    ]);
    // No error-level line for a probe (the leader being unreachable is a warning of the syncer, not the probe's).
    expect(logged.filter((l) => l.level >= 50)).to.deep.equal([]);
  });
});
