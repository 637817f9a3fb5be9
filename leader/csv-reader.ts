/**
 * Turns a stream of CSV bytes into validated rows with their line numbers.
 *
 * The common shape (no quote character anywhere) takes the fast path: the main thread cuts the stream into blocks
 * of whole lines and parse workers split, validate and encode them (parse-chunk.ts); results are applied in input
 * order. Anything unusual goes through csv-parse, the reference parser: from the first block that holds a quote
 * character to the end of the file (RFC 4180 quoting, quoted newlines). Both paths accept LF or CRLF line ends and
 * an optional UTF-8 BOM, and skip blank lines, which carry no data.
 *
 * Memory is bounded: at most MAX_IN_FLIGHT blocks of BLOCK_BYTES are parsed at once, and a line longer than
 * MAX_LINE_BYTES ends the file as a bad row.
 */
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CsvError, parse } from 'csv-parse';
import { AppError } from '../common/errors.js';
import { notCsvReason, SNIFF_BYTES, sniffReady } from './file-sniff.js';
import type { ParsedBlock } from './parse-chunk.js';
import type { ParsePool } from './parse-pool.js';

/** Receives one row from the reference parser; a returned promise is awaited before the next row. */
export type RowSink = (fields: string[], line: number) => Promise<void> | undefined;
/** Receives one parsed block; `baseLine` is the number of lines before it. Awaited like RowSink. */
export type BlockSink = (block: ParsedBlock, baseLine: number) => Promise<void> | undefined;

export interface ReadCsvOptions {
  /** Sees every chunk of bytes first (checksum, size limit); an error it throws ends the read with that error. */
  readonly onBytes: (chunk: Buffer) => void;
  readonly onBlock: BlockSink;
  readonly onRow: RowSink;
  /** Workers for the fast path; undefined parses every block through csv-parse (the reference). */
  readonly pool: ParsePool | undefined;
  /** Bad rows each block lists in full (the rest it counts). */
  readonly reportLimit: number;
  /** Bytes of lines per block sent to a worker; tests make it small to get many blocks. */
  readonly blockBytes?: number;
}

/** A CSV syntax error that stops parsing; `line` is where it was found. */
export class CsvSyntaxError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
    this.name = 'CsvSyntaxError';
  }
}

export const BLOCK_BYTES = 1 << 20;
export const MAX_LINE_BYTES = 16 << 20;
const QUOTE = 0x22;
const NEWLINE = 0x0a;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

interface ParsedRecord {
  record: string[];
  info: { lines: number };
}

