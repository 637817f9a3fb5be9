import { expect } from 'chai';
import fc from 'fast-check';
import {
  cleanup,
  http,
  type RawAnswer,
  RawConnection,
  rawExchange,
  rawHeader,
  waitFor,
} from '../../helpers.js';
import { bodyOf, heldSnapshot, memorySnapshot, readServer } from './fakes.js';

const IDS = ['a', 'b', 'c', 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118', 'odd id/with?chars%'];
const ETAG = `"v7-${'ab'.repeat(6)}"`;

function get(path: string, headers = 'Host: x\r\n'): string {
  return `GET ${path} HTTP/1.1\r\n${headers}\r\n`;
}

/** Headers that differ between two answers for reasons of time or connection, not content. */
const VOLATILE = new Set(['date', 'connection', 'keep-alive']);

/** What a client sees of an answer, apart from the date: status, body, and the other headers by name. */
function seen(a: RawAnswer): { status: number; body: string; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  for (const [k, v] of a.headers) if (!VOLATILE.has(k)) headers[k] = v;
  return { status: a.status, body: a.body, headers };
}

/** Sends `data` on a new connection: the first answer's status line and body, or how the connection ended. */
async function firstAnswer(port: number, data: string): Promise<{ status: string; body: string }> {
  const c = await RawConnection.open(port);
  c.send(data);
  try {
    const a = await c.next(5000);
    return { status: String(a.status), body: a.body };
  } catch (err) {
    return { status: 'no answer', body: (err as Error).message.replace(/ within \d+ ms/, '') };
  } finally {
    c.socket.destroy();
  }
}

describe('replica/read-server: the raw fast path for reads', () => {
  afterEach(cleanup);

  it('answers reads with the status, headers and body node:http gives, and the headers a client needs', async () => {
    const fast = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const node = await readServer(memorySnapshot(IDS), { transport: 'node' });
    const requests = [
      get('/promotions/a'),
      get('/promotions/d018ef0b-dbd9-48f1-ac1a-eb4d90e57118?x=1'),
      get(`/promotions/${encodeURIComponent('odd id/with?chars%')}`),
      get('/promotions/absent'),
      get('/promotions/a,b'),
      get('/promotions/%E0%A4%A'),
      get('/promotions/'),
      get('/promotions/a', `Host: x\r\nIf-None-Match: ${ETAG}\r\n`),
      get('/promotions/a', 'Host: x\r\nIf-None-Match: "v6-old"\r\n'),
      get('/promotions/a', 'Host: x\r\nX-Request-Id: trace-42\r\n'),
      get('/promotions/absent', 'host:x\r\nx-request-id:   trace-43  \r\nAccept: */*\r\n'),
    ];
    const onFast = await RawConnection.open(fast.server.port);
    const onNode = await RawConnection.open(node.server.port);
    for (const request of requests) {
      onFast.send(request);
      onNode.send(request);
      const [f, n] = [await onFast.next(), await onNode.next()];
      expect(seen(f), request).to.deep.equal(seen(n));
      expect(rawHeader(f, 'connection')).to.equal('keep-alive');
      expect(rawHeader(f, 'keep-alive')).to.equal('timeout=5');
      expect(new Date(rawHeader(f, 'date') as string).getTime()).to.be.closeTo(Date.now(), 5000);
    }
    // The statuses above, spelled out.
    onFast.send(requests.join(''));
    const answers: RawAnswer[] = [];
    for (const _ of requests) answers.push(await onFast.next());
    expect(answers.map((a) => a.status)).to.deep.equal([
      200, 200, 200, 404, 400, 400, 400, 304, 200, 200, 404,
    ]);
    expect(answers[0].body).to.equal(bodyOf('a'));
    expect(answers[0].headers.map(([k]) => k)).to.deep.equal([
      'content-type',
      'content-length',
      'etag',
      'x-snapshot-version',
      'date',
      'connection',
      'keep-alive',
    ]);
    expect(rawHeader(answers[0], 'etag')).to.equal(ETAG);
    expect(rawHeader(answers[0], 'x-snapshot-version')).to.equal('7');
    expect(JSON.parse(answers[2].body).id).to.equal('odd id/with?chars%');
    expect(answers[7].body).to.equal('');
    expect(rawHeader(answers[9], 'x-request-id')).to.equal('trace-42');
    expect(rawHeader(answers[10], 'x-request-id')).to.equal('trace-43');
    // And through an ordinary client.
    const res = await http(`${fast.server.url}/promotions/b`);
    expect(res.status).to.equal(200);
    expect(res.json).to.deep.equal(JSON.parse(bodyOf('b')));
    const text = await fast.metrics.registry.metrics();
    expect(text).to.match(/status="200",role="replica"\} 11$/m);
  });

  it('answers pipelined reads in order', async () => {
    const { server } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    c.send(['a', 'absent', 'b', 'c'].map((id) => get(`/promotions/${id}`)).join(''));
    const answers = [await c.next(), await c.next(), await c.next(), await c.next()];
    expect(answers.map((a) => a.status)).to.deep.equal([200, 404, 200, 200]);
    expect(answers.map((a) => (a.status === 200 ? JSON.parse(a.body).id : '-'))).to.deep.equal([
      'a',
      '-',
      'b',
      'c',
    ]);
  });

  it('reads a head that arrives a byte at a time', async () => {
    const { server } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    const request = get('/promotions/a', 'Host: x\r\nX-Request-Id: slow\r\n');
    for (const ch of request) {
      c.send(ch);
      await new Promise((r) => setImmediate(r));
    }
    const answer = await c.next();
    expect(answer.status).to.equal(200);
    expect(rawHeader(answer, 'x-request-id')).to.equal('slow');
  });

  it('hands the connection to node:http at the first request that is not a plain read, keeping the order', async () => {
    const { server } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    c.send(
      get('/promotions/a') +
        get('/healthz') +
        get('/promotions/b') +
        'POST /promotions/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
        get('/promotions/c'),
    );
    const answers = [await c.next(), await c.next(), await c.next(), await c.next(), await c.next()];
    expect(answers.map((a) => a.body)).to.deep.equal([
      bodyOf('a'),
      'fallback GET /healthz HTTP/1.1',
      bodyOf('b'),
      'fallback POST /promotions/c HTTP/1.1',
      bodyOf('c'),
    ]);
    // node:http keeps the connection: a later read is still answered on it.
    c.send(get('/promotions/d018ef0b-dbd9-48f1-ac1a-eb4d90e57118'));
    expect((await c.next()).status).to.equal(200);
  });

  it('leaves every request outside its strict subset to node:http, which answers as it would alone', async () => {
    const fast = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const node = await readServer(memorySnapshot(IDS), { transport: 'node' });
    const cases = [
      'HEAD /promotions/a HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /promotions/a HTTP/1.0\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\n\r\n', // no Host
      'GET /promotions/a HTTP/1.1\r\nHost : x\r\n\r\n', // whitespace before the colon
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n', // obs-fold
      'GET /promotions/a HTTP/1.1\nHost: x\n\n', // bare LF
      'GET /promotions/a HTTP/1.1\r\nHost: x\rX-B: 1\r\n\r\n', // bare CR
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-{bad}: 1\r\n\r\n', // not a token
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n', // obs-text
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n', // NUL
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      'GET http://x/promotions/a HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET  /promotions/a HTTP/1.1\r\nHost: x\r\n\r\n',
      'get /promotions/a HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      '\r\nGET /promotions/a HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /promotions/\xe9 HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /promotions/a\x01 HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-Big: '.concat('a'.repeat(5000), '\r\n\r\n'),
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\n:no-name\r\n\r\n',
    ];
    for (const request of cases) {
      const [f, n] = await Promise.all([
        firstAnswer(fast.server.port, request),
        firstAnswer(node.server.port, request),
      ]);
      expect(f, JSON.stringify(request)).to.deep.equal(n);
    }
  });

  it('agrees with node:http on random request heads: same status, same body', async () => {
    const fast = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const node = await readServer(memorySnapshot(IDS), { transport: 'node' });
    const anyChar = fc.oneof(
      fc.constantFrom(' ', '\t', ':', '\r', '\n', '\r\n', '"', '{', '\x00', '\x7f', '\xe9', ',', '%', '?'),
      fc.string({ minLength: 0, maxLength: 3 }),
    );
    const token = fc.oneof(
      fc.constantFrom(
        'Host',
        'host',
        'If-None-Match',
        'X-Request-Id',
        'Connection',
        'Content-Length',
        'Accept',
      ),
      fc.string({ minLength: 1, maxLength: 8 }),
      fc.tuple(fc.string({ maxLength: 4 }), anyChar).map(([a, b]) => a + b),
    );
    const value = fc.oneof(
      fc.constantFrom('x', 'close', 'keep-alive', ETAG, '0', ' padded ', ''),
      fc.tuple(fc.string({ maxLength: 6 }), anyChar).map(([a, b]) => a + b),
    );
    const head = fc.record({
      method: fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'get', 'POST'),
      path: fc.oneof(
        fc.constantFrom('/promotions/a', '/promotions/absent', '/promotions/', '/healthz', '/promotions/a%2'),
        fc.tuple(fc.constant('/promotions/'), anyChar).map(([a, b]) => a + b),
      ),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'http/1.1'),
      host: fc.boolean(),
      headers: fc.array(fc.tuple(token, fc.constantFrom(': ', ':', ' : '), value), { maxLength: 4 }),
      eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n'),
    });
    await fc.assert(
      fc.asyncProperty(head, async (h) => {
        const lines = [`${h.method} ${h.path} ${h.version}`];
        if (h.host) lines.push('Host: x');
        for (const [k, sep, v] of h.headers) lines.push(`${k}${sep}${v}`);
        const request = `${lines.join(h.eol)}${h.eol}${h.eol}`;
        const [f, n] = await Promise.all([
          firstAnswer(fast.server.port, request),
          firstAnswer(node.server.port, request),
        ]);
        expect(f, JSON.stringify(request)).to.deep.equal(n);
      }),
      { numRuns: 300 },
    );
  });

  it('closes the connection after an answer to Connection: close', async () => {
    const { server } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    c.send(get('/promotions/a', 'Host: x\r\nConnection: close\r\n') + get('/promotions/b'));
    const answer = await c.next();
    expect(answer.status).to.equal(200);
    expect(rawHeader(answer, 'connection')).to.equal('close');
    await c.waitClosed();
    const after = await c.next(100).catch((err: Error) => err.message);
    expect(after).to.match(/^connection closed; unparsed: ""$/);
  });

  it('answers 408 and closes when a head does not arrive within HEADERS_TIMEOUT_MS', async () => {
    const { server } = await readServer(memorySnapshot(IDS), {
      transport: 'fast',
      limits: { headersTimeoutMs: 200 },
    });
    const { text } = await rawExchange(server.port, 'GET /promotions/a HTTP/1.1\r\nHost: x\r\n', 5000);
    expect(text).to.match(/^HTTP\/1.1 408/);
  });

  it('closes a connection idle for KEEP_ALIVE_TIMEOUT_MS, and keeps a busy one open', async () => {
    const { server } = await readServer(memorySnapshot(IDS), {
      transport: 'fast',
      limits: { keepAliveTimeoutMs: 300 },
    });
    const c = await RawConnection.open(server.port);
    for (let i = 0; i < 5; i++) {
      c.send(get('/promotions/a'));
      expect((await c.next()).status).to.equal(200);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(c.closed).to.equal(false);
    await c.waitClosed(5000);
  });

  it('waits for a lookup that takes time (disk mode) before the next pipelined read, answering in order', async () => {
    const held = heldSnapshot();
    const { server } = await readServer(held.snapshot, { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    c.send(['x', 'y', 'z'].map((id) => get(`/promotions/${id}`)).join(''));
    await waitFor(() => (held.started() === 1 ? true : undefined), 5000, 'the first lookup');
    await new Promise((r) => setTimeout(r, 50));
    expect(held.started()).to.equal(1);
    held.release();
    const answers = [await c.next(), await c.next(), await c.next()];
    expect(answers.map((a) => JSON.parse(a.body).id)).to.deep.equal(['x', 'y', 'z']);
  });

  it('stops reading from a client that does not read its answers, and answers everything once it does', async () => {
    const { server, metrics } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    const count = 100_000;
    c.socket.pause();
    c.send(get('/promotions/a').repeat(count));
    const answered = async () =>
      Number(/status="200",role="replica"\} (\d+)$/m.exec(await metrics.registry.metrics())?.[1] ?? 0);
    // The answers fill the socket buffers long before the last request is read: the server stops there.
    let before = -1;
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      const now = await answered();
      if (now === before) break;
      before = now;
    }
    expect(before).to.be.greaterThan(0);
    expect(before).to.be.lessThan(count);
    c.socket.resume();
    for (let i = 0; i < count; i++) await c.next();
    expect(await answered()).to.equal(count);
  });

  it('on close, ends idle connections at once and lets a read in progress finish', async () => {
    const held = heldSnapshot();
    const { server } = await readServer(held.snapshot, { transport: 'fast' });
    const idle = await RawConnection.open(server.port);
    const busy = await RawConnection.open(server.port);
    busy.send(get('/promotions/x'));
    await waitFor(() => (held.started() === 1 ? true : undefined), 5000, 'the lookup');
    const closed = server.close(10_000);
    await idle.waitClosed(2000);
    expect(busy.closed).to.equal(false);
    held.release();
    const answer = await busy.next();
    expect(answer.status).to.equal(200);
    expect(rawHeader(answer, 'connection')).to.equal('close');
    await closed;
  });
});
