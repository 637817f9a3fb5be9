/**
 * The replica's fast path for reads: plain `GET /promotions/{id}` requests are parsed and answered straight from
 * the socket, in front of node:http. node:http's own per-request work (an IncomingMessage, a ServerResponse, header
 * objects and checks, several stream callbacks) costs a bare server most of its CPU per request; here a read costs
 * one string scan of its head, the lookup and one socket write (scripts/bench/get.ts measures both; decision 004).
 *
 * What the fast path accepts, and nothing else: a request line `GET` or `HEAD /promotions/<target> HTTP/1.1` (a
 * HEAD answer is the GET answer without its body) whose target is
 * visible ASCII, header lines `name: value` of printable ASCII (tabs allowed in values) with no whitespace before
 * the colon, a `Host` header, a head of at most MAX_HEADER_BYTES that arrives in at most HEAD_PIECES pieces, a
 * `Connection` value that is a clean token list without `upgrade`, and none of `Content-Length`,
 * `Transfer-Encoding`, `Upgrade`, `Expect` or `Proxy-Connection`. The first request that does not fit (another
 * route, another method, HTTP/1.0, a body, a malformed, oversized or trickling head, leading blank lines ...) is
 * handed to node:http with every byte not yet answered, through node's own connection listener, and node:http
 * (Koa, and the node:http read handler) keeps that connection from then on. So a malformed request always meets
 * node's parser, never a lenient one of ours. Which heads fit is `request-head.ts`; an unfinished head is scanned
 * incrementally (`head-scanner.ts`):
 * each byte once, however many pieces it comes in.
 *
 * A connection answers its requests in order: memory-mode reads are answered within the data event that brought
 * them (pipelined ones in one write); a read that waits (disk mode, the overload queue) holds what arrives after
 * it: the connection stops reading at the first such bytes (a pipelining client) until the answer is out. A client that does not read its answers stops being read once the socket buffers
 * fill. Timeouts follow node:http's: an unfinished head is answered 408 after HEADERS_TIMEOUT_MS (counted from its
 * first byte, also when node:http takes it over midway), a connection idle between requests is closed a second after
 * KEEP_ALIVE_TIMEOUT_MS (node:http's margin), and one stuck mid-answer after IDLE_TIMEOUT_MS. The end of the client's input (FIN) is
 * handled as node:http handles it: the connection closes once the answers are sent, and a head cut short by it is
 * answered node:http's 400 at once. Where this differs from node:http alone, decision 004 says exactly how.
 *
 * Concurrency: everything runs on the event loop; one FastReads per server.
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FrontConnections, ServerLimits } from '../common/http.js';
import { HEAD_NOT_READ, HeadScanner, scanWork } from './head-scanner.js';
import type { LiveVersion } from './live-index.js';
import type { ReadPath, ReadReply } from './read-path.js';
import { GET_START, HEAD_START, parseReadHead, readHead } from './request-head.js';
import { type ClockTimer, type ServerClock, systemClock } from './server-clock.js';

const CLOSE_LINE = 'connection: close\r\n';
/** What node:http answers to a head not received within HEADERS_TIMEOUT_MS, byte for byte. */
const TIMEOUT_ANSWER = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';
/** What node:http answers to a head cut short by the end of input (llhttp: invalid EOF state), byte for byte. */
const EOF_ANSWER = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';

/**
 * Pieces (data events) an unfinished head may arrive in before node:http takes the connection. A client's head
 * comes in one piece, or two when a pipelined burst splits it; one that trickles in goes to node:http, whose
 * parser reads straight from the socket in C++ and so costs less per piece than a JavaScript 'data' event does.
 * The bytes scanned so far are not scanned again (HeadScanner), so a head costs linear work either way.
 */
const HEAD_PIECES = 4;

/**
 * How long past KEEP_ALIVE_TIMEOUT_MS an idle connection stays open: node:http (Node 20.19 on) closes it one second
 * after the timeout its answers advertise, so that a client that reuses it right at the advertised limit does not
 * meet a reset; the fast path keeps the same margin.
 */
const KEEP_ALIVE_MARGIN_MS = 1000;

type NodeConnectionListener = (this: Server, socket: Socket) => void;

const statusLines = new Map<number, string>();
function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
    statusLines.set(status, line);
  }
  return line;
}
const NOT_MODIFIED_LINE = statusLine(304);

/** Header lines of a flat name/value list. */
function headerLines(h: readonly string[]): string {
  let block = '';
  for (let i = 0; i < h.length; i += 2) block += `${h[i]}: ${h[i + 1]}\r\n`;
  return block;
}