/** Reads every row of `source`; resolves when the input ends and every row was delivered. */
export async function readCsv(source: Readable, options: ReadCsvOptions): Promise<void> {
  const maxInFlight = 2 * Math.max(1, options.pool?.size ?? 1) + 1;
  const blockBytes = options.blockBytes ?? BLOCK_BYTES;
  const inFlight: Promise<ParsedBlock>[] = [];
  let lines = 0;
  let blocks = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  // The bytes after the last newline seen, in pieces: one long line arrives in many chunks, and concatenating
  // each one onto the rest would copy the line over and over.
  let carry: Buffer[] = [];
  let carryBytes = 0;
  // The first bytes, held until a BOM can be dropped and the file recognised as text (file-sniff.ts).
  let head: Buffer[] | undefined = [];
  let headBytes = 0;
  let slow: { input: PassThrough; done: Promise<void> } | undefined;

  const applyNext = async () => {
    const block = await (inFlight.shift() as Promise<ParsedBlock>);
    const base = lines;
    lines += block.lines;
    const wait = options.onBlock(block, base);
    if (wait !== undefined) await wait;
  };
  const drain = async () => {
    while (inFlight.length > 0) await applyNext();
  };
  const dispatch = async () => {
    if (pendingBytes === 0) return;
    // A fresh buffer owned by the block, so it can move to a worker.
    const bytes = Buffer.allocUnsafeSlow(pendingBytes);
    let at = 0;
    for (const p of pending) at += p.copy(bytes, at);
    pending = [];
    pendingBytes = 0;
    inFlight.push((options.pool as ParsePool).parse(bytes, blocks++ === 0, options.reportLimit));
    if (inFlight.length >= maxInFlight) await applyNext();
  };
  const writeSlow = async (data: Buffer) => {
    const s = slow as { input: PassThrough; done: Promise<void> };
    if (s.input.write(data)) return;
    try {
      await Promise.race([once(s.input, 'drain'), s.done]);
    } catch (err) {
      // A parse error destroys the input too, and `once` rejects with csv-parse's raw error: report the one
      // readWithCsvParse maps to a line.
      await s.done;
      throw err;
    }
  };
  const toSlow = async (data: Buffer) => {
    // Everything not yet dispatched, in order, goes to csv-parse after the blocks already in flight.
    await drain();
    const input = new PassThrough();
    slow = { input, done: readWithCsvParse(input, options.onRow, lines) };
    slow.done.catch(() => undefined);
    for (const b of [...pending, ...carry, data]) if (b.length > 0) await writeSlow(b);
    pending = [];
    pendingBytes = 0;
    carry = [];
    carryBytes = 0;
  };
  const take = async (data: Buffer) => {
    if (slow !== undefined) return writeSlow(data);
    if (options.pool === undefined || data.indexOf(QUOTE) !== -1) return toSlow(data);
    const cut = data.lastIndexOf(NEWLINE);
    if (cut === -1) {
      carry.push(data);
      carryBytes += data.length;
      if (carryBytes > MAX_LINE_BYTES) {
        await dispatch();
        await drain();
        throw new CsvSyntaxError(
          lines + 1,
          `line is longer than ${MAX_LINE_BYTES} bytes; a row is a few hundred`,
        );
      }
      return;
    }
    for (const c of carry) pending.push(c);
    pending.push(data.subarray(0, cut + 1));
    pendingBytes += carryBytes + cut + 1;
    carry = cut + 1 < data.length ? [data.subarray(cut + 1)] : [];
    carryBytes = data.length - cut - 1;
    if (pendingBytes >= blockBytes) await dispatch();
  };

  const takeHead = async (ended: boolean) => {
    const whole = Buffer.concat(head as Buffer[]);
    const start = whole.subarray(0, BOM.length).equals(BOM) ? whole.subarray(BOM.length) : whole;
    if (!ended && !sniffReady(start)) return;
    head = undefined;
    const reason = notCsvReason(start);
    if (reason !== undefined) throw new AppError('INGEST_NOT_CSV', reason);
    if (start.length > 0) await take(start);
  };
  for await (const chunk of source as AsyncIterable<Buffer>) {
    options.onBytes(chunk);
    if (head === undefined) {
      await take(chunk);
      continue;
    }
    head.push(chunk);
    headBytes += chunk.length;
    // Cheap until the first line end: a chunk or two (a line with no end is bounded by SNIFF_BYTES).
    if (chunk.indexOf(NEWLINE) !== -1 || headBytes >= SNIFF_BYTES) await takeHead(false);
  }
  if (head !== undefined) await takeHead(true);
  if (slow !== undefined) {
    slow.input.end();
    await slow.done;
    return;
  }
  for (const c of carry) pending.push(c);
  pendingBytes += carryBytes;
  await dispatch();
  await drain();
}

/** The reference path: csv-parse, with line numbers continuing after `lineOffset` lines. */
async function readWithCsvParse(input: Readable, sink: RowSink, lineOffset: number): Promise<void> {
  // Lines up to the end of the last record csv-parse finished: the records it hands on may lag behind it, and a
  // record that fails starts on the line after this one.
  let parsedLines = 0;
  const parser = parse({
    bom: true,
    relax_column_count: true,
    info: true,
    record_delimiter: ['\r\n', '\n'],
    // Without a limit an unterminated quoted field would buffer the rest of the file.
    max_record_size: MAX_LINE_BYTES,
    on_record: (record: string[], context: { lines: number }) => {
      parsedLines = context.lines;
      return record;
    },
  });
  let lastLine = 0;
  try {
    await pipeline(input, parser, async (records: AsyncIterable<ParsedRecord>) => {
      for await (const { record, info } of records) {
        const line = lineOffset + lastLine + 1;
        lastLine = info.lines;
        if (record.length === 1 && record[0] === '') continue;
        const wait = sink(record, line);
        if (wait !== undefined) await wait;
      }
    });
  } catch (err) {
    if (err instanceof CsvError && err.code === 'CSV_MAX_RECORD_SIZE') {
      throw new CsvSyntaxError(
        lineOffset + parsedLines + 1,
        `the record starting on this line is longer than ${MAX_LINE_BYTES} bytes; a row is a few hundred (is a quoted field left open?)`,
      );
    }
    if (err instanceof CsvError) {
      // An unclosed quote is only noticed at the end of the file: name the line its record starts on instead.
      if (err.code === 'CSV_QUOTE_NOT_CLOSED') {
        throw new CsvSyntaxError(
          lineOffset + parsedLines + 1,
          'a quoted field starts on this line and is never closed',
        );
      }
      throw new CsvSyntaxError(
        lineOffset + (typeof err.lines === 'number' ? err.lines : lastLine + 1),
        err.message,
      );
    }
    throw err;
  }
}
