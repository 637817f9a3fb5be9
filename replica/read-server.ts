/**
 * The replica's fast path for reads: plain `GET /promotions/{id}` requests are parsed and answered straight from
 * the socket, in front of node:http. node:http's own per-request work (an IncomingMessage, a ServerResponse, header
 * objects and checks, several stream callbacks) costs a bare server most of its CPU per request; here a read costs
 * one string scan of its head, the lookup and one socket write (scripts/bench/get.ts measures both; decision 004).
 *
 * What the fast path accepts, and nothing else: a request line `GET /promotions/<target> HTTP/1.1` whose target is
 * visible ASCII, header lines `name: value` of printable ASCII (tabs allowed in values) with no whitespace before
 * the colon, a `Host` header, a head of at most MAX_HEADER_BYTES, and none of `Content-Length`,
 * `Transfer-Encoding`, `Upgrade`, `Expect` or `Connection: upgrade`. The first request that does not fit (another
 * route, another method, HTTP/1.0, a body, a malformed or oversized head, leading blank lines ...) is handed to
 * node:http with every byte not yet answered, through node's own connection listener, and node:http (Koa, and the
 * node:http read handler) keeps that connection from then on. So a malformed request always meets node's parser,
 * never a lenient one of ours.
 *
 * A connection answers its requests in order: memory-mode reads are answered within the data event that brought
 * them (pipelined ones in one write); a read that waits (disk mode, the overload queue) stops the connection from
 * reading until it is answered. A client that does not read its answers stops being read once the socket buffers
 * fill. Timeouts follow node:http's: an unfinished head is answered 408 after HEADERS_TIMEOUT_MS, a connection
 * idle between requests is closed after KEEP_ALIVE_TIMEOUT_MS, and one stuck mid-answer after IDLE_TIMEOUT_MS.
 *
 * Concurrency: everything runs on the event loop; one FastReads per server.
 */
import { type Server, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FrontConnections, ServerLimits } from '../common/http.js';
import type { LiveVersion } from './live-index.js';
import { READ_PREFIX, type ReadPath, type ReadReply, readAnswerHeaders } from './read-path.js';

const REQUEST_START = `GET ${READ_PREFIX}`;
const REQUEST_END = ' HTTP/1.1';
const CLOSE_LINE = 'connection: close\r\n';
const TIMEOUT_ANSWER = 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';

type NodeConnectionListener = (this: Server, socket: Socket) => void;

/** What `parseHead` found in the request it accepted (module fields: set and read synchronously). */
let headUrl = '';
let headIfNoneMatch: string | undefined;
let headRequestId: string | undefined;
let headClose = false;

/** tchar of RFC 9110 §5.6.2: the characters of a header name. */
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TOKEN[c.charCodeAt(0)] = 1;
}

/**
 * Whether the unfinished head `s` can still become a request the fast path takes: it starts like one,
 * and holds only printable ASCII, tabs and CRLF pairs. Anything else goes to node:http at once rather than waiting
 * for a CRLF CRLF that may never come (a client that ends lines with LF alone, say).
 */
