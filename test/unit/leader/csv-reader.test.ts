/**
 * The fast path must return exactly what csv-parse (the reference) returns: a property test over random files of
 * odd but valid shapes, fed in random chunk sizes, through inline parsing and through a real worker.
 */
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { parse } from 'csv-parse/sync';
import fc from 'fast-check';
import { AppError } from '../../../common/errors.js';
import { type BadRow, isBadRow, isHeader, type Promotion, parseRow } from '../../../common/record.js';
import { keyHash1 } from '../../../common/snapshot/key-hash.js';
import { decodeRecord } from '../../../common/snapshot/record-codec.js';
import { CsvSyntaxError, readCsv } from '../../../leader/csv-reader.js';
import { notCsvReason } from '../../../leader/file-sniff.js';
import { ParsePool } from '../../../leader/parse-pool.js';
import { GROUP_BITS } from '../../../leader/snapshot-build/row-groups.js';

type Outcome = { rows: Promotion[]; bad: BadRow[] } | { syntaxErrorLine: number } | { notCsv: string };

/** The group a row goes to in a parsed block (snapshot-build/row-groups.ts): the top bits of its first hash. */
const groupOf = (p: Promotion) => keyHash1(p.id) >>> (32 - GROUP_BITS);

/**
 * The reference's rows as the fast path hands them on: inside each block (`blocks`: its line range), grouped by
 * groupOf, keeping input order inside a group; rows outside every block (the csv-parse route) in input order.
 */
function asParsed(rows: { row: Promotion; line: number }[], blocks: [number, number][]): Promotion[] {
  const out: Promotion[] = [];
  let i = 0;
  for (const [from, to] of blocks) {
    while (i < rows.length && rows[i].line < from) out.push(rows[i++].row);
    const inBlock: Promotion[] = [];
    while (i < rows.length && rows[i].line <= to) inBlock.push(rows[i++].row);
    // Array.prototype.sort is stable.
    out.push(...inBlock.sort((a, b) => groupOf(a) - groupOf(b)));
  }
  while (i < rows.length) out.push(rows[i++].row);
  return out;
}

/** The reference: csv-parse over the whole text, then the same row rules; each row with its line. */
function referenceRows(
  text: string,
):
  | { rows: { row: Promotion; line: number }[]; bad: BadRow[] }
  | { syntaxErrorLine: number }
  | { notCsv: string } {
  // A file that is not CSV text is refused on its first bytes, before any parser (file-sniff.ts).
  const bytes = Buffer.from(text, 'utf8');
  const notCsv = notCsvReason(
    bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes,
  );
  if (notCsv !== undefined) return { notCsv };
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      bom: true,
      relax_column_count: true,
      info: true,
      record_delimiter: ['\r\n', '\n'],
    }) as unknown as typeof records;
  } catch (err) {
    return { syntaxErrorLine: (err as { lines: number }).lines };
  }
  const rows: { row: Promotion; line: number }[] = [];
  const bad: BadRow[] = [];
  let last = 0;
  let first = true;
  for (const { record, info } of records) {
    const line = last + 1;
    last = info.lines;
    if (record.length === 1 && record[0] === '') continue;
    if (first) {
      first = false;
      if (isHeader(record)) continue;
    }
    const r = parseRow(record, line);
    if (isBadRow(r)) bad.push(r);
    else rows.push({ row: r, line });
  }
  return { rows, bad };
}

/** Ours against the reference: rows inside fast-path blocks compared as the blocks group them. */
async function compare(text: string, cuts: number[], pool: ParsePool, blockBytes: number): Promise<void> {
  const blocks: [number, number][] = [];
  const got = await ours(text, cuts, pool, blockBytes, blocks);
  const want = referenceRows(text);
  if (!('rows' in want) || 'notCsv' in got) {
    expect(got).to.deep.equal(want);
    return;
  }
  expect(got).to.deep.equal({ rows: asParsed(want.rows, blocks), bad: want.bad });
}

