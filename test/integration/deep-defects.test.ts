/**
 * Defects and odd-but-valid shapes deep inside large files, not only in 1-3 line fixtures: rows placed around
 * every MiB mark of a file of several MiB, where the reader cuts blocks for the parse workers (BLOCK_BYTES), so
 * that a defect lands at, just before and just after a block boundary, in a worker; others after a quoted field,
 * where the rest goes through csv-parse. Files are generated here, not committed. A bad file is refused naming
 * every bad row's line, column and reason, and the live version stays; an accepted file's odd rows answer as
 * written through a replica.
 */
import { expect } from 'chai';
import { BLOCK_BYTES } from '../../leader/csv-reader.js';
import { generateLines } from '../../scripts/generate.js';
import {
  cleanup,
  http,
  putBytes,
  putCsv,
  startLeader,
  startReplica,
  type TestLeader,
  type TestReplica,
  waitFor,
} from '../helpers.js';

const D = '2018-08-04 05:32:31 +0200 CEST';
const E = '2018-08-04 05:32:31';
const FMT = 'expected YYYY-MM-DD HH:MM:SS, optionally followed by an offset like +0200 and a zone name';

interface Defect {
  readonly what: string;
  /** The row's bytes, without its line end (a defect may hold its own). */
  readonly row: Buffer;
  readonly column: string;
  readonly reason: string;
}

const b = (s: string) => Buffer.from(s, 'latin1');

/** Bad rows the fast path meets (no quote character). */
const PLAIN_DEFECTS: readonly Defect[] = [
  {
    what: 'NUL in an id',
    row: b(`a\u0000b,1.5,${D}`),
    column: 'id',
    reason: 'id has a character that is not printable ASCII at position 2',
  },
  {
    what: 'an id of 129',
    row: b(`${'x'.repeat(129)},1.5,${D}`),
    column: 'id',
    reason: 'id is 129 characters long',
  },
  {
    what: 'a price of 65 digits',
    row: b(`p,${'1'.repeat(65)},${D}`),
    column: 'price',
    reason: 'price "1111',
  },
  {
    what: 'a price with a leading space',
    row: b(`p, 1.5,${D}`),
    column: 'price',
    reason: 'price " 1.5" is not a finite decimal number',
  },
  {
    what: '24:00:00',
    row: b('p,1.5,2018-08-04 24:00:00'),
    column: 'expiration_date',
    reason: 'time 24:00:00 does not exist',
  },
  {
    what: '23:59:60',
    row: b('p,1.5,2018-08-04 23:59:60'),
    column: 'expiration_date',
    reason: 'time 23:59:60 does not exist',
  },
  {
    what: 'offset +02:00',
    row: b('p,1.5,2018-08-04 05:32:31 +02:00 CEST'),
    column: 'expiration_date',
    reason: FMT,
  },
  {
    what: 'a zone without an offset',
    row: b('p,1.5,2018-08-04 05:32:31 CEST'),
    column: 'expiration_date',
    reason: FMT,
  },
  { what: 'a trailing space', row: b(`p,1.5,${D} `), column: 'expiration_date', reason: FMT },
  {
    what: 'offset +2500',
    row: b('p,1.5,2018-08-04 05:32:31 +2500 CEST'),
    column: 'expiration_date',
    reason: 'offset +2500 does not exist',
  },
  {
    what: 'NUL inside a date',
    row: b('p,1.5,2018-08-04 05:3\u00002:31'),
    column: 'expiration_date',
    reason: FMT,
  },
  {
    what: 'a Windows-1252 byte in a zone name',
    row: b('p,1.5,2018-08-04 05:32:31 +0200 C\u0080ST'),
    column: 'expiration_date',
    reason: FMT,
  },
  { what: 'a line of commas', row: b(',,'), column: 'id', reason: 'id is empty' },
  {
    what: 'a line of spaces',
    row: b('      '),
    column: 'row',
    reason: 'expected 3 columns (id,price,expiration_date), found 1',
  },
  {
    what: 'a line that ends with CR alone',
    row: b(`p,1.5,${D}\rq,1.5,${D}`),
    column: 'row',
    reason:
      'expected 3 columns (id,price,expiration_date), found 5 (a CR not followed by LF joins lines here',
  },
];

