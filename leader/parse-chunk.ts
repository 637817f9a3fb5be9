/**
 * The fast path of CSV ingest: a block of whole lines with no quote character, split with indexOf, validated, and
 * encoded straight into the builder's row format. It returns exactly what csv-parse would for the same bytes (a
 * property test proves it); blocks with a quote never come here (see csv-reader.ts).
 *
 * Pure and synchronous: it runs in parse workers, or inline when there are none.
 */
import { isAscii } from 'node:buffer';
import {
  type BadRow,
  isBadRow,
  isHeader,
  MAX_PRICE_LENGTH,
  parseFields,
  parseRow,
  plainExpirationBytes,
} from '../common/record.js';
import { encodeRow, encodeUuidRowBytes, MAX_ROW_BYTES } from './snapshot-build/row-encoding.js';
import { groupRows, type RowGroups } from './snapshot-build/row-groups.js';

/** What one block of lines gave. Line numbers in `badRows` count from 1 at the block's first line. */
export interface ParsedBlock {
  /**
   * Encoded rows, whole, grouped by the top bits of their hash (`groupRows`; input order inside a group) so the
   * builder routes them a group at a time. Own ArrayBuffer, so it can be transferred.
   */
  readonly encoded: Buffer;
  readonly groups: RowGroups;
  readonly rows: number;
  /** Lines in the block (a final line without a newline counts). */
  readonly lines: number;
  readonly badRowCount: number;
  /** The first bad rows, up to the report limit. */
  readonly badRows: BadRow[];
}

const NL = 0x0a;
const CR = 0x0d;
const COMMA = 0x2c;
const DASH = 0x2d;
const DOT = 0x2e;
/** Longest expiration the byte route reads (`YYYY-MM-DD HH:MM:SS +HHMM ZONE`, zone up to 10 letters), plus "\r". */
const MAX_PLAIN_DATE = 37;

/** Where `plainRow` found the fields of the line it accepted. */
let priceAt = 0;
let priceLen = 0;
let expiresAt = 0;

/**
 * The common line read straight from the bytes at `s` (block length `n`): a canonical-UUID id, a price already in
 * canonical form, an expiration of the plain shape, then "\n", "\r\n" or the block's end. Returns the index after
 * the line (with its newline), or -1 when the line has any other shape: it then takes the string route, which
 * gives the same answer for this shape (a property test compares both with csv-parse). Validates the price and the
 * date; the id's hex digits are checked by encodeUuidRowBytes.
 */
function plainRow(b: Uint8Array, s: number, n: number): number {
  if (s + 36 >= n || b[s + 36] !== COMMA) return -1;
  let i = s + 37;
  // The price: -?(0|[1-9][0-9]*)(.[0-9]+)?, which is its own canonical form (isPlainDecimal in record.ts).
  if (b[i] === DASH) i++;
  const intAt = i;
  while (i < n && b[i] >= 0x30 && b[i] <= 0x39) i++;
  const intLen = i - intAt;
  if (intLen === 0 || (intLen > 1 && b[intAt] === 0x30)) return -1;
  if (i < n && b[i] === DOT) {
    const fracAt = ++i;
    while (i < n && b[i] >= 0x30 && b[i] <= 0x39) i++;
    if (i === fracAt) return -1;
  }
  if (i >= n || b[i] !== COMMA || i - (s + 37) > MAX_PRICE_LENGTH) return -1;
  priceAt = s + 37;
  priceLen = i - priceAt;
  const dateAt = i + 1;
  const limit = Math.min(n, dateAt + MAX_PLAIN_DATE + 1);
  let e = dateAt;
  while (e < limit && b[e] !== NL) e++;
  let stop = e;
  let next: number;
  if (e < n && b[e] === NL) {
    next = e + 1;
    // csv-parse's record delimiters are "\r\n" and "\n": a "\r" goes only when a "\n" follows.
    if (stop > dateAt && b[stop - 1] === CR) stop--;
  } else if (e === n) {
    next = n;
  } else {
    return -1;
  }
  const t = plainExpirationBytes(b, dateAt, stop - dateAt);
  if (t < 0) return -1;
  expiresAt = t;
  return next;
}

