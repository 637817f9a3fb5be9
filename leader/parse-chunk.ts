/**
 * The fast path of CSV ingest: a block of whole lines with no quote character, split with indexOf, validated, and
 * encoded straight into the builder's row format. It returns exactly what csv-parse would for the same bytes (a
 * property test proves it); blocks with a quote never come here (see csv-reader.ts).
 *
 * Pure and synchronous: it runs in parse workers, or inline when there are none.
 */
import { isAscii } from 'node:buffer';
import { type BadRow, isBadRow, isHeader, parseFields, parseRow } from '../common/record.js';
import { encodeRow, MAX_ROW_BYTES } from '../common/snapshot/writer.js';

/** What one block of lines gave. Line numbers in `badRows` count from 1 at the block's first line. */
export interface ParsedBlock {
  /** Encoded rows, whole, in input order (own ArrayBuffer, so it can be transferred). */
  readonly encoded: Buffer;
  readonly rows: number;
  /** Lines in the block (a final line without a newline counts). */
  readonly lines: number;
  readonly badRowCount: number;
  /** The first bad rows, up to the report limit. */
  readonly badRows: BadRow[];
}

/**
 * Parses `bytes` (UTF-8 text of whole lines; the last may lack its newline when the file does). `checkHeader`:
 * this block starts the file, so its first non-blank line may be the header. Bad rows past `reportLimit` are counted
 * only.
 */
export function parseBlock(bytes: Uint8Array, checkHeader: boolean, reportLimit: number): ParsedBlock {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Decoding pure ASCII as 'ascii' gives the same string as UTF-8, many times faster.
  const text = buf.toString(isAscii(buf) ? 'ascii' : 'utf8');
  let out = Buffer.allocUnsafeSlow(Math.max(4096, Math.ceil(bytes.byteLength * 0.9)));
  let pos = 0;
  let rows = 0;
  let lines = 0;
  let badRowCount = 0;
  const badRows: BadRow[] = [];
  let headerPending = checkHeader;
  let start = 0;
  const n = text.length;
  let nextCr = text.indexOf('\r');
  while (start < n) {
    let end = text.indexOf('\n', start);
    const terminated = end !== -1;
    if (!terminated) end = n;
    lines++;
    // csv-parse's record delimiters are "\r\n" and "\n": a "\r" goes only when a "\n" follows.
    const stop = terminated && end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
    const line = lines;
    const lineStart = start;
    start = end + 1;
    if (stop === lineStart) continue;
    // csv-parse counts a lone "\r" as a line break when numbering lines, so the lines after it do too.
    // `nextCr` is the first "\r" at or after this line (searched once per block when there is none).
    if (nextCr !== -1 && nextCr < lineStart) nextCr = text.indexOf('\r', lineStart);
    while (nextCr !== -1 && nextCr < stop) {
      lines++;
      nextCr = text.indexOf('\r', nextCr + 1);
    }
    let result: ReturnType<typeof parseFields>;
    const c1 = text.indexOf(',', lineStart);
    const c2 = c1 === -1 || c1 >= stop ? -1 : text.indexOf(',', c1 + 1);
    const c3 = c2 === -1 || c2 >= stop ? -1 : text.indexOf(',', c2 + 1);
    if (c2 === -1 || c2 >= stop || (c3 !== -1 && c3 < stop)) {
      result = parseRow(text.slice(lineStart, stop).split(','), line);
    } else {
      const id = text.slice(lineStart, c1);
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
    if (pos + MAX_ROW_BYTES > out.length) {
      const bigger = Buffer.allocUnsafeSlow(out.length * 2);
      out.copy(bigger, 0, 0, pos);
      out = bigger;
    }
    pos += encodeRow(result, out, pos);
    rows++;
  }
  // An exact-size copy: the builder keeps these buffers and counts their bytes against its memory budget.
  const encoded = Buffer.allocUnsafeSlow(pos);
  out.copy(encoded, 0, 0, pos);
  return { encoded, rows, lines, badRowCount, badRows };
}
