/**
 * The incremental scan of an unfinished request head on the read fast path (`read-server.ts`). A head that
 * trickles in (a byte per packet, a slow or hostile client) is fed to the scanner piece by piece, and each byte is
 * looked at once: where the previous scan stopped is kept (the position, the byte before, how much of the closing
 * CRLF CRLF has been seen), so a head of n bytes costs O(n) whatever the number of pieces. Rescanning the whole
 * pending head at each piece, as the fast path once did, cost O(n²): 87.6 µs of CPU per byte of a dripped head
 * against node:http's 11.1.
 *
 * The scan answers, for the bytes so far, whether they can still become a head the fast path takes: they start
 * like one of `starts` (the request line's method and path prefix: their first characters differ), and hold only printable ASCII, tabs and CRLF pairs. Anything else (a bare LF or CR, a control byte,
 * obs-text) makes the connection go to node:http at once rather than wait for a CRLF CRLF that may never come.
 *
 * Concurrency: one scanner per connection, used on the event loop only.
 */

/** `feed` found no end of head yet, and the bytes so far can still become a read. */
export const HEAD_INCOMPLETE = -1;
/** `feed` found a byte that no head the fast path takes can hold: hand the connection to node:http. */
export const HEAD_NOT_READ = -2;

/**
 * Characters looked at by head scans since the process started (the scanner's, plus those the fast path searches
 * for CRLF CRLF in whole chunks): the work a test or benchmark can count, independent of timing.
 */
export const scanWork = { chars: 0 };

const CR = 0x0d;
const LF = 0x0a;

export class HeadScanner {
  /** Bytes of the current head scanned so far. */
  private scanned = 0;
  /** The last byte scanned, or 0. */
  private prev = 0;
  /** How much of CR LF CR LF ends the bytes scanned so far (0 to 3). */
  private matched = 0;
  /** The one of `starts` the current head began like (picked by its first byte). */
  private start = '';

  /**
   * `starts`: what a head the fast path takes begins with (`GET /promotions/`, `HEAD /promotions/`), each with a
   * first character of its own.
   */
  constructor(private readonly starts: readonly string[]) {}

  /** Forgets the current head: the next `feed` is the start of a new one. */
  reset(): void {
    this.scanned = 0;
    this.prev = 0;
    this.matched = 0;
    this.start = '';
  }

  /** Bytes of the current head fed so far (up to the end of head, once found). */
  get length(): number {
    return this.scanned;
  }

  /**
   * Scans `chunk`, the bytes that follow those fed so far (latin1, one char per byte). Returns the index in
   * `chunk` just past the head's closing CRLF CRLF, HEAD_INCOMPLETE, or HEAD_NOT_READ. Each byte is looked at once;
   * after an end or HEAD_NOT_READ, call `reset` before feeding a new head.
   */
  feed(chunk: string): number {
    if (this.scanned === 0 && chunk.length > 0) {
      const first = chunk.charCodeAt(0);
      this.start = this.starts.find((s) => s.charCodeAt(0) === first) ?? '\u0000';
    }
    const start = this.start;
    let prev = this.prev;
    let matched = this.matched;
    let pos = this.scanned;
    let result = HEAD_INCOMPLETE;
    let i = 0;
    for (; i < chunk.length; i++, pos++) {
      const c = chunk.charCodeAt(i);
      if (pos < start.length && c !== start.charCodeAt(pos)) {
        result = HEAD_NOT_READ;
        break;
      }
      if (prev === CR && c !== LF) {
        result = HEAD_NOT_READ;
        break;
      }
      if (c === LF) {
        if (prev !== CR) {
          result = HEAD_NOT_READ;
          break;
        }
        if (matched === 3) {
          // CR LF CR LF: the head ends here.
          i++;
          pos++;
          result = i;
          break;
        }
        matched = 2;
      } else if (c === CR) {
        matched = matched === 2 ? 3 : 1;
      } else if ((c < 0x20 && c !== 0x09) || c >= 0x7f) {
        result = HEAD_NOT_READ;
        break;
      } else {
        matched = 0;
      }
      prev = c;
    }
    scanWork.chars += result === HEAD_NOT_READ ? i + 1 : i;
    this.prev = prev;
    this.matched = matched;
    this.scanned = pos;
    return result;
  }
}
