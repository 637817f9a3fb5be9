/**
 * The request heads the read fast path (read-server.ts) takes, and what it needs of them: `parseReadHead` checks a
 * complete head against the fast path's subset of HTTP/1.1 (a `GET` or `HEAD /promotions/<target> HTTP/1.1`
 * request line with a visible-ASCII target, `name: value` header lines with token names and printable values, a
 * `Host`, a clean `Connection` token list without `upgrade`, and none of `Content-Length`, `Transfer-Encoding`,
 * `Upgrade`, `Expect` or `Proxy-Connection`) and reads the method, target, `If-None-Match`, `X-Request-Id` and
 * whether the connection closes after the answer. Everything else is refused, and the fast path hands the request
 * to node:http: what this accepts is a strict subset of what llhttp accepts (read-server.test.ts checks it against
 * node:http on tables of odd heads and on random ones).
 *
 * Pure string scanning; it allocates only the target, the values it keeps and the lowercased names it compares.
 *
 * Concurrency: the result is left in `readHead`, a module-level record overwritten by each call: read it in the same
 * synchronous turn, before the next call (the fast path does). Saves an object per request on the hot path.
 */
import { READ_PREFIX, type ReadMethod } from './read-path.js';

/** The request-line starts the fast path takes (a head scanner looks for them too). */
export const GET_START = `GET ${READ_PREFIX}`;
export const HEAD_START = `HEAD ${READ_PREFIX}`;
const REQUEST_END = ' HTTP/1.1';

/** What the last `parseReadHead` that returned true found. */
export const readHead: {
  method: ReadMethod;
  url: string;
  ifNoneMatch: string | undefined;
  requestId: string | undefined;
  /** `Connection: close` (among its options): the connection ends after this answer. */
  close: boolean;
} = { method: 'GET', url: '', ifNoneMatch: undefined, requestId: undefined, close: false };

/** tchar of RFC 9110 §5.6.2: the characters of a header name. */
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TOKEN[c.charCodeAt(0)] = 1;
}

export const CONNECTION_KEEP = 0;
export const CONNECTION_CLOSE = 1;
export const CONNECTION_OTHER = 2;

/**
 * What the `Connection` value in s[from, to) asks for, read as the token list it is (RFC 9110 §7.6.1: tokens
 * separated by commas, optional whitespace around them, case-insensitive): CONNECTION_CLOSE when one of the
 * options is `close`, CONNECTION_KEEP otherwise. CONNECTION_OTHER, which hands the request to node:http, for
 * `upgrade` and for any value that is not a clean list of tokens (an empty element, a character outside tchar),
 * so that the fast path never has to guess how llhttp reads an odd one.
 */
export function connectionOptions(s: string, from: number, to: number): number {
  let result = CONNECTION_KEEP;
  let i = from;
  for (;;) {
    while (i < to && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
    const start = i;
    while (i < to) {
      const c = s.charCodeAt(i);
      if (c >= 0x80 || TOKEN[c] === 0) break;
      i++;
    }
    if (i === start) return CONNECTION_OTHER;
    const option = s.slice(start, i).toLowerCase();
    if (option === 'close') result = CONNECTION_CLOSE;
    else if (option === 'upgrade') return CONNECTION_OTHER;
    while (i < to && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
    if (i === to) return result;
    if (s.charCodeAt(i) !== 0x2c) return CONNECTION_OTHER;
    i++;
  }
}

/** Optional whitespace around a header value (RFC 9110 §5.5). */
function trimOws(s: string, from: number, to: number): string {
  while (from < to && (s.charCodeAt(from) === 0x20 || s.charCodeAt(from) === 0x09)) from++;
  while (to > from && (s.charCodeAt(to - 1) === 0x20 || s.charCodeAt(to - 1) === 0x09)) to--;
  return s.slice(from, to);
}

/**
 * Whether the head in s[from, end) (`end` is where its closing CRLF CRLF starts) is a read the fast path takes;
 * when it is, what the read needs is left in `readHead`.
 */
export function parseReadHead(s: string, from: number, end: number): boolean {
  const lineEnd = s.indexOf('\r\n', from);
  const urlEnd = lineEnd - REQUEST_END.length;
  let urlStart: number;
  if (s.startsWith(GET_START, from)) {
    readHead.method = 'GET';
    urlStart = from + 4;
  } else if (s.startsWith(HEAD_START, from)) {
    readHead.method = 'HEAD';
    urlStart = from + 5;
  } else {
    return false;
  }
  if (urlEnd < urlStart + READ_PREFIX.length || !s.startsWith(REQUEST_END, urlEnd)) return false;
  for (let i = urlStart; i < urlEnd; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  readHead.url = s.slice(urlStart, urlEnd);
  readHead.ifNoneMatch = undefined;
  readHead.requestId = undefined;
  readHead.close = false;
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
          const c = connectionOptions(s, colon + 1, e);
          if (c === CONNECTION_OTHER) return false;
          if (c === CONNECTION_CLOSE) readHead.close = true;
        }
        break;
      case 16: // llhttp reads Proxy-Connection as it reads Connection: leave both the header and the request to it.
        if (s.slice(pos, colon).toLowerCase() === 'proxy-connection') return false;
        break;
      // The first of repeated headers counts, as in the node:http read handler.
      case 12:
        if (readHead.requestId === undefined && s.slice(pos, colon).toLowerCase() === 'x-request-id')
          readHead.requestId = trimOws(s, colon + 1, e).slice(0, 128);
        break;
      case 13:
        if (readHead.ifNoneMatch === undefined && s.slice(pos, colon).toLowerCase() === 'if-none-match')
          readHead.ifNoneMatch = trimOws(s, colon + 1, e);
        break;
    }
    pos = e + 2;
  }
  return host;
}