class FastConnection {
  /**
   * An unfinished head at the end of what arrived, in the pieces it came in (latin1: one char per byte, so they
   * convert back exactly). The pieces are joined once, when the head is complete: joining them at each piece
   * would copy the head again for every byte of a head that trickles in.
   */
  private head: string[] = [];
  private headLength = 0;
  private readonly scanner = new HeadScanner([GET_START, HEAD_START]);
  /** When the unfinished head started arriving (ms), or 0. */
  private headSince = 0;
  /** When the connection last made progress (ms, the owner's clock): bytes in, a write drained, an answer out. */
  private lastActive: number;
  /** A read of this connection is waiting for its answer (disk mode, or queued). */
  private busy = false;
  /** The socket's buffer is full: reading stops until it drains. */
  private waitingDrain = false;
  /** The connection ends after the answers written so far (Connection: close, or the server is closing). */
  private closing = false;
  private closeAfterReply = false;
  /** The request being answered is a HEAD: its answer has no body. */
  private replyHead = false;
  private inAdvance = false;
  private stopped = false;
  /** The client has ended its side (FIN): no byte will come after those received. */
  private ended = false;
  private out = '';
  private readonly reply: ReadReply;

  constructor(
    readonly socket: Socket,
    private readonly owner: FastReads,
  ) {
    this.lastActive = owner.now();
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    this.reply = (status, body, live, rid, etag) => {
      const close = this.closeAfterReply || this.owner.draining;
      this.out += this.owner.render(status, body, live, rid, etag, close, this.replyHead);
      this.busy = false;
      if (close) this.closing = true;
      if (!this.inAdvance) {
        // An answer that arrived later (disk mode, the queue): send it; the socket resumes and delivers what
        // `advance` put back while the read waited.
        this.lastActive = this.owner.now();
        this.settle();
      }
    };
  }

  /** Nothing in progress: no read waiting, no unfinished head, every answer handed to the kernel. */
  get idle(): boolean {
    return !this.busy && this.headLength === 0 && this.socket.writableLength === 0;
  }

  private readonly onData = (chunk: Buffer) => {
    if (this.closing) return;
    if (this.busy) {
      // Bytes that came while a read waits (a pipelining client): stop reading now and keep them for when the
      // answer is out. A client that waits for each answer never gets here, so its reads cost no pause and resume.
      this.pauseReading();
      this.socket.unshift(chunk);
      return;
    }
    this.lastActive = this.owner.now();
    const text = chunk.toString('latin1');
    if (this.headLength === 0) {
      this.advance(text);
      return;
    }
    // The rest of an unfinished head: scan only the new bytes, and check the size before keeping them.
    const end = this.scanner.feed(text);
    this.head.push(text);
    this.headLength += text.length;
    if (
      end === HEAD_NOT_READ ||
      this.scanner.length > this.owner.limits.maxHeaderBytes ||
      (end < 0 && this.head.length >= HEAD_PIECES)
    ) {
      // One that is not going to be a plain read, a head larger than the limit (node:http answers 431), or one
      // that trickles in (HEAD_PIECES). Its HEADERS_TIMEOUT_MS still counts from its first byte.
      const since = this.headSince;
      this.handOff(this.takeHead(), since);
    } else if (end >= 0) {
      this.advance(this.takeHead());
    }
  };

  private readonly onEnd = () => {
    this.ended = true;
    // A read still waiting finishes first (its answer then ends the connection).
    if (!this.busy) this.settle();
  };

  private readonly onDrain = () => {
    this.waitingDrain = false;
    this.lastActive = this.owner.now();
    this.settle();
  };

  private readonly onError = () => {
    // A client that went away; 'close' follows.
    this.socket.destroy();
  };

  private readonly onClose = () => {
    this.owner.connections.delete(this);
  };

  /** The unfinished head's bytes as one string, and no unfinished head any more. */
  private takeHead(): string {
    const s = this.head.length === 1 ? this.head[0] : this.head.join('');
    this.head = [];
    this.headLength = 0;
    this.headSince = 0;
    return s;
  }