function mayBecomeRead(s: string): boolean {
  if (!REQUEST_START.startsWith(s.slice(0, REQUEST_START.length))) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x0d) {
      if (i + 1 < s.length && s.charCodeAt(i + 1) !== 0x0a) return false;
    } else if (c === 0x0a) {
      if (s.charCodeAt(i - 1) !== 0x0d) return false;
    } else if ((c < 0x20 && c !== 0x09) || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

/** Optional whitespace around a header value (RFC 9110 §5.5). */
function trimOws(s: string, from: number, to: number): string {
  while (from < to && (s.charCodeAt(from) === 0x20 || s.charCodeAt(from) === 0x09)) from++;
  while (to > from && (s.charCodeAt(to - 1) === 0x20 || s.charCodeAt(to - 1) === 0x09)) to--;
  return s.slice(from, to);
}

/**
 * Whether the head in s[from, end) (`end` is where its closing CRLF CRLF starts) is a read the fast path takes;
 * when it is, its URL and the headers the read needs are left in the module fields above.
 */
export function parseHead(s: string, from: number, end: number): boolean {
  const lineEnd = s.indexOf('\r\n', from);
  const urlEnd = lineEnd - REQUEST_END.length;
  if (!s.startsWith(REQUEST_START, from) || urlEnd < from + REQUEST_START.length) return false;
  if (!s.startsWith(REQUEST_END, urlEnd)) return false;
  for (let i = from + 4; i < urlEnd; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  headUrl = s.slice(from + 4, urlEnd);
  headIfNoneMatch = undefined;
  headRequestId = undefined;
  headClose = false;
  let host = false;
  for (let pos = lineEnd + 2; pos < end + 2; ) {
    const e = s.indexOf('\r\n', pos);
    let colon = -1;
    for (let i = pos; i < e; i++) {
      const c = s.charCodeAt(i);
      if (colon === -1) {
        if (c === 0x3a) colon = i;
        else if (c >= 0x80 || TOKEN[c] === 0) return false;
      } else if ((c < 0x20 && c !== 0x09) || c >= 0x7f) {
        return false;
      }
    }
    if (colon <= pos) return false;
    switch (colon - pos) {
      case 4:
        if (s.slice(pos, colon).toLowerCase() === 'host') host = true;
        break;
      case 6: // expect
      case 7: // upgrade
      case 14: // content-length
      case 17: {
        // transfer-encoding
        const name = s.slice(pos, colon).toLowerCase();
        if (
          name === 'expect' ||
          name === 'upgrade' ||
          name === 'content-length' ||
          name === 'transfer-encoding'
        )
          return false;
        break;
      }
      case 10:
        if (s.slice(pos, colon).toLowerCase() === 'connection') {
          const v = s.slice(colon + 1, e).toLowerCase();
          if (v.includes('upgrade')) return false;
          if (v.includes('close')) headClose = true;
        }
        break;
      // The first of repeated headers counts, as in the node:http read handler.
      case 12:
        if (headRequestId === undefined && s.slice(pos, colon).toLowerCase() === 'x-request-id')
          headRequestId = trimOws(s, colon + 1, e).slice(0, 128);
        break;
      case 13:
        if (headIfNoneMatch === undefined && s.slice(pos, colon).toLowerCase() === 'if-none-match')
          headIfNoneMatch = trimOws(s, colon + 1, e);
        break;
    }
    pos = e + 2;
  }
  return host;
}

const statusLines = new Map<number, string>();
function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
    statusLines.set(status, line);
  }
  return line;
}

/** Status line and headers of an answer, without the date and connection lines. */
function headerBlock(
  status: number,
  body: string,
  live: LiveVersion | undefined,
  rid: string | undefined,
): string {
  const h = readAnswerHeaders(status, body, live, rid);
  let block = statusLine(status);
  for (let i = 0; i < h.length; i += 2) block += `${h[i]}: ${h[i + 1]}\r\n`;
  return block;
}

class FastConnection {
  /** Bytes received and not yet answered, as latin1 (one char per byte, so they convert back exactly). */
  private pending = '';
  /** When the unfinished head in `pending` started arriving (ms), or 0. */
  private headSince = 0;
  /** When the connection last made progress (ms): bytes in, a write drained, an answer out. */
  private lastActive = Date.now();
  /** A read of this connection is waiting for its answer (disk mode, or queued). */
  private busy = false;
  /** The socket's buffer is full: reading stops until it drains. */
  private waitingDrain = false;
  /** The connection ends after the answers written so far (Connection: close, or the server is closing). */
  private closing = false;
  private closeAfterReply = false;
  private inAdvance = false;
  private stopped = false;
  private out = '';
  private readonly reply: ReadReply;

