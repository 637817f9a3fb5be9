/**
 * GET one byte range of a file over a plain HTTP/1.1 connection, handing the body to the caller chunk by chunk
 * from one reused buffer (net's `onread`). Not node:http, for two reasons measured on a replica under read load
 * (BENCHMARKS.md, "Swap"): node:http allocates a Buffer per socket read, and enough of a 42 MB pull's outlive a
 * scavenge that V8 runs several full marking steps on the event loop per swap; and its client objects go through
 * the same Node internals as the read path's server (OutgoingMessage, Readable, the parser callbacks), so each
 * swap deoptimized about a dozen of the server's hot functions, which then ran unoptimized until recompiled, on
 * the same core. The next chunk is read only once the caller's handling of the previous one has settled, so the
 * caller may use a chunk (hash it, write it) until then, and never after.
 *
 * It understands what the leader's file route answers: a 206 with Content-Length whose Content-Range starts at the
 * byte asked for. Any other status is a RangeRefused; a cut, a stall or a short answer is a TransferCut.
 *
 * Concurrency: each call owns its connection and buffer; calls are independent.
 */
import { connect, type Socket } from 'node:net';

/**
 * Bytes read from the socket at a time: one chunk handed to the caller. About 0.3 ms of hashing and copying for the
 * caller, so each step stays short; at 64 KiB a 42 MB pull under read load took four times as many turns (~1.5 s).
 */
const READ_BYTES = 256 * 1024;
/** The response head (status line and headers) must fit in this. */
const MAX_HEAD_BYTES = 16 * 1024;

/** A transfer that broke off (connection cut, stalled, ended early): worth resuming. */
export class TransferCut extends Error {}

/** The server answered with another status than 206 for the range (its status and Content-Range, if any). */
export class RangeRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface RangeGet {
  /** An http: URL (https goes through node:https). */
  readonly url: URL;
  /** Request headers besides Host, Range and Connection. */
  readonly headers: Readonly<Record<string, string>>;
  /** First byte wanted. */
  readonly start: number;
  /** One past the last byte wanted. */
  readonly end: number;
  /** A connection on which nothing arrives for this long is cut. */
  readonly idleMs: number;
}

/**
 * Fetches bytes [start, end) of `get.url`, calling `onChunk` with each piece of the body in order; resolves once the
 * whole answer has been handed over and every `onChunk` has settled. `onChunk` may return a promise: reading stops
 * until it settles (the chunk's memory is reused afterwards). Rejects with TransferCut, RangeRefused, or what
 * `onChunk` threw.
 */
export function getRange(get: RangeGet, onChunk: (chunk: Buffer) => void | Promise<void>): Promise<void> {
  for (const [name, value] of Object.entries(get.headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`header ${name} holds a line break`);
  }
  const scratch = Buffer.allocUnsafe(READ_BYTES);
  let head: Buffer | undefined = Buffer.alloc(0);
  let remaining = -1;
  let busy = false;
  /** Why the connection ended while the caller was busy with a chunk (reported once it is done). */
  let ended: string | undefined;
  let settled = false;
  let socket: Socket;

  return new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(err);
    };
    const succeed = () => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve();
    };
    /** Hands body bytes over; false pauses reading until the caller is done with them. */
    const body = (chunk: Buffer): boolean => {
      if (chunk.length > remaining) {
        fail(new TransferCut(`the answer holds more bytes than its Content-Length`));
        return false;
      }
      remaining -= chunk.length;
      let pending: void | Promise<void>;
      try {
        pending = onChunk(chunk);
      } catch (err) {
        fail(err as Error);
        return false;
      }
      if (pending === undefined) {
        if (remaining === 0) succeed();
        return true;
      }
      busy = true;
      pending.then(
        () => {
          busy = false;
          if (remaining === 0) succeed();
          else if (ended !== undefined) fail(new TransferCut(ended));
          else if (!settled) socket.resume();
        },
        (err: Error) => fail(err),
      );
      return false;
    };
    const onRead = (n: number, buf: Buffer): boolean => {
      if (settled) return false;
      if (head === undefined) return body(buf.subarray(0, n));
      // Still reading the response head: keep a copy (the buffer is reused), look for its end.
      head = Buffer.concat([head, buf.subarray(0, n)]);
      const at = head.indexOf('\r\n\r\n');
      if (at < 0) {
        if (head.length > MAX_HEAD_BYTES)
          fail(new TransferCut(`the answer's head is over ${MAX_HEAD_BYTES} bytes`));
        return true;
      }
      const text = head.toString('latin1', 0, at);
      const rest = head.subarray(at + 4);
      head = undefined;
      const parsed = parseRangeResponseHead(text, get.start, get.end);
      if (parsed instanceof Error) {
        fail(parsed);
        return false;
      }
      remaining = parsed;
      if (remaining === 0) {
        succeed();
        return false;
      }
      return rest.length === 0 ? true : body(rest);
    };

    const host = get.url.hostname.replace(/^\[(.*)\]$/, '$1');
    socket = connect({
      host,
      port: Number(get.url.port || 80),
      onread: { buffer: scratch, callback: onRead },
    });
    socket.setTimeout(get.idleMs, () => fail(new TransferCut(`no bytes for ${get.idleMs} ms`)));
    socket.once('error', (err) => fail(new TransferCut(err.message)));
    const early = (what: string) => {
      const why = `the ${what} with ${remaining < 0 ? 'no answer' : `${remaining} bytes still to come`}`;
      if (busy) ended ??= why;
      else fail(new TransferCut(why));
    };
    socket.once('end', () => early('answer ended'));
    socket.once('close', () => early('connection closed'));
    const lines = [
      `GET ${get.url.pathname}${get.url.search} HTTP/1.1`,
      `Host: ${get.url.host}`,
      ...Object.entries(get.headers).map(([k, v]) => `${k}: ${v}`),
      `Range: bytes=${get.start}-${get.end - 1}`,
      'Connection: close',
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

/** Why an answer with `status` and Content-Range `range` is not the range starting at `start`, if it is not. */
export function rangeRefusal(
  status: number,
  range: string | undefined,
  start: number,
): RangeRefused | undefined {
  if (status === 206 && range?.startsWith(`bytes ${start}-`) === true) return undefined;
  return new RangeRefused(status, `answered ${status}${range === undefined ? '' : ` (${range})`}`);
}

/**
 * Parses the head (status line and headers) of the leader's answer to a Range request for bytes [start, end): the
 * body length of a 206 answer for that range, or the error that refuses the answer.
 */
function parseRangeResponseHead(text: string, start: number, end: number): number | Error {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (m === null) return new TransferCut(`not an HTTP answer: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const status = Number(m[1]);
  const refused = rangeRefusal(status, headers.get('content-range'), start);
  if (refused !== undefined) return refused;
  const length = headers.get('content-length');
  if (headers.has('transfer-encoding') || length === undefined || !/^\d+$/.test(length)) {
    return new RangeRefused(status, 'answered 206 without a plain Content-Length');
  }
  // Fewer bytes than asked is a file that ends early (the caller finds out); more is an answer to another question.
  if (Number(length) > end - start)
    return new RangeRefused(status, `answered ${length} bytes for ${end - start}`);
  return Number(length);
}