/** Odd rows that are valid, with the exact answer a replica gives for each. */
const ODD_ROWS: readonly { readonly row: string; readonly id: string; readonly answer: string }[] = [
  { row: `a b,1.5,${D}`, id: 'a b', answer: `{"id":"a b","price":1.5,"expiration_date":"${E}"}` },
  {
    row: `${'y'.repeat(128)},1.5,${D}`,
    id: 'y'.repeat(128),
    answer: `{"id":"${'y'.repeat(128)}","price":1.5,"expiration_date":"${E}"}`,
  },
  {
    row: `back\\slash,1.5,${D}`,
    id: 'back\\slash',
    answer: `{"id":"back\\\\slash","price":1.5,"expiration_date":"${E}"}`,
  },
  { row: `plus,+5,${D}`, id: 'plus', answer: `{"id":"plus","price":5,"expiration_date":"${E}"}` },
  {
    row: `minus-zero,-0,${D}`,
    id: 'minus-zero',
    answer: `{"id":"minus-zero","price":-0,"expiration_date":"${E}"}`,
  },
  {
    row: `thirty,123456789012345678901234567890,${D}`,
    id: 'thirty',
    answer: `{"id":"thirty","price":123456789012345678901234567890,"expiration_date":"${E}"}`,
  },
  { row: `dot-end,5.,${D}`, id: 'dot-end', answer: `{"id":"dot-end","price":5,"expiration_date":"${E}"}` },
  {
    row: `dot-start,.5,${D}`,
    id: 'dot-start',
    answer: `{"id":"dot-start","price":0.5,"expiration_date":"${E}"}`,
  },
  { row: `exp,1e3,${D}`, id: 'exp', answer: `{"id":"exp","price":1e3,"expiration_date":"${E}"}` },
  { row: `zeros,007.50,${D}`, id: 'zeros', answer: `{"id":"zeros","price":7.50,"expiration_date":"${E}"}` },
  {
    row: 'leap,1.5,2020-02-29 10:00:00',
    id: 'leap',
    answer: '{"id":"leap","price":1.5,"expiration_date":"2020-02-29 10:00:00"}',
  },
  {
    row: 'no-zone,1.5,2018-08-04 05:32:31 +0200',
    id: 'no-zone',
    answer: `{"id":"no-zone","price":1.5,"expiration_date":"${E}"}`,
  },
  {
    row: 'year-zero,1.5,0000-08-04 05:32:31',
    id: 'year-zero',
    answer: '{"id":"year-zero","price":1.5,"expiration_date":"0000-08-04 05:32:31"}',
  },
];

/** Byte offsets where rows go: around each MiB mark, where blocks are cut, and across the first chunks after it. */
function targets(marks: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= marks; k++) {
    for (const d of [-300, -80, 0, 80, 4096, 16_384, 40_000, 65_536, 70_000, 131_072])
      out.push(k * BLOCK_BYTES + d);
  }
  return out;
}

/** Line breaks inside a row: LF, and CR alone, which the reader counts as a line as csv-parse and editors do. */
function lineBreaks(row: Buffer): number {
  let n = 0;
  for (let i = 0; i < row.length; i++) {
    if (row[i] === 0x0a || (row[i] === 0x0d && row[i + 1] !== 0x0a)) n++;
  }
  return n;
}

/**
 * A generated file of `marks + 1` MiB with `rows[i]` placed at the line after `targets[i]` bytes (cycling through
 * `rows`); returns the bytes and the line each placed row starts on.
 */
function fileWith(rows: readonly Buffer[], marks: number, seed: number): { bytes: Buffer; lines: number[] } {
  const at = targets(marks);
  const parts: Buffer[] = [];
  const lines: number[] = [];
  let bytes = 0;
  let line = 1;
  let next = 0;
  for (const text of generateLines({ rows: Math.ceil(((marks + 1) * BLOCK_BYTES) / 76), seed })) {
    while (next < at.length && bytes >= at[next]) {
      const row = rows[next % rows.length];
      lines.push(line);
      parts.push(row, b('\n'));
      bytes += row.length + 1;
      line += 1 + lineBreaks(row);
      next++;
    }
    const l = b(`${text}\n`);
    parts.push(l);
    bytes += l.length;
    line++;
  }
  return { bytes: Buffer.concat(parts), lines };
}

