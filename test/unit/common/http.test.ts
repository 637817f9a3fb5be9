import { Agent, request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { loadReplicaConfig } from '../../../common/config.js';
import { listen } from '../../../common/http.js';
import {
  capturingLogger,
  cleanup,
  csvOf,
  http,
  ingest,
  LEADER_TOKEN,
  onCleanup,
  rawExchange,
  startLeader,
  startReplica,
  waitFor,
} from '../../helpers.js';

const LIMITS = { maxHeaderBytes: 4096, headersTimeoutMs: 200, idleTimeoutMs: 300, keepAliveTimeoutMs: 5000 };

describe('common/http server limits', () => {
  afterEach(cleanup);

  async function server() {
    const s = await listen((_req, res) => res.end('ok'), '127.0.0.1', 0, LIMITS);
    onCleanup(() => s.close(0));
    return s;
  }

  it('answers a request head over MAX_HEADER_BYTES with 431', async () => {
    const s = await server();
    const res = await fetch(`${s.url}/`, { headers: { 'x-big': 'a'.repeat(5000) } });
    expect(res.status).to.equal(431);
    expect((await fetch(`${s.url}/`, { headers: { 'x-small': 'a'.repeat(1000) } })).status).to.equal(200);
  });

  it('disconnects a client that sends its head too slowly (slowloris)', async () => {
    const s = await server();
    const { text } = await rawExchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n');
    expect(text).to.match(/^HTTP\/1.1 408/);
  });

  it('disconnects a client whose body stalls, and the live version stays', async () => {
    const leader = await startLeader({ IDLE_TIMEOUT_MS: '300', HEADERS_TIMEOUT_MS: '1000' });
    await ingest(leader.url, csvOf([['a', '1', '2018-01-04 06:01:20']]));
    const head =
      'PUT /promotions HTTP/1.1\r\nHost: x\r\n' +
      `Authorization: Bearer ${LEADER_TOKEN}\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\n`;
    const { text } = await rawExchange(leader.server.port, `${head}b,2,2018-01-04 06:01:20\nc,3,`);
    expect(text).to.equal('');
    await waitFor(async () => (leader.ingestor.busy ? undefined : true), 5000, 'the stalled ingest to end');
    expect(leader.store.current()?.version).to.equal(1);
    expect(leader.store.list()).to.have.length(1);
  });

  it('logs and counts a client that goes away mid-upload as its abort (499), never as a 5xx', async () => {
    const { logger, lines } = capturingLogger();
    const leader = await startLeader({}, {}, {}, logger);
    const auth = { authorization: `Bearer ${LEADER_TOKEN}` };
    const tus = { ...auth, 'tus-resumable': '1.0.0' };
    const created = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...tus, 'upload-length': '1000000' },
    });
    const uploadUrl = `${leader.url}${created.headers.get('location')}`;
    const form = `--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n${'a'.repeat(50_000)}`;
    await cutMidBody(`${leader.url}/promotions`, 'PUT', { ...auth, 'content-type': 'text/csv' }, 100_000);
    await cutMidBody(
      uploadUrl,
      'PATCH',
      { ...tus, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' },
      100_000,
    );
    await cutMidBody(
      `${leader.url}/promotions`,
      'POST',
      { ...auth, 'content-type': 'multipart/form-data; boundary=b' },
      form.length,
      form,
    );
    const requests = () =>
      lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        // Without the scrapes cutMidBody waits with.
        .filter((l) => l.msg === 'request' && l.path !== '/metrics');
    await waitFor(() => (requests().length >= 4 ? true : undefined), 10_000, 'the three cut requests logged');
    // In any order: each cut ends on the server's side a moment after the client's, and may log after the next.
    expect(requests().map((l) => [l.method, l.status])).to.have.deep.members([
      ['POST', 201],
      ['PUT', 499],
      ['PATCH', 499],
      ['POST', 499],
    ]);
    const levels = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(levels.filter((l) => l.level >= 50).map((l) => l.msg)).to.deep.equal([]);
    expect(lines.join('\n')).not.to.match(/"status":5\d\d/);
    const metrics = (await http(`${leader.url}/metrics`)).text;
    expect(metrics).not.to.match(/status="5\d\d"/);
    expect(metrics).to.match(
      /^promotions_http_client_aborts_total\{route="\/promotions",method="PUT",role="leader"\} 1$/m,
    );
    expect(metrics).to.match(
      /^promotions_http_client_aborts_total\{route="\/promotions",method="POST",role="leader"\} 1$/m,
    );
    expect(metrics).to.match(
      /^promotions_http_client_aborts_total\{route="\/uploads\/:id",method="PATCH",role="leader"\} 1$/m,
    );
    // Nothing is left hanging: only the scrape itself is in flight.
    expect(metrics).to.match(/^promotions_http_requests_in_flight\{role="leader"\} 1$/m);
    // What arrived of the cut tus upload is kept for the client to resume.
    const head = await http(uploadUrl, { method: 'HEAD', headers: tus });
    expect(Number(head.headers.get('upload-offset'))).to.be.within(1, 1_000_000);
  });

  it('answers an early 4xx on a keep-alive connection so that the next request on it works (drain or close)', async () => {
    const leader = await startLeader();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onCleanup(async () => agent.destroy());
    const send = (method: string, path: string, body?: Buffer) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const req = request(
          `${leader.url}${path}`,
          { method, agent, headers: { authorization: `Bearer ${LEADER_TOKEN}`, 'content-type': 'text/csv' } },
          (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const csv = csvOf(Array.from({ length: 5000 }, (_, i) => [`id${i}`, '1.5', '2018-01-01 00:00:00']));
    const gzip = gzipSync(csv);
    // A gzip file is refused on its first bytes, long before a large body has arrived; a small one is read
    // through (drained) and the connection kept; a large one is answered with Connection: close.
    for (const [padding, connection] of [
      [1000, 'keep-alive'],
      [3 * 1024 * 1024, 'close'],
    ] as const) {
      const refused = await send('PUT', '/promotions', Buffer.concat([gzip, Buffer.alloc(padding)]));
      expect([refused.status, refused.connection]).to.deep.equal([422, connection]);
      const next = await send('GET', '/healthz');
      expect(next.status).to.equal(200);
    }
  });
});

/**
 * Sends the head of a request declaring 1,000,000 body bytes (or `body`'s length plus more), then `sent` bytes of
 * the body (or `body`), then cuts the connection, as a dropped link does: once the server is answering it (its
 * /metrics count it in flight, beside the scrape itself), so that the cut comes mid-body. Resolves once the
 * socket is closed.
 */
async function cutMidBody(
  url: string,
  method: string,
  headers: Record<string, string>,
  sent: number,
  body?: string,
): Promise<void> {
  const bytes = body === undefined ? Buffer.alloc(sent, 'a') : Buffer.from(body);
  const req = request(url, {
    method,
    headers: { ...headers, 'content-length': String(bytes.length * 10) },
  });
  const closed = new Promise<void>((resolve) => {
    req.on('error', () => undefined);
    req.on('close', () => resolve());
  });
  req.write(bytes);
  const inFlight = async () =>
    Number(
      /^promotions_http_requests_in_flight\S* (\d+)$/m.exec(
        (await http(`${new URL(url).origin}/metrics`)).text,
      )?.[1],
    );
  await waitFor(
    async () => ((await inFlight()) >= 2 ? true : undefined),
    10_000,
    `the server to take ${method}`,
  );
  req.destroy();
  await closed;
}

describe('MAX_CONNECTIONS', () => {
  afterEach(cleanup);

  it('caps the connections of both roles (server.maxConnections), and a bad value stops start-up', async () => {
    const leader = await startLeader({ MAX_CONNECTIONS: '7' });
    expect(leader.server.server.maxConnections).to.equal(7);
    const replica = await startReplica('http://127.0.0.1:9', { MAX_CONNECTIONS: '9' });
    expect(replica.server.server.maxConnections).to.equal(9);
    expect(loadReplicaConfig({ REPLICA_TOKEN: 'r'.repeat(16) }).maxConnections).to.equal(4096);
    for (const bad of ['0', 'many', '-1']) {
      expect(() => loadReplicaConfig({ REPLICA_TOKEN: 'r'.repeat(16), MAX_CONNECTIONS: bad })).to.throw(
        /^MAX_CONNECTIONS/,
      );
    }
  });
});
