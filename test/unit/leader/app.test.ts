import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadSnapshot } from '../../../common/snapshot/reader.js';
import { SnapshotStore } from '../../../leader/snapshot-store.js';
import {
  activate,
  capturingLogger,
  cleanup,
  csvOf,
  http,
  ingest,
  LEADER_AUTH,
  LEADER_TOKEN,
  putCsv,
  quietLogger,
  REPLICA_TOKEN,
  startLeader,
  type TestLeader,
  waitFor,
} from '../../helpers.js';

const A = [
  ['d018ef0b-dbd9-48f1-ac1a-eb4d90e57118', '60.683466', '2018-08-04 05:32:31 +0200 CEST'],
  ['a-plain-id', '1.5', '2018-01-04 06:01:20 +0100 CET'],
  ['d018ef0b-dbd9-48f1-ac1a-eb4d90e57118', '61.000000', '2018-08-05 05:32:31 +0200 CEST'],
];

async function currentVersion(url: string): Promise<unknown> {
  return (await http(`${url}/snapshots`, { headers: LEADER_AUTH })).json.current;
}

/**
 * Starts a streamed PUT of one row of A and keeps its body open, so that the leader's ingest runs until `finish`
 * ends the body; `finish` resolves with the PUT's answer.
 */
async function ingestHeldOpen(leader: TestLeader): Promise<{ finish(): Promise<Response> }> {
  let push: ((s: string | null) => void) | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      push = (s) => (s === null ? controller.close() : controller.enqueue(new TextEncoder().encode(s)));
    },
  });
  const answer = fetch(`${leader.url}/promotions`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${LEADER_TOKEN}` },
    body,
    duplex: 'half',
  } as RequestInit);
  push?.(`${A[0].join(',')}\n`);
  await waitFor(async () => (leader.ingestor.busy ? true : undefined), 5000, 'the first ingest to start');
  return {
    finish: () => {
      push?.(null);
      return answer;
    },
  };
}

describe('leader app', () => {
  afterEach(cleanup);

  it('ingests a streamed CSV into version 1, current, with a report', async () => {
    const leader = await startLeader();
    const res = await putCsv(leader.url, csvOf(A));
    expect(res.status).to.equal(201);
    expect(res.json).to.deep.include({ version: 1, rows: 2, duplicates: 1, badRowCount: 0 });
    const list = await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH });
    expect(list.json.current).to.equal(1);
    const versions = list.json.versions as { version: number; current: boolean; rows: number }[];
    expect(versions.map((v) => [v.version, v.current, v.rows])).to.deep.equal([[1, true, 2]]);
    const snap = await loadSnapshot(leader.store.filePath(1));
    expect(snap.lookup(A[0][0])).to.equal(
      '{"id":"d018ef0b-dbd9-48f1-ac1a-eb4d90e57118","price":61.000000,"expiration_date":"2018-08-05 05:32:31"}',
    );
  });

  it('accepts a header line, CRLF line ends, blank lines and no final newline', async () => {
    const leader = await startLeader();
    const body = `id,price,expiration_date\r\n${A[0].join(',')}\r\n\r\n${A[1].join(',')}`;
    const res = await putCsv(leader.url, body);
    expect(res.status, res.text).to.equal(201);
    expect(res.json.rows).to.equal(2);
  });

  it('rejects a file with a bad row (422 naming the line) and keeps the current version', async () => {
    const leader = await startLeader();
    await ingest(leader.url, csvOf(A));
    const bad = csvOf([A[0], A[1], ['x', 'abc', '2018-08-04 05:32:31'], A[1]]);
    const res = await putCsv(leader.url, bad);
    expect(res.status).to.equal(422);
    expect(res.json.error).to.equal('INGEST_BAD_ROWS');
    expect(res.json.message).to.match(/^line 3: price "abc" is not a finite decimal number/);
    expect(res.json.badRows).to.deep.equal([
      { line: 3, column: 'price', value: 'abc', reason: 'price "abc" is not a finite decimal number' },
    ]);
    expect(await currentVersion(leader.url)).to.equal(1);
    expect(await readdir(leader.store.snapshotsDir)).to.deep.equal(['v000001.json', 'v000001.snap']);
    expect(await readdir(leader.store.tmpDir)).to.deep.equal([]);
  });

  it('counts every bad row and lists the first 100', async () => {
    const leader = await startLeader();
    const rows = Array.from({ length: 150 }, (_, i) => [`id${i}`, 'x', '2018-08-04 05:32:31']);
    const res = await putCsv(leader.url, csvOf(rows));
    expect(res.status).to.equal(422);
    expect(res.json.badRowCount).to.equal(150);
    expect((res.json.badRows as unknown[]).length).to.equal(100);
    expect(res.json.message).to.match(/^line 1: .*\(and 149 more bad rows\)$/);
  });

  it('reports a CSV syntax error with its line', async () => {
    const leader = await startLeader();
    const res = await putCsv(leader.url, `${A[0].join(',')}\nab"c,1,2018-08-04 05:32:31\n`);
    expect(res.status).to.equal(422);
    expect((res.json.badRows as { line: number; reason: string }[])[0]).to.include({ line: 2 });
    expect(res.json.message).to.match(/^line 2: CSV syntax: /);
  });

  it('skips and reports bad rows within MAX_BAD_ROWS', async () => {
    const leader = await startLeader({ MAX_BAD_ROWS: '1' });
    const res = await putCsv(leader.url, csvOf([A[0], ['', '1', '2018-08-04 05:32:31'], A[1]]));
    expect(res.status).to.equal(201);
    expect(res.json).to.deep.include({ rows: 2, badRowCount: 1 });
    expect((res.json.badRows as { line: number }[])[0].line).to.equal(2);
  });

  it('refuses an empty file', async () => {
    const leader = await startLeader();
    for (const body of ['', 'id,price,expiration_date\n', '\n\n']) {
      const res = await putCsv(leader.url, body);
      expect(res.status).to.equal(422);
      expect(res.json.error).to.equal('INGEST_EMPTY');
    }
  });

  it('refuses a file under half the current rows unless forced', async () => {
    const leader = await startLeader();
    const many = Array.from({ length: 10 }, (_, i) => [`id${i}`, '1', '2018-08-04 05:32:31']);
    await ingest(leader.url, csvOf(many));
    const small = await putCsv(leader.url, csvOf(many.slice(0, 4)));
    expect(small.status).to.equal(422);
    expect(small.json.error).to.equal('INGEST_SHRINK');
    expect(small.json.message).to.match(/4 rows, under 50% of the current version's 10/);
    expect(await currentVersion(leader.url)).to.equal(1);
    const forced = await putCsv(leader.url, csvOf(many.slice(0, 4)), '?force=true');
    expect(forced.status).to.equal(201);
    expect(await currentVersion(leader.url)).to.equal(2);
  });

  it('refuses a PUT over MAX_UPLOAD_BYTES with 413, declared or streamed, and keeps the current version', async () => {
    const leader = await startLeader({ MAX_UPLOAD_BYTES: '1KiB' });
    await ingest(leader.url, csvOf(A));
    const big = csvOf(Array.from({ length: 50 }, (_, i) => [`id-${i}`, '1.5', '2018-01-04 06:01:20']));
    const declared = await putCsv(leader.url, big);
    expect([declared.status, declared.json.error]).to.deep.equal([413, 'REQUEST_TOO_LARGE']);
    // Without a length (chunked), the limit is enforced on the bytes as they arrive.
    const streamed = await http(`${leader.url}/promotions`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${LEADER_TOKEN}` },
      body: new Blob([big]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect([streamed.status, streamed.json.error]).to.deep.equal([413, 'REQUEST_TOO_LARGE']);
    expect(streamed.json.message).to.include('MAX_UPLOAD_BYTES (1024 bytes)');
    expect(leader.store.list().map((m) => m.version)).to.deep.equal([1]);
  });

  it('answers 409 to a second ingest, or an activation, while one runs', async () => {
    const leader = await startLeader();
    const first = await ingestHeldOpen(leader);
    const second = await putCsv(leader.url, csvOf(A));
    expect(second.status).to.equal(409);
    expect(second.json.error).to.equal('INGEST_BUSY');
    // An activation would race the running ingest's commit of the current version: refused as well.
    const activation = await activate(leader.url, 1);
    expect([activation.status, activation.json.error]).to.deep.equal([409, 'INGEST_BUSY']);
    expect((await first.finish()).status).to.equal(201);
  });

  it('refuses every write route without the leader token, compared exactly, and never logs the token', async () => {
    const { logger, lines } = capturingLogger();
    const leader = await startLeader({}, {}, {}, logger);
    const tus = { 'tus-resumable': '1.0.0' };
    const upload = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...tus, authorization: `Bearer ${LEADER_TOKEN}`, 'upload-length': '10' },
    });
    const uploadUrl = `${leader.url}${upload.headers.get('location')}`;
    const form = () => {
      const f = new FormData();
      f.append('file', new Blob([csvOf(A)]), 'a.csv');
      return f;
    };
    const writes: [string, string, RequestInit][] = [
      ['PUT', `${leader.url}/promotions`, { body: csvOf(A) }],
      ['POST', `${leader.url}/promotions`, { body: form() }],
      ['POST', `${leader.url}/snapshots/1/activate`, {}],
      ['POST', `${leader.url}/uploads`, { headers: { ...tus, 'upload-length': '10' } }],
      ['HEAD', uploadUrl, { headers: tus }],
      ['PATCH', uploadUrl, { headers: { ...tus, 'upload-offset': '0' }, body: 'a' }],
      ['DELETE', uploadUrl, { headers: tus }],
    ];
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${REPLICA_TOKEN}`, LEADER_TOKEN]) {
      for (const [method, url, init] of writes) {
        const headers = {
          ...(init.headers as Record<string, string>),
          ...(authorization ? { authorization } : {}),
        };
        const res = await http(url, {
          ...init,
          method,
          headers,
          body: method === 'POST' && init.body ? form() : init.body,
        });
        expect(res.status, `${method} ${url} with ${authorization}`).to.equal(401);
        if (method !== 'HEAD') expect(res.json.error).to.equal('AUTH_REQUIRED');
      }
    }
    // Nothing was written: no version, the upload untouched.
    expect(leader.store.current()).to.equal(undefined);
    const head = await http(uploadUrl, {
      method: 'HEAD',
      headers: { ...tus, authorization: `Bearer ${LEADER_TOKEN}` },
    });
    expect(head.headers.get('upload-offset')).to.equal('0');
    expect(lines.length).to.be.greaterThan(20);
    expect(lines.join('')).not.to.include(LEADER_TOKEN).and.not.to.include('Bearer wrong');
  });

  it('lets a file on disk wait for a running ingest instead of refusing it', async () => {
    const leader = await startLeader();
    const first = await ingestHeldOpen(leader);
    const form = new FormData();
    form.append('file', new Blob([csvOf(A)]), 'a.csv');
    const second = http(`${leader.url}/promotions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${LEADER_TOKEN}` },
      body: form,
    });
    // The form's file is on disk and waits its turn behind the running ingest.
    await waitFor(
      async () => (leader.ingestor.waitingFiles === 1 ? true : undefined),
      5000,
      'the form to wait',
    );
    expect((await first.finish()).status).to.equal(201);
    const queued = await second;
    expect(queued.status, queued.text).to.equal(201);
    expect(queued.json).to.include({ version: 2, rows: 2 });
  });

  it('serves a version file to replicas with Range support, and only with a token', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(A));
    const url = `${leader.url}/snapshots/1/file`;
    expect((await http(url)).status).to.equal(401);
    const auth = { authorization: `Bearer ${REPLICA_TOKEN}` };
    const whole = Buffer.from(await (await fetch(url, { headers: auth })).arrayBuffer());
    const m = (await http(`${leader.url}/snapshots/1`, { headers: LEADER_AUTH })).json as { bytes: number };
    expect(whole.length).to.equal(m.bytes);
    const part = await fetch(url, { headers: { ...auth, range: 'bytes=100-' } });
    expect(part.status).to.equal(206);
    expect(part.headers.get('content-range')).to.equal(`bytes 100-${m.bytes - 1}/${m.bytes}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(100))).to.equal(true);
    const beyond = await fetch(url, { headers: { ...auth, range: `bytes=${m.bytes}-` } });
    expect(beyond.status).to.equal(416);
    await beyond.arrayBuffer();
  });

  it('rolls back to a kept version and forward again', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(A));
    await putCsv(leader.url, csvOf([...A, ['third', '3', '2018-08-04 05:32:31']]));
    const back = await activate(leader.url, 1);
    expect(back.status).to.equal(200);
    expect(await currentVersion(leader.url)).to.equal(1);
    expect((await activate(leader.url, 2)).status).to.equal(200);
    expect(await currentVersion(leader.url)).to.equal(2);
    const missing = await activate(leader.url, 9);
    expect(missing.status).to.equal(404);
    expect(missing.json.error).to.equal('SNAPSHOT_NOT_FOUND');
  });

  it('keeps the current version across a restart and removes leftovers of an interrupted build', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(A));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(leader.store.tmpDir, 'build-v2.snap'), 'partial');
    await writeFile(join(leader.store.snapshotsDir, 'v000002.snap'), 'renamed but no manifest');
    const reopened = await SnapshotStore.open(leader.config.dataDir, quietLogger());
    expect(reopened.current()?.version).to.equal(1);
    expect(await readdir(leader.store.tmpDir)).to.deep.equal([]);
    expect(await readdir(leader.store.snapshotsDir)).to.deep.equal(['v000001.json', 'v000001.snap']);
  });

  it('builds through run files when the build memory is small', async () => {
    const leader = await startLeader(
      { BUILD_MEMORY_BYTES: '65536' },
      { spillBuckets: 8, targetPartitionRows: 64 },
    );
    const rows = Array.from({ length: 5000 }, (_, i) => [
      `id-${i}`,
      `${i}.25`,
      '2018-08-04 05:32:31 +0200 CEST',
    ]);
    const res = await putCsv(leader.url, csvOf(rows));
    expect(res.status, res.text).to.equal(201);
    const snap = await loadSnapshot(leader.store.filePath(1));
    expect(snap.header.partitionBits).to.be.at.least(3);
    for (const i of [0, 1234, 4999]) {
      expect(snap.lookup(`id-${i}`)).to.equal(
        `{"id":"id-${i}","price":${i}.25,"expiration_date":"2018-08-04 05:32:31"}`,
      );
    }
  });

  it('exposes ingest metrics in the Prometheus format', async () => {
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(A));
    await putCsv(leader.url, csvOf([['x', 'bad', '2018-01-01 00:00:00']]));
    const text = (await http(`${leader.url}/metrics`)).text;
    expect(text).to.match(/^promotions_ingests_total\{result="ok",role="leader"\} 1$/m);
    expect(text).to.match(/^promotions_ingests_total\{result="INGEST_BAD_ROWS",role="leader"\} 1$/m);
    expect(text).to.match(/^promotions_ingest_rows_total\{role="leader"\} 2$/m);
    expect(text).to.match(/^promotions_ingest_bad_rows_total\{role="leader"\} 1$/m);
    expect(text).to.match(/^promotions_current_version\{role="leader"\} 1$/m);
    expect(text).to.match(/^promotions_ingest_duration_seconds_count\{role="leader"\} 2$/m);
    expect(text).to.match(
      /^promotions_http_requests_total\{route="\/promotions",method="PUT",status="422",role="leader"\} 1$/m,
    );
  });

  it('registers a polling replica only at a bare http(s)://host:port on its own address, or on a listed host', async () => {
    const leader = await startLeader({ REPLICA_URL_HOSTS: 'localhost' });
    const poll = (url: string, token = REPLICA_TOKEN) =>
      http(`${leader.url}/snapshots/current`, {
        headers: { authorization: `Bearer ${token}`, 'x-replica-url': url, 'x-replica-version': '1' },
      });
    const refused = [
      'data:text/plain,hello',
      `http://127.0.0.1:${leader.server.port}/promotions?x=`,
      'http://127.0.0.1:9/any/path',
      'http://user:pw@127.0.0.1:9',
      'http://10.1.2.3:8081',
      'http://169.254.169.254:80',
      'file:///etc/passwd',
    ];
    for (const url of refused) expect((await poll(url)).status, url).to.equal(404);
    // The leader token is no replica's: it registers nothing either.
    await poll('http://127.0.0.1:7001', LEADER_TOKEN);
    await poll('http://127.0.0.1:7002/');
    await poll('http://localhost:7003');
    const list = (await http(`${leader.url}/replicas`, { headers: LEADER_AUTH })).json.replicas as {
      url: string;
    }[];
    expect(list.map((r) => r.url).sort()).to.deep.equal(['http://127.0.0.1:7002', 'http://localhost:7003']);
  });

  it('lets anyone, the replica token or only the leader token reach each route, as docs/api.md says', async () => {
    const api = await readFile(new URL('../../../docs/api.md', import.meta.url), 'utf8');
    const section = api.slice(api.indexOf('### Who may read what'));
    const rows = [
      ...section
        .slice(0, section.indexOf('\n\n', section.indexOf('| ---')))
        .matchAll(/^\| `([A-Z]+) (\S+)` \| (.+) \|$/gm),
    ].map((m) => ({ method: m[1], path: m[2], who: m[3] }));
    expect(rows.map((r) => `${r.method} ${r.path}`)).to.include.members([
      'GET /metrics',
      'GET /snapshots',
      'GET /snapshots/current',
      'GET /snapshots/1',
      'GET /snapshots/1/file',
      'GET /replicas',
      'PUT /promotions',
      'POST /snapshots/1/activate',
    ]);
    const leader = await startLeader();
    await putCsv(leader.url, csvOf(A));
    const callers: [string, string | undefined][] = [
      ['anyone', undefined],
      ['anyone', 'Bearer wrong-token-0123456789'],
      ['replica', `Bearer ${REPLICA_TOKEN}`],
      ['replica', `bearer ${REPLICA_TOKEN}`],
      ['leader', `Bearer ${LEADER_TOKEN}`],
      ['leader', `BEARER  ${LEADER_TOKEN}`],
    ];
    const allowed: Record<string, string[]> = {
      anyone: ['anyone', 'replica', 'leader'],
      '`REPLICA_TOKEN` or `LEADER_TOKEN`': ['replica', 'leader'],
      '`LEADER_TOKEN`': ['leader'],
    };
    for (const row of rows) {
      expect(allowed, row.who).to.have.property(row.who);
      for (const [caller, authorization] of callers) {
        const res = await http(`${leader.url}${row.path}`, {
          method: row.method,
          headers: authorization === undefined ? {} : { authorization },
          // A PUT body that is a valid file: the same rows again, so the version moves on.
          body: row.method === 'PUT' ? csvOf(A) : undefined,
        });
        const what = `${row.method} ${row.path} as ${authorization ?? 'no token'}`;
        if (allowed[row.who].includes(caller)) expect(res.status, what).to.be.within(200, 299);
        else expect([res.status, res.json.error], what).to.deep.equal([401, 'AUTH_REQUIRED']);
      }
    }
  });

  it('turns /readyz to 503 while draining for shutdown', async () => {
    const leader = await startLeader();
    expect((await http(`${leader.url}/readyz`)).status).to.equal(200);
    leader.lifecycle.draining = true;
    const res = await http(`${leader.url}/readyz`);
    expect(res.status).to.equal(503);
    expect(res.json.status).to.equal('draining');
  });
});