  /**
   * Answers every complete request in `s` (bytes from a request's first byte on), in order, until one has to wait
   * or does not fit the fast path; keeps an unfinished head at the end for the next bytes.
   */
  private advance(s: string): void {
    const limit = this.owner.limits.maxHeaderBytes;
    let from = 0;
    this.inAdvance = true;
    while (!this.busy && !this.closing) {
      const end = s.indexOf('\r\n\r\n', from);
      scanWork.chars += (end === -1 ? s.length : end + 4) - from;
      if (end === -1) break;
      if (end + 4 - from > limit || !parseReadHead(s, from, end)) {
        this.inAdvance = false;
        this.handOff(s.slice(from));
        return;
      }
      from = end + 4;
      this.closeAfterReply = readHead.close;
      this.replyHead = readHead.method === 'HEAD';
      this.busy = true;
      this.owner.reads.read(
        readHead.method,
        readHead.url,
        readHead.ifNoneMatch,
        readHead.requestId,
        this.reply,
      );
    }
    this.inAdvance = false;
    if (from < s.length && !this.closing) {
      const rest = from === 0 ? s : s.slice(from);
      if (this.busy) {
        // A read waits (disk mode, the queue): the bytes after it go back to the socket, which stays paused
        // until the answer (paused first: a flowing socket would hand them straight back). Held there, they also
        // keep 'end' from being reported before they are read.
        this.pauseReading();
        this.socket.unshift(Buffer.from(rest, 'latin1'));
      } else {
        this.scanner.reset();
        if (this.scanner.feed(rest) === HEAD_NOT_READ || rest.length > limit) {
          // A head larger than the limit (node:http answers 431), or one that is not going to be a plain read.
          this.handOff(rest);
          return;
        }
        this.head.push(rest);
        this.headLength = rest.length;
        this.headSince = this.owner.now();
      }
    }
    this.settle();
  }

  /**
   * After the input so far is dealt with: sends the answers, ends the connection if it is closing or the client
   * has ended its side, and stops or restarts reading.
   */
  private settle(): void {
    if (this.ended && !this.busy && !this.closing) {
      // As node:http does at the end of input: nothing more can come, so close now rather than at the keep-alive
      // timeout; a head cut short by it is a bad request (node:http's 400, at once, not a 408 later).
      if (this.headLength > 0) {
        this.out += EOF_ANSWER;
        this.takeHead();
      }
      this.closing = true;
    }
    this.flush();
    if (this.closing) {
      this.socket.end();
      return;
    }
    // Answers the client does not take stop the reading: requests cannot pile up. (A waiting read stops it only
    // once more bytes come: onData.)
    const stop = this.waitingDrain || (this.busy && this.stopped);
    if (stop !== this.stopped) {
      this.stopped = stop;
      if (stop) this.socket.pause();
      else this.socket.resume();
    }
  }

  private pauseReading(): void {
    this.stopped = true;
    this.socket.pause();
  }

  private flush(): void {
    if (this.out === '' || this.socket.destroyed) {
      this.out = '';
      return;
    }
    if (!this.socket.write(this.out)) this.waitingDrain = true;
    this.out = '';
  }

