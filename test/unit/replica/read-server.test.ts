import type { Socket } from 'node:net';
import { expect } from 'chai';
import fc from 'fast-check';
import type { RunningServer, ServerLimits } from '../../../common/http.js';
import { bodyTag } from '../../../replica/etag.js';
import { scanWork } from '../../../replica/head-scanner.js';
import {
  cleanup,
  http,
  type RawAnswer,
  RawConnection,
  rawExchange,
  rawHeader,
  waitFor,
} from '../../helpers.js';
import { bodyOf, heldSnapshot, ManualClock, memorySnapshot, readServer } from './fakes.js';

const IDS = ['a', 'b', 'c', 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118', 'odd id/with?chars%'];
const ETAG = bodyTag(bodyOf('a'));

function get(path: string, headers = 'Host: x\r\n'): string {
  return `GET ${path} HTTP/1.1\r\n${headers}\r\n`;
}

function head(path: string, headers = 'Host: x\r\n'): string {
  return `HEAD ${path} HTTP/1.1\r\n${headers}\r\n`;
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
    const a = await c.next(5000, data.startsWith('HEAD '));
    return { status: String(a.status), body: a.body };
  } catch (err) {
    return { status: 'no answer', body: (err as Error).message.replace(/ within \d+ ms/, '') };
  } finally {
    c.socket.destroy();
  }
}

/**
 * A new connection to `server`: the client's side, and the server's (to see when the server stops reading it).
 */
async function connectBothSides(server: RunningServer): Promise<{ c: RawConnection; socket: Socket }> {
  const accepted = new Promise<Socket>((resolve) => server.server.once('connection', resolve));
  const c = await RawConnection.open(server.port);
  return { c, socket: await accepted };
}

/**
 * Runs `client` at once on a connection to a server with the fast path and on one to node:http alone, both with
 * `limits`: the status it returned for each, and the real time it took from its first byte (ms). Only lower bounds
 * may be asserted on that time: a busy machine answers later, never earlier.
 */
async function timedOnBoth(
  limits: Partial<ServerLimits>,
  client: (c: RawConnection) => Promise<number>,
): Promise<{ fast: { status: number; ms: number }; node: { status: number; ms: number } }> {
  const run = async (transport: 'fast' | 'node') => {
    const { server } = await readServer(memorySnapshot(IDS), { transport, limits });
    const c = await RawConnection.open(server.port);
    const start = performance.now();
    const status = await client(c);
    return { status, ms: performance.now() - start };
  };
  const [fast, node] = await Promise.all([run('fast'), run('node')]);
  return { fast, node };
}

/**
 * A connection to a fast-path server with `limits` whose timeouts run on a clock the test moves: the clock, the
 * client's side and the server's side.
 */
async function onManualClock(
  limits: Partial<ServerLimits>,
): Promise<{ clock: ManualClock; c: RawConnection; socket: Socket }> {
  const clock = new ManualClock();
  const { server } = await readServer(memorySnapshot(IDS), { transport: 'fast', limits, clock });
  return { clock, ...(await connectBothSides(server)) };
}

/** The server's `socket` has read `bytes` bytes in all (its data events for them have run). */
function received(socket: Socket, bytes: number): true | undefined {
  return socket.bytesRead === bytes ? true : undefined;
}

/** Every answer written to the server's `socket` is handed to the kernel: nothing in progress on it. */
function handedToKernel(socket: Socket): true | undefined {
  return socket.writableLength === 0 ? true : undefined;
}

/** The server has stopped reading `socket` (a waiting read, or answers the client does not take). */
function stoppedReading(socket: Socket): true | undefined {
  return socket.isPaused() ? true : undefined;
}

/**
 * Sends `data`, then ends the client's side (FIN), and collects what comes back until the server closes the
 * connection; rejects if it is still open after `boundMs`. Without the Date header (it differs between runs).
 */
async function halfClosedExchange(port: number, data: string, boundMs = 3000): Promise<string> {
  const { text } = await rawExchange(port, Buffer.from(data, 'latin1'), boundMs, true);
  return text.replace(/^date: .*\r\n/gim, '');
}