describe('defects and odd shapes deep in large files, across the parse workers block boundaries', function () {
  this.timeout(180_000);
  let leader: TestLeader;
  let replica: TestReplica;
  before(async () => {
    leader = await startLeader({ INGEST_WORKERS: '2' });
    replica = await startReplica(leader.url);
  });
  after(cleanup);

  async function refused(bytes: Buffer) {
    const res = await putBytes(leader.url, new Uint8Array(bytes));
    expect([res.status, res.json.error], res.text.slice(0, 300)).to.deep.equal([422, 'INGEST_BAD_ROWS']);
    return res.json as { badRowCount: number; badRows: { line: number; column: string; reason: string }[] };
  }

  it('answers every odd-but-valid row as written, wherever it falls, through a replica', async () => {
    const rows = ODD_ROWS.map((r) => b(r.row));
    // The quoted id comes last: from its block on, the rest of the file goes through csv-parse.
    const { bytes } = fileWith([...rows, b(`"quo""te",1.5,${D}`)], 3, 1);
    const res = await putCsv(leader.url, bytes.toString('latin1'));
    expect(res.status, res.text.slice(0, 300)).to.equal(201);
    await waitFor(
      async () => ((await http(`${replica.url}/readyz`)).json.version === 1 ? true : undefined),
      20_000,
      'the replica on version 1',
    );
    const cases = [
      ...ODD_ROWS,
      { id: 'quo"te', answer: `{"id":"quo\\"te","price":1.5,"expiration_date":"${E}"}` },
    ];
    for (const c of cases) {
      const got = await http(`${replica.url}/promotions/${encodeURIComponent(c.id)}`);
      expect([got.status, got.text], c.id).to.deep.equal([200, c.answer]);
    }
  });

  it('refuses a large file naming the line, column and reason of every defect, in workers and at block cuts', async () => {
    const { bytes, lines } = fileWith(
      PLAIN_DEFECTS.map((d) => d.row),
      3,
      2,
    );
    const body = await refused(bytes);
    const want = lines.map((line, i) => ({ line, defect: PLAIN_DEFECTS[i % PLAIN_DEFECTS.length] }));
    expect(body.badRowCount).to.equal(want.length);
    expect(body.badRows.map((r) => r.line)).to.deep.equal(want.map((w) => w.line));
    for (const [i, r] of body.badRows.entries()) {
      const { defect } = want[i];
      expect(r.column, `${defect.what} on line ${r.line}`).to.equal(defect.column);
      expect(r.reason.startsWith(defect.reason), `${defect.what} on line ${r.line}: ${r.reason}`).to.equal(
        true,
      );
    }
    expect(leader.store.current()?.version).to.equal(1);
  });

  it('refuses defects after a quoted field (csv-parse) and a 10 MiB line deep in the file, naming their lines', async () => {
    const tenMiB = Buffer.alloc(10 * 1024 * 1024, 'z');
    const quoted = b(`"q\nnewline",1.5,${D}`);
    const rows = [quoted, ...PLAIN_DEFECTS.slice(0, 5).map((d) => d.row), tenMiB];
    const { bytes, lines } = fileWith(rows, 1, 3);
    const body = await refused(bytes);
    const reasons = [
      ['id', 'id has a character that is not printable ASCII at position 2'],
      ...PLAIN_DEFECTS.slice(0, 5).map((d) => [d.column, d.reason]),
      ['row', 'expected 3 columns (id,price,expiration_date), found 1'],
    ];
    const want = lines.map((line, i) => ({ line, reason: reasons[i % reasons.length] }));
    expect(body.badRows.map((r) => r.line)).to.deep.equal(want.map((w) => w.line));
    for (const [i, r] of body.badRows.entries()) {
      expect(r.column, `line ${r.line}`).to.equal(want[i].reason[0]);
      expect(r.reason.startsWith(want[i].reason[1]), `line ${r.line}: ${r.reason}`).to.equal(true);
    }
    // The live version and its answers stay.
    expect(leader.store.current()?.version).to.equal(1);
    expect((await http(`${replica.url}/promotions/plus`)).status).to.equal(200);
  });
});