  /**
   * Gives the connection to node:http from the first byte not yet answered; node:http keeps it from now on.
   * `headSince`: when the unfinished head in `rest` started arriving, if it did before this piece.
   */
  private handOff(rest: string, headSince = 0): void {
    this.flush();
    const socket = this.socket;
    this.owner.connections.delete(this);
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('drain', this.onDrain);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
    socket.pause();
    if (rest !== '') socket.unshift(Buffer.from(rest, 'latin1'));
    this.owner.handOff(socket, headSince);
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
      this.headSince = 0;
      this.socket.end(TIMEOUT_ANSWER, () => this.socket.destroy());
    } else if (this.idle) {
      if (now - this.lastActive > this.owner.limits.keepAliveTimeoutMs + KEEP_ALIVE_MARGIN_MS)
        this.socket.destroy();
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
  /** 200 answers' status line and first headers, by body length. */
  private readonly okBlocks: string[] = [];
  /** The header lines after the ETag of a 200 answer (Cache-Control, X-Snapshot-Version), for one version. */
  private okOf: LiveVersion | undefined;
  private okTail = '';
  private readonly sweep: ClockTimer;
  /** Connections handed to node:http in the middle of a head, and the timer of that head's deadline. */
  private readonly headDeadlines = new Map<Socket, ClockTimer>();
  /** The timeouts' clock (ms): `clock.now`, held here so that a connection reads it in one step. */
  readonly now: () => number;
  /** As node:http says it: the timeout in whole seconds. */
  private readonly keepAliveLines: string;

  constructor(
    private readonly server: Server,
    private readonly nodeListener: NodeConnectionListener,
    readonly reads: ReadPath,
    readonly limits: ServerLimits,
    private readonly clock: ServerClock,
  ) {
    this.now = clock.now;
    const seconds = Math.floor(limits.keepAliveTimeoutMs / 1000);
    this.keepAliveLines = `connection: keep-alive\r\n${seconds > 0 ? `keep-alive: timeout=${seconds}\r\n` : ''}`;
    const shortest = Math.min(limits.headersTimeoutMs, limits.keepAliveTimeoutMs);
    const every = Math.max(10, Math.min(1000, Math.floor(shortest / 2)));
    this.sweep = clock.every(every, () => {
      const now = this.now();
      for (const c of this.connections) c.checkTimeouts(now);
    });
    server.once('close', () => this.sweep.cancel());
    // node:http has a handed-over head complete: from now on its own timers apply.
    server.on('request', (req: IncomingMessage) => this.clearHeadDeadline(req.socket));
  }

  accept(socket: Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.connections.add(new FastConnection(socket, this));
  }

  handOff(socket: Socket, headSince: number): void {
    this.nodeListener.call(this.server, socket);
    if (headSince !== 0) this.keepHeadDeadline(socket, headSince);
  }

  /**
   * node:http starts its headers timer for a connection when it gets it, so a head that began arriving on the
   * fast path would get HEADERS_TIMEOUT_MS again from the hand-over (nearly twice the limit in all). This keeps
   * the deadline of the head's first byte: unless node:http has the complete head by then (its 'request'), the
   * connection gets node:http's own 408 and is closed once more than HEADERS_TIMEOUT_MS has passed since that
   * byte, as the fast path's own sweep and node:http count it. A timer that fires early by the clock (the event
   * loop's cached time lags) waits for the rest.
   */
  private keepHeadDeadline(socket: Socket, headSince: number): void {
    const due = headSince + this.limits.headersTimeoutMs + 1;
    const check = () => {
      const left = due - this.now();
      if (left > 0) {
        this.headDeadlines.set(socket, this.clock.after(left, check));
        return;
      }
      this.headDeadlines.delete(socket);
      if (socket.destroyed) return;
      socket.end(TIMEOUT_ANSWER, () => socket.destroy());
    };
    this.headDeadlines.set(socket, this.clock.after(Math.max(0, due - this.now()), check));
    socket.once('close', () => this.clearHeadDeadline(socket));
  }

  private clearHeadDeadline(socket: Socket): void {
    const timer = this.headDeadlines.get(socket);
    if (timer === undefined) return;
    timer.cancel();
    this.headDeadlines.delete(socket);
  }

  /** An answer's bytes; `head`: the request was a HEAD, so the body is left out (its Content-Length stays). */
  render(
    status: number,
    body: string,
    live: LiveVersion | undefined,
    rid: string | undefined,
    etag: string | undefined,
    close: boolean,
    head: boolean,
  ): string {
    let block: string;
    if ((status === 200 || status === 304) && live !== undefined && etag !== undefined) {
      if (live !== this.okOf) {
        this.okOf = live;
        this.okTail = headerLines(this.reads.answerHeaders(200, '', live, undefined, undefined).slice(4));
      }
      let first: string;
      if (status === 304) {
        // A 304 has the 200's headers but those about its body (RFC 9110 §15.4.5): nothing to vary by length.
        first = NOT_MODIFIED_LINE;
      } else {
        // Bodies are ASCII (ids are printable ASCII), so length is the byte count the block's content-length says.
        first = this.okBlocks[body.length];
        if (first === undefined) {
          first = `${statusLine(200)}content-type: application/json\r\ncontent-length: ${body.length}\r\n`;
          this.okBlocks[body.length] = first;
        }
      }
      block = `${first}etag: ${etag}\r\n${this.okTail}`;
      if (rid !== undefined) block += `x-request-id: ${rid}\r\n`;
    } else {
      block = statusLine(status) + headerLines(this.reads.answerHeaders(status, body, live, rid, etag));
    }
    return `${block}${this.date()}${close ? CLOSE_LINE : this.keepAliveLines}\r\n${head ? '' : body}`;
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
 * that `listen`'s close() uses to end these connections too. `clock`: what the timeouts are timed with (tests move
 * their own).
 */
export function installFastReads(
  server: Server,
  reads: ReadPath,
  limits: ServerLimits,
  clock: ServerClock = systemClock,
): FrontConnections {
  const listeners = server.listeners('connection');
  if (listeners.length !== 1) {
    throw new Error(`expected node:http's one connection listener, found ${listeners.length}`);
  }
  const nodeListener = listeners[0] as NodeConnectionListener;
  server.off('connection', nodeListener);
  const fast = new FastReads(server, nodeListener, reads, limits, clock);
  server.on('connection', (socket: Socket) => fast.accept(socket));
  return fast;
}