/** Ours: readCsv over the text cut into `cuts`-sized chunks. */
async function ours(
  text: string,
  cuts: number[],
  pool: ParsePool | undefined,
  blockBytes: number,
  blocks: [number, number][] = [],
): Promise<Outcome> {
  const bytes = Buffer.from(text, 'utf8');
  const chunks: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = Math.max(1, cuts[i % cuts.length]);
    chunks.push(bytes.subarray(at, at + n));
    at += n;
  }
  const rows: Promotion[] = [];
  const bad: BadRow[] = [];
  let first = true;
  try {
    await readCsv(Readable.from(chunks), {
      pool,
      blockBytes,
      reportLimit: 1_000_000,
      onBytes: () => undefined,
      onBlock: (block, base) => {
        blocks.push([base + 1, base + block.lines]);
        if (block.lines > 0) first = false;
        for (const b of block.badRows) bad.push({ ...b, line: b.line + base });
        let off = 0;
        while (off < block.encoded.length) {
          const p = decodeRecord(block.encoded, off + 8);
          rows.push(p);
          // Re-encode to find the length: the record layout is the codec's, so decode-and-skip by its length.
          off += 8 + recordBytes(block.encoded, off + 8);
        }
        return undefined;
      },
      onRow: (fields, line) => {
        if (first) {
          first = false;
          if (isHeader(fields)) return undefined;
        }
        const r = parseRow(fields, line);
        if (isBadRow(r)) bad.push(r);
        else rows.push(r);
        return undefined;
      },
    });
  } catch (err) {
    if (err instanceof CsvSyntaxError) return { syntaxErrorLine: err.line };
    if (err instanceof AppError && err.code === 'INGEST_NOT_CSV') return { notCsv: err.message };
    throw err;
  }
  return { rows, bad };
}

function recordBytes(buf: Buffer, off: number): number {
  const idLen = buf[off] === 0 ? 17 : 2 + buf[off + 1];
  return idLen + 1 + buf[off + idLen] + 5;
}

const field = fc.oneof(
  { weight: 6, arbitrary: fc.uuid() },
  {
    weight: 3,
    arbitrary: fc.constantFrom('60.683466', '0', '-1.5', '.5', '1e3', '007', 'NaN', '', ' 1', '1e400'),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '2018-08-04 05:32:31 +0200 CEST',
      '2018-01-01 00:00:00',
      '2018-02-30 00:00:00',
    ),
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }).map((s) => s.replace(/[",\n\r]/g, '')) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('café', '😀', 'a\rb', 'tab\there', 'id', 'price', 'expiration_date'),
  },
);
const row = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(field, field, field) },
  { weight: 1, arbitrary: fc.array(field, { maxLength: 5 }) },
);
const lineEnd = fc.constantFrom('\n', '\r\n');
const file = fc
  .record({
    bom: fc.boolean(),
    header: fc.boolean(),
    lines: fc.array(fc.tuple(row, lineEnd, fc.nat(9)), { maxLength: 40 }),
    finalNewline: fc.boolean(),
    quoteAt: fc.option(fc.nat(40)),
  })
  .map(({ bom, header, lines, finalNewline, quoteAt }) => {
    let text = bom ? '\ufeff' : '';
    if (header) text += 'id,price,expiration_date\n';
    lines.forEach(([fields, end, blank], i) => {
      let cells = [...fields];
      if (quoteAt === i && cells.length > 0) cells = [`"${cells[0]},x\n"`, ...cells.slice(1)];
      text += cells.join(',') + end;
      if (blank === 0) text += end;
    });
    if (!finalNewline && text.endsWith('\n')) text = text.replace(/\r?\n$/, '');
    return text;
  });

/**
 * Lines close to the common shape (UUID, plain price, Go date), which parse-chunk reads straight from the bytes,
 * each possibly with one character changed: every near miss must give what csv-parse and the row rules give.
 */
const digits = (min: number, max: number) =>
  fc
    .array(fc.constantFrom(...'0123456789'.split('')), { minLength: min, maxLength: max })
    .map((d) => d.join(''));
const plainPrice = fc
  .tuple(fc.constantFrom('', '', '-', '+'), digits(0, 4), fc.option(digits(0, 8)))
  .map(([sign, int, frac]) => `${sign}${int}${frac === null ? '' : `.${frac}`}`);