/**
 * Parses `bytes` (UTF-8 text of whole lines; the last may lack its newline when the file does). `checkHeader`:
 * this block starts the file, so its first non-blank line may be the header. Bad rows past `reportLimit` are counted
 * only.
 */
export function parseBlock(bytes: Uint8Array, checkHeader: boolean, reportLimit: number): ParsedBlock {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let out = Buffer.allocUnsafeSlow(Math.max(4096, Math.ceil(bytes.byteLength * 0.9)));
  let pos = 0;
  let rows = 0;
  // Where each encoded row starts in `out`.
  let starts = new Uint32Array(Math.ceil(bytes.byteLength / 48) + 16);
  let lines = 0;
  let badRowCount = 0;
  const badRows: BadRow[] = [];
  let headerPending = checkHeader;
  let start = 0;
  const n = buf.length;
  while (start < n) {
    if (pos + MAX_ROW_BYTES > out.length) {
      const bigger = Buffer.allocUnsafeSlow(out.length * 2);
      out.copy(bigger, 0, 0, pos);
      out = bigger;
    }
    if (rows === starts.length) {
      const more = new Uint32Array(starts.length * 2);
      more.set(starts);
      starts = more;
    }
    const next = plainRow(buf, start, n);
    if (next !== -1) {
      const len = encodeUuidRowBytes(buf, start, priceAt, priceLen, expiresAt, out, pos);
      if (len !== -1) {
        starts[rows] = pos;
        pos += len;
        rows++;
        lines++;
        headerPending = false;
        start = next;
        continue;
      }
    }
    // The string route, one line at a time: any other shape, a bad row, the header, a blank line.
    let end = buf.indexOf(NL, start);
    const terminated = end !== -1;
    if (!terminated) end = n;
    const text = buf.toString(isAscii(buf.subarray(start, end)) ? 'latin1' : 'utf8', start, end);
    start = end + 1;
    lines++;
    const line = lines;
    // csv-parse's record delimiters are "\r\n" and "\n": a "\r" goes only when a "\n" follows.
    const stop =
      terminated && text.length > 0 && text.charCodeAt(text.length - 1) === 13
        ? text.length - 1
        : text.length;
    if (stop === 0) continue;
    // csv-parse counts a lone "\r" as a line break when numbering lines, so the lines after it do too.
    for (let cr = text.indexOf('\r'); cr !== -1 && cr < stop; cr = text.indexOf('\r', cr + 1)) lines++;
    let result: ReturnType<typeof parseFields>;
    const c1 = text.indexOf(',');
    const c2 = c1 === -1 || c1 >= stop ? -1 : text.indexOf(',', c1 + 1);
    const c3 = c2 === -1 || c2 >= stop ? -1 : text.indexOf(',', c2 + 1);
    if (c2 === -1 || c2 >= stop || (c3 !== -1 && c3 < stop)) {
      result = parseRow(text.slice(0, stop).split(','), line);
    } else {
      const id = text.slice(0, c1);
      const price = text.slice(c1 + 1, c2);
      const date = text.slice(c2 + 1, stop);
      if (headerPending && isHeader([id, price, date])) {
        headerPending = false;
        continue;
      }
      result = parseFields(id, price, date, line);
    }
    headerPending = false;
    if (isBadRow(result)) {
      badRowCount++;
      if (badRows.length < reportLimit) badRows.push(result);
      continue;
    }
    starts[rows] = pos;
    pos += encodeRow(result, out, pos);
    rows++;
  }
  // An exact-size copy (the builder keeps these buffers and counts their bytes against its memory budget), grouped.
  const { rows: encoded, groups } = groupRows(out, pos, starts, rows);
  return { encoded, groups, rows, lines, badRowCount, badRows };
}