  constructor(
    readonly socket: Socket,
    private readonly owner: FastReads,
  ) {
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    this.reply = (status, body, live, rid) => {
      const close = this.closeAfterReply || this.owner.draining;
      this.out += this.owner.render(status, body, live, rid, close);
      this.busy = false;
      if (close) this.closing = true;
      if (!this.inAdvance) {
        // An answer that arrived later (disk mode, the queue): send it, then go on with what is buffered.
        this.lastActive = Date.now();
        this.advance();
      }
    };
  }

  /** Nothing in progress: no read waiting, no unfinished head, every answer handed to the kernel. */
  get idle(): boolean {
    return !this.busy && this.pending === '' && this.socket.writableLength === 0;
  }

  private readonly onData = (chunk: Buffer) => {
    if (this.closing) return;
    this.lastActive = Date.now();
    const text = chunk.toString('latin1');
    this.pending = this.pending === '' ? text : this.pending + text;
    this.advance();
  };

  private readonly onDrain = () => {
    this.waitingDrain = false;
    this.lastActive = Date.now();
    this.advance();
  };

  private readonly onError = () => {
    // A client that went away; 'close' follows.
    this.socket.destroy();
  };

  private readonly onClose = () => {
    this.owner.connections.delete(this);
  };

  /** Answers every complete request buffered, in order, until one has to wait or does not fit the fast path. */
  private advance(): void {
    const s = this.pending;
    const limit = this.owner.limits.maxHeaderBytes;
    let from = 0;
    this.inAdvance = true;
    while (!this.busy && !this.closing) {
      const end = s.indexOf('\r\n\r\n', from);
      if (end === -1) break;
      if (end + 4 - from > limit || !parseHead(s, from, end)) {
        this.inAdvance = false;
        this.handOff(s.slice(from));
        return;
      }
      from = end + 4;
      this.closeAfterReply = headClose;
      this.busy = true;
      this.owner.reads.read(headUrl, headIfNoneMatch, headRequestId, this.reply);
    }
    this.inAdvance = false;
    if (from > 0) {
      this.pending = s.slice(from);
      this.headSince = 0;
    }
    if (
      !this.busy &&
      !this.closing &&
      this.pending !== '' &&
      (this.pending.length > limit || !mayBecomeRead(this.pending))
    ) {
      // A head larger than the limit (node:http answers 431), or one that is not going to be a plain read.
      this.handOff(this.pending);
      return;
    }
    if (this.pending !== '' && !this.busy && this.headSince === 0) this.headSince = Date.now();
    this.flush();
    if (this.closing) {
      this.socket.end();
      return;
    }
    // A waiting read, or answers the client does not take, stop the reading: requests cannot pile up.
    const stop = this.busy || this.waitingDrain;
    if (stop !== this.stopped) {
      this.stopped = stop;
      if (stop) this.socket.pause();
      else this.socket.resume();
    }
  }

  private flush(): void {
    if (this.out === '' || this.socket.destroyed) {
      this.out = '';
      return;
    }
    if (!this.socket.write(this.out)) this.waitingDrain = true;
    this.out = '';
  }

  /** Gives the connection to node:http from the first byte not yet answered; node:http keeps it from now on. */
  private handOff(rest: string): void {
    this.flush();
    const socket = this.socket;
    this.owner.connections.delete(this);
    socket.off('data', this.onData);
    socket.off('drain', this.onDrain);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
    socket.pause();
    if (rest !== '') socket.unshift(Buffer.from(rest, 'latin1'));
    this.owner.handOff(socket);
    socket.resume();
  }

  /** Closes the connection if it is idle; a busy one ends after its current answer (the owner is draining). */
  closeIfIdle(): void {
    if (this.idle) this.socket.destroy();
  }