const two = (max: number) => fc.integer({ min: 0, max }).map((v) => String(v).padStart(2, '0'));
const plainDate = fc
  .tuple(
    fc.constantFrom('2018', '2000', '1900', '2024', '0000', '9999'),
    two(13),
    two(32),
    two(25),
    two(61),
    two(61),
    fc.option(fc.tuple(fc.constantFrom('+', '-'), two(25), two(61))),
    fc.option(fc.stringMatching(/^[A-Za-z]{0,12}$/)),
  )
  .map(([y, mo, d, h, mi, s, off, zone]) => {
    let t = `${y}-${mo}-${d} ${h}:${mi}:${s}`;
    if (off !== null) t += ` ${off[0]}${off[1]}${off[2]}${zone === null ? '' : ` ${zone}`}`;
    return t;
  });
const plainId = fc.oneof(
  { weight: 5, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.uuid().map((u) => u.toUpperCase()) },
);
const plainLine = fc
  .tuple(
    plainId,
    plainPrice,
    plainDate,
    fc.constantFrom('\n', '\r\n'),
    fc.option(fc.tuple(fc.nat(), fc.nat())),
  )
  .map(([id, price, date, end, change]) => {
    let text = `${id},${price},${date}${end}`;
    if (change !== null) {
      const at = change[0] % text.length;
      const by = [',', '\r', '\n', 'x', 'A', '0', '9', '-', '.', ' ', 'é', ':'][change[1] % 12];
      text = text.slice(0, at) + by + text.slice(at + 1);
    }
    return text;
  });
const plainFile = fc
  .tuple(fc.array(plainLine, { maxLength: 30 }), fc.boolean())
  .map(([lines, finalNewline]) => {
    const text = lines.join('');
    return finalNewline ? text : text.replace(/\r?\n$/, '');
  });

describe('leader/csv-reader: the fast path equals csv-parse', function () {
  this.timeout(120_000);
  let pool: ParsePool;
  before(() => {
    pool = new ParsePool(1);
  });
  after(() => pool.close());

  it('inline, for random files, chunkings and block sizes', async () => {
    await fc.assert(
      fc.asyncProperty(
        file,
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 300 }),
        async (text, cuts, blockBytes) => {
          await compare(text, cuts, new ParsePool(0), blockBytes);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('inline, for lines near the common shape (read from the bytes)', async () => {
    await fc.assert(
      fc.asyncProperty(
        plainFile,
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 600 }),
        async (text, cuts, blockBytes) => {
          await compare(text, cuts, new ParsePool(0), blockBytes);
        },
      ),
      { numRuns: 600 },
    );
  });

  it('through a worker thread', async () => {
    await fc.assert(
      fc.asyncProperty(file, fc.integer({ min: 1, max: 200 }), async (text, blockBytes) => {
        await compare(text, [4096], pool, blockBytes);
      }),
      { numRuns: 60 },
    );
  });

  it('reports a line longer than the limit without holding it all', async () => {
    const long = `${'x'.repeat(17 << 20)}`;
    const out = await ours(`a,1,2018-01-01 00:00:00\n${long}`, [1 << 20], new ParsePool(0), 1 << 20);
    expect(out).to.deep.equal({ syntaxErrorLine: 2 });
  });

  it('ends an unterminated quoted field at the record size limit, naming the line it starts on', async () => {
    const head = 'a,1,2018-01-01 00:00:00\r\n\nb,2,"2018-01-01\n00:00:00"\n"';
    // The open field is followed by more input: csv-parse must stop at the limit, not at the end of the file.
    const chunks = [Buffer.from(head), ...Array.from({ length: 20 }, () => Buffer.alloc(1 << 20, 'x'))];
    let error: unknown;
    try {
      await readCsv(Readable.from(chunks), {
        pool: new ParsePool(0),
        reportLimit: 10,
        onBytes: () => undefined,
        onBlock: () => undefined,
        onRow: () => undefined,
      });
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(CsvSyntaxError);
    expect((error as CsvSyntaxError).line).to.equal(5);
    expect((error as CsvSyntaxError).message).to.match(/longer than 16777216 bytes/);
  });

  it('takes a long line arriving in many small chunks', async () => {
    const id = 'y'.repeat(100);
    const text = `a,1,2018-01-01 00:00:00\n${id},${'9'.repeat(60_000)},2018-01-01 00:00:00\nb,2,2018-01-01 00:00:00\n`;
    await compare(text, [7, 13], new ParsePool(0), 1 << 20);
  });
});