/** Sends `data` on a new connection and reads answers until the server closes it (at most `max`): their statuses, and whether it closed. */
async function answersUntilClosed(
  port: number,
  data: string,
  max = 2,
): Promise<{ statuses: number[]; closed: boolean }> {
  const c = await RawConnection.open(port);
  c.send(data);
  const statuses: number[] = [];
  try {
    while (statuses.length < max) statuses.push((await c.next(5000)).status);
    return { statuses, closed: false };
  } catch (err) {
    if (!/^connection closed/.test((err as Error).message)) throw err;
    return { statuses, closed: true };
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
      head('/promotions/a'),
      head('/promotions/absent'),
      head('/promotions/a,b'),
      head('/promotions/a', `Host: x\r\nIf-None-Match: ${ETAG}\r\n`),
      get('/promotions/a', `Host: x\r\nIf-None-Match: W/${ETAG}\r\n`),
      get('/promotions/a', `Host: x\r\nIf-None-Match: "x", ${ETAG}\r\n`),
      get('/promotions/a', 'Host: x\r\nIf-None-Match: *\r\n'),
      get('/promotions/absent', 'Host: x\r\nIf-None-Match: *\r\n'),
    ];
    const onFast = await RawConnection.open(fast.server.port);
    const onNode = await RawConnection.open(node.server.port);
    for (const request of requests) {
      onFast.send(request);
      onNode.send(request);
      const isHead = request.startsWith('HEAD ');
      const [f, n] = [await onFast.next(10_000, isHead), await onNode.next(10_000, isHead)];
      expect(seen(f), request).to.deep.equal(seen(n));
      expect(rawHeader(f, 'connection')).to.equal('keep-alive');
      expect(rawHeader(f, 'keep-alive')).to.equal('timeout=5');
      expect(new Date(rawHeader(f, 'date') as string).getTime()).to.be.closeTo(Date.now(), 5000);
    }
    // The statuses above, spelled out.
    onFast.send(requests.join(''));
    const answers: RawAnswer[] = [];
    for (const r of requests) answers.push(await onFast.next(10_000, r.startsWith('HEAD ')));
    expect(answers.map((a) => a.status)).to.deep.equal([
      200, 200, 200, 404, 400, 400, 400, 304, 200, 200, 404, 200, 404, 400, 304, 304, 304, 304, 404,
    ]);
    // HEAD: the GET answer's headers, no body.
    expect(answers[11].headers.filter(([k]) => k !== 'date')).to.deep.equal(
      answers[0].headers.filter(([k]) => k !== 'date'),
    );
    expect(answers[11].body).to.equal('');
    // Nothing follows the HEAD answers' headers: the next answer on the connection starts right after them.
    onFast.send(get('/promotions/b'));
    expect(JSON.parse((await onFast.next()).body).id).to.equal('b');
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
    expect(text).to.match(/method="GET",status="200",role="replica"\} 12$/m);
    expect(text).to.match(/method="HEAD",status="200",role="replica"\} 2$/m);
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

  it('costs linear work for a head that arrives a byte at a time (no byte scanned over and over)', async () => {
    const { server } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const c = await RawConnection.open(server.port);
    const request = get('/promotions/a', `Host: x\r\nX-Pad: ${'p'.repeat(3000)}\r\n`);
    const before = scanWork.chars;
    for (const ch of request) {
      c.send(ch);
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.next()).status).to.equal(200);
    // The fast path scans the first pieces once each, then leaves the trickle to node:http (HEAD_PIECES): about
    // one look per byte. Rescanning the pending head at each piece, as it once did, was quadratic: millions here.
    expect(scanWork.chars - before).to.be.at.most(3 * request.length);
  });

  it('answers a request followed by the end of input (FIN) and closes at once, as node:http does', async () => {
    const limits = { keepAliveTimeoutMs: 60_000, headersTimeoutMs: 60_000 };
    const fast = await readServer(memorySnapshot(IDS), { transport: 'fast', limits });
    const node = await readServer(memorySnapshot(IDS), { transport: 'node', limits });
    const cases = [
      get('/promotions/a'),
      get('/promotions/a') + get('/promotions/absent'),
      get('/promotions/a') + get('/healthz'),
      // A head cut short by the end of input: node:http's 400 at once, not a 408 after HEADERS_TIMEOUT_MS.
      'G',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\n',
      'GET /promotions/a HTTP/1.1\r\nHost: x\r\n\r',
      `${get('/promotions/a')}GET /promotions/b HTT`,
    ];
    for (const data of cases) {
      const [f, n] = await Promise.all([
        halfClosedExchange(fast.server.port, data),
        halfClosedExchange(node.server.port, data),
      ]);
      // Header names compared case-insensitively: node:http writes `Connection`, the fast path `connection`.
      expect(f.toLowerCase(), JSON.stringify(data)).to.equal(n.toLowerCase());
    }
    expect(await halfClosedExchange(fast.server.port, 'GET /promotions/a HTTP/1.1\r\nHost: x')).to.equal(
      'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
    );
  });

  it('answers a read still waiting (disk mode) when the client ends its side, then closes', async () => {
    const held = heldSnapshot();
    const { server } = await readServer(held.snapshot, {
      transport: 'fast',
      limits: { keepAliveTimeoutMs: 60_000 },
    });
    const exchange = halfClosedExchange(server.port, get('/promotions/x') + get('/promotions/y'));
    await waitFor(() => (held.started() === 1 ? true : undefined), 5000, 'the first lookup');
    held.release();
    const text = await exchange;
    expect(text.match(/HTTP\/1.1 200 OK\r\n/g)).to.have.length(2);
    expect(text).to.include(bodyOf('x')).and.to.include(bodyOf('y'));
  });

  it('reads Connection as a token list and leaves Proxy-Connection to node:http, closing exactly when node:http does', async () => {
    const fast = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const node = await readServer(memorySnapshot(IDS), { transport: 'node' });
    const headers = [
      'Connection: close',
      'Connection: CLOSE',
      'Connection:   close  ',
      'Connection: keep-alive, close',
      'Connection: close,keep-alive',
      'Connection: foo , close',
      'Connection: keep-alive',
      'Connection: xclose',
      'Connection: closed',
      'Connection: close-ish',
      'Connection: te',
      'Connection: keep-alive\r\nConnection: close',
      'Proxy-Connection: close',
      'Proxy-Connection: keep-alive',
      'proxy-connection: Close',
    ];
    for (const h of headers) {
      const data = get('/promotions/a', `Host: x\r\n${h}\r\n`) + get('/promotions/b');
      const [f, n] = await Promise.all([
        answersUntilClosed(fast.server.port, data),
        answersUntilClosed(node.server.port, data),
      ]);
      expect(f, h).to.deep.equal(n);
    }
    // Spelled out: close ends the connection, a token that merely contains "close" does not.
    expect(
      await answersUntilClosed(
        fast.server.port,
        `${get('/promotions/a', 'Host: x\r\nConnection: te, close\r\n')}${get('/promotions/b')}`,
      ),
    ).to.deep.equal({ statuses: [200], closed: true });
    expect(
      await answersUntilClosed(
        fast.server.port,
        `${get('/promotions/a', 'Host: x\r\nConnection: xclose\r\n')}${get('/promotions/b')}`,
      ),
    ).to.deep.equal({ statuses: [200, 200], closed: false });
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
      JSON.stringify({
        error: 'REQUEST_METHOD_NOT_ALLOWED',
        message: 'POST is not allowed on /promotions/{id}; it answers GET, HEAD',
      }),
      bodyOf('c'),
    ]);
    expect(answers[3].status).to.equal(405);
    expect(rawHeader(answers[3], 'allow')).to.equal('GET, HEAD');
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

  it('keeps HEADERS_TIMEOUT_MS from the first byte of a head that node:http takes over midway', async () => {
    // The fast path's timeouts run on the test's clock; node:http's own headers timer (a minute here, in real
    // time) cannot come first however slow the machine.
    const limit = 60_000;
    const { clock, c, socket } = await onManualClock({ headersTimeoutMs: limit });
    const start = 'GET /promotions/a HTTP/1.1\r\nHost: x\r\n';
    c.send(start);
    await waitFor(() => received(socket, start.length), 5000, "the head's first bytes");
    // 0.7 of the limit later, a byte the fast path leaves to node:http (obs-text in a value, which llhttp takes).
    clock.advance(limit * 0.7);
    const more = 'X-A: caf\xe9\r\n';
    c.send(more);
    await waitFor(() => received(socket, start.length + more.length), 5000, 'the hand-over');
    // node:http restarts its headers timer at the hand-over; the head's deadline stays its first byte's.
    clock.advance(limit * 0.3);
    expect(socket.writableEnded, 'HEADERS_TIMEOUT_MS after the first byte').to.equal(false);
    clock.advance(1);
    expect(socket.writableEnded, 'past HEADERS_TIMEOUT_MS after the first byte').to.equal(true);
    const answer = await c.next(5000);
    expect(answer.status).to.equal(408);
    expect(rawHeader(answer, 'connection')).to.equal('close');
    await c.waitClosed(5000);
  });

  it('answers 408 to a head still arriving HEADERS_TIMEOUT_MS after its first byte, not before, as node:http alone does', async () => {
    const limit = 1000;
    // A read's head that never ends: one more byte of a header value every tenth of the limit until the answer,
    // so that a deadline counted from the last byte would never come. On the fast path the head trickles in
    // pieces, so node:http takes it over after a few.
    const { fast, node } = await timedOnBoth({ headersTimeoutMs: limit }, async (c) => {
      c.send('GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      const drip = setInterval(() => c.send('a'), limit / 10);
      try {
        return (await c.next(30_000)).status;
      } finally {
        clearInterval(drip);
      }
    });
    expect([fast.status, node.status]).to.deep.equal([408, 408]);
    // node:http's timers count whole milliseconds of the event loop's time: at most one early by this clock.
    expect(fast.ms, 'fast path').to.be.at.least(limit - 1);
    expect(node.ms, 'node:http alone').to.be.at.least(limit - 1);
  });

  it('after a hand-over, answers a request followed by data after Connection: close as decision 004 says', async () => {
    // A protocol error (llhttp: "Data after `Connection: close`"), in one packet. node:http alone destroys the
    // connection with the pipelined answer still queued behind the first; after a hand-over node:http's parser
    // starts afresh with no answer in flight, so it sends that answer first. Nothing after the close is answered
    // by either.
    const fast = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const node = await readServer(memorySnapshot(IDS), { transport: 'node' });
    const data = `${get('/promotions/a')}${get('/healthz', 'Host: x\r\nConnection: close\r\n')}\r\n${get('/promotions/b')}`;
    const [f, n] = await Promise.all([
      rawExchange(fast.server.port, data),
      rawExchange(node.server.port, data),
    ]);
    const statuses = (t: string) => [...t.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => Number(m[1]));
    expect(statuses(n.text)).to.deep.equal([200]);
    expect(statuses(f.text)).to.deep.equal([200, 200]);
    expect(f.text).to.include('fallback GET /healthz').and.not.to.include(bodyOf('b'));
  });

  it('closes a connection idle a second past KEEP_ALIVE_TIMEOUT_MS, and keeps a busy one open', async () => {
    const timeout = 300;
    // node:http closes an idle connection one second after the timeout its answers advertise.
    const closesAfter = timeout + 1000;
    const { clock, c, socket } = await onManualClock({ keepAliveTimeoutMs: timeout });
    // A request every 0.8 of that, four times its length in all: each request starts the count again.
    for (let i = 1; i <= 5; i++) {
      c.send(get('/promotions/a'));
      expect((await c.next()).status).to.equal(200);
      await waitFor(() => handedToKernel(socket), 5000, 'the answer to leave');
      clock.advance(closesAfter * 0.8);
      expect(socket.destroyed, `0.8 of the time after request ${i}`).to.equal(false);
    }
    clock.advance(closesAfter * 0.2);
    expect(socket.destroyed, 'KEEP_ALIVE_TIMEOUT_MS + 1 s after the last request').to.equal(false);
    clock.advance(1);
    expect(socket.destroyed, 'past KEEP_ALIVE_TIMEOUT_MS + 1 s after the last request').to.equal(true);
    await c.waitClosed(5000);
  });

  it('closes an idle connection a second past KEEP_ALIVE_TIMEOUT_MS after its last request, not before, as node:http alone does', async () => {
    const timeout = 300;
    // One read, then nothing until the server closes the connection.
    const { fast, node } = await timedOnBoth({ keepAliveTimeoutMs: timeout }, async (c) => {
      c.send(get('/promotions/a'));
      const answer = await c.next();
      await c.waitClosed(30_000);
      return answer.status;
    });
    expect([fast.status, node.status]).to.deep.equal([200, 200]);
    // node:http's timers count whole milliseconds of the event loop's time: at most one early by this clock.
    expect(fast.ms, 'fast path').to.be.at.least(timeout + 1000 - 1);
    expect(node.ms, 'node:http alone').to.be.at.least(timeout + 1000 - 1);
  });

  it('waits for a lookup that takes time (disk mode) before the next pipelined read, answering in order', async () => {
    const held = heldSnapshot();
    const { server } = await readServer(held.snapshot, { transport: 'fast' });
    const { c, socket } = await connectBothSides(server);
    c.send(['x', 'y', 'z'].map((id) => get(`/promotions/${id}`)).join(''));
    await waitFor(() => (held.started() === 1 ? true : undefined), 5000, 'the first lookup');
    // The server stops reading while a lookup waits (it pauses in the same turn it starts one): once it has, no
    // other lookup can start before this one ends, whatever the machine's speed.
    await waitFor(() => stoppedReading(socket), 5000, 'the server to stop reading');
    expect(held.started()).to.equal(1);
    held.release();
    const answers = [await c.next(), await c.next(), await c.next()];
    expect(answers.map((a) => JSON.parse(a.body).id)).to.deep.equal(['x', 'y', 'z']);
  });

  it('keeps reading while a lookup waits for a client that waits for each answer, and holds what comes early', async () => {
    const held = heldSnapshot();
    const { server } = await readServer(held.snapshot, { transport: 'fast' });
    const { c, socket } = await connectBothSides(server);
    c.send(get('/promotions/x'));
    await waitFor(() => (held.started() === 1 ? true : undefined), 5000, 'the first lookup');
    // Nothing else came: the socket was not paused for the wait (a pause and a resume per disk read cost CPU).
    expect(socket.isPaused(), 'paused while a lookup waits').to.equal(false);
    // A request that comes while the lookup waits is held, not looked up, until the first answer is out.
    c.send(get('/promotions/y'));
    await waitFor(() => stoppedReading(socket), 5000, 'the server to stop reading');
    expect(held.started()).to.equal(1);
    held.release();
    const answers = [await c.next(), await c.next()];
    expect(answers.map((a) => JSON.parse(a.body).id)).to.deep.equal(['x', 'y']);
    expect(socket.isPaused(), 'paused once answered').to.equal(false);
  });

  it('stops reading from a client that does not read its answers, and answers everything once it does', async () => {
    const { server, metrics } = await readServer(memorySnapshot(IDS), { transport: 'fast' });
    const { c, socket } = await connectBothSides(server);
    const count = 100_000;
    c.socket.pause();
    c.send(get('/promotions/a').repeat(count));
    const answered = async () =>
      Number(/status="200",role="replica"\} (\d+)$/m.exec(await metrics.registry.metrics())?.[1] ?? 0);
    // The answers fill the socket buffers long before the last request is read: the server stops there, paused
    // with answers waiting for the client (lookups in memory never wait, so the pause is the answers').
    await waitFor(
      () => (stoppedReading(socket) && socket.writableNeedDrain ? true : undefined),
      30_000,
      'the server to stop reading, its answers untaken',
    );
    const before = await answered();
    expect(before).to.be.greaterThan(0);
    expect(before).to.be.lessThan(count);
    c.socket.resume();
    for (let i = 0; i < count; i++) await c.next();
    expect(await answered()).to.equal(count);
  });

  it('refuses connections past MAX_CONNECTIONS at once, and keeps serving the ones it holds', async () => {
    const { server } = await readServer(memorySnapshot(IDS), {
      transport: 'fast',
      limits: { maxConnections: 3 },
    });
    const held: RawConnection[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await RawConnection.open(server.port);
      c.send(get('/promotions/a'));
      expect((await c.next()).status).to.equal(200);
      held.push(c);
    }
    // The kernel completes the handshake; node:http closes the connection as soon as it is accepted, unanswered.
    const refused = await RawConnection.open(server.port);
    refused.send(get('/promotions/a'));
    await refused.waitClosed(5000);
    expect(await refused.next(100).catch((err: Error) => err.message)).to.equal(
      'connection closed; unparsed: ""',
    );
    for (const c of held) {
      c.send(get('/promotions/b'));
      expect((await c.next()).status).to.equal(200);
    }
    // Once one goes, a new connection is served.
    held[0].socket.destroy();
    await waitFor(
      () =>
        new Promise<true | undefined>((resolve) =>
          server.server.getConnections((_err, n) => resolve(n < 3 ? true : undefined)),
        ),
      5000,
      'the server to let the connection go',
    );
    const later = await RawConnection.open(server.port);
    later.send(get('/promotions/c'));
    expect((await later.next()).status).to.equal(200);
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