  /** HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS and IDLE_TIMEOUT_MS, checked by the owner's sweep. */
  checkTimeouts(now: number): void {
    const { headersTimeoutMs, idleTimeoutMs } = this.owner.limits;
    if (this.headSince !== 0 && now - this.headSince > headersTimeoutMs) {
      this.closing = true;
      this.socket.end(TIMEOUT_ANSWER, () => this.socket.destroy());
    } else if (this.idle) {
      if (now - this.lastActive > this.owner.limits.keepAliveTimeoutMs) this.socket.destroy();
    } else if (now - this.lastActive > idleTimeoutMs) {
      this.socket.destroy();
    }
  }
}

class FastReads implements FrontConnections {
  readonly connections = new Set<FastConnection>();
  draining = false;
  private dateSecond = -1;
  private dateLine = '';
  /** 200 answers' status line and headers, by body length, for one version at a time. */
  private okOf: LiveVersion | undefined;
  private okBlocks: string[] = [];
  private readonly sweep: NodeJS.Timeout;
  /** As node:http says it: the timeout in whole seconds. */
  private readonly keepAliveLines: string;

  constructor(
    private readonly server: Server,
    private readonly nodeListener: NodeConnectionListener,
    readonly reads: ReadPath,
    readonly limits: ServerLimits,
  ) {
    const seconds = Math.floor(limits.keepAliveTimeoutMs / 1000);
    this.keepAliveLines = `connection: keep-alive\r\n${seconds > 0 ? `keep-alive: timeout=${seconds}\r\n` : ''}`;
    const shortest = Math.min(limits.headersTimeoutMs, limits.keepAliveTimeoutMs);
    const every = Math.max(10, Math.min(1000, Math.floor(shortest / 2)));
    this.sweep = setInterval(() => {
      const now = Date.now();
      for (const c of this.connections) c.checkTimeouts(now);
    }, every);
    this.sweep.unref();
    server.once('close', () => clearInterval(this.sweep));
  }

  accept(socket: Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.connections.add(new FastConnection(socket, this));
  }

  handOff(socket: Socket): void {
    this.nodeListener.call(this.server, socket);
  }

  render(
    status: number,
    body: string,
    live: LiveVersion | undefined,
    rid: string | undefined,
    close: boolean,
  ): string {
    let head: string;
    if (status === 200 && live !== undefined) {
      if (live !== this.okOf) {
        this.okOf = live;
        this.okBlocks = [];
      }
      // Bodies are ASCII (ids are printable ASCII), so length is the byte count the block's content-length says.
      head = this.okBlocks[body.length] ?? headerBlock(200, body, live, undefined);
      this.okBlocks[body.length] = head;
      if (rid !== undefined) head += `x-request-id: ${rid}\r\n`;
    } else {
      head = headerBlock(status, body, live, rid);
    }
    return `${head}${this.date()}${close ? CLOSE_LINE : this.keepAliveLines}\r\n${body}`;
  }

  /** The Date header line, made once a second. */
  private date(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.dateLine = `date: ${new Date(now).toUTCString()}\r\n`;
    }
    return this.dateLine;
  }

  closeIdle(): void {
    this.draining = true;
    for (const c of this.connections) c.closeIfIdle();
  }

  closeAll(): void {
    this.draining = true;
    for (const c of this.connections) c.socket.destroy();
  }
}

/**
 * Puts the fast path in front of `server` (a node:http server not yet listening): every new connection starts on
 * it, and node's own connection listener takes a connection over when a request does not fit. Returns the handle
 * that `listen`'s close() uses to end these connections too.
 */
export function installFastReads(server: Server, reads: ReadPath, limits: ServerLimits): FrontConnections {
  const listeners = server.listeners('connection');
  if (listeners.length !== 1) {
    throw new Error(`expected node:http's one connection listener, found ${listeners.length}`);
  }
  const nodeListener = listeners[0] as NodeConnectionListener;
  server.off('connection', nodeListener);
  const fast = new FastReads(server, nodeListener, reads, limits);
  server.on('connection', (socket: Socket) => fast.accept(socket));
  return fast;
}
