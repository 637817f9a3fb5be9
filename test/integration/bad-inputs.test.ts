/**
 * The bad-input corpus (test/fixtures/bad/, expectations in bad-expected.json): every file is sent with
 * PUT /promotions to a leader serving a base version through a replica. A bad file gets its exact status, code,
 * line, column and reason, and the live version and its answers stay as they were; a file that is valid despite its
 * odd shape is accepted, and its rows answer as written.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { ROOT } from '../../scripts/lib/processes.js';
import {
  activate,
  cleanup,
  csvOf,
  http,
  ingest,
  putBytes,
  startLeader,
  startReplica,
  type TestLeader,
  type TestReplica,
  waitFor,
} from '../helpers.js';

interface Expected {
  readonly what: string;
  readonly status: number;
  readonly error?: string;
  readonly rows?: number;
  readonly badRowCount?: number;
  readonly line?: number;
  readonly column?: string;
  readonly reason?: string;
  /** For a file refused whole (not row by row): how its message starts. */
  readonly message?: string;
  /** For accepted files: what the replica answers for these ids once the file is live. */
  readonly answers?: Record<string, Record<string, unknown>>;
}

interface BadRow {
  line: number;
  column: string;
  value: string;
  reason: string;
}

const DIR = join(ROOT, 'test', 'fixtures', 'bad');
const BASE = [1, 2, 3, 4].map((i) => [`base-${i}`, `${i}.25`, '2018-01-04 06:01:20 +0100 CET']);

describe('bad-input corpus', () => {
  let leader: TestLeader;
  let replica: TestReplica;
  let baseAnswer: string;
  let expected: Record<string, Expected>;

  before(async () => {
    expected = JSON.parse(await readFile(join(ROOT, 'test', 'fixtures', 'bad-expected.json'), 'utf8'));
    // Every accepted file makes a version; the base must stay kept so that it can be activated again.
    leader = await startLeader({ INGEST_WORKERS: '1', KEEP_VERSIONS: '50' });
    await ingest(leader.url, csvOf(BASE));
    replica = await startReplica(leader.url);
    baseAnswer = await waitFor(
      async () => {
        const res = await http(`${replica.url}/promotions/base-1`);
        return res.status === 200 ? res.text : undefined;
      },
      10_000,
      'the replica on the base version',
    );
    expect(JSON.parse(baseAnswer)).to.deep.equal({
      id: 'base-1',
      price: 1.25,
      expiration_date: '2018-01-04 06:01:20',
    });
  });
  after(cleanup);

  /** The base version is current, and the replica answers from it exactly as before. */
  async function expectBaseLive(): Promise<void> {
    expect(leader.store.current()?.version).to.equal(1);
    expect(leader.store.list()).to.have.length(1);
    const res = await http(`${replica.url}/promotions/base-1`);
    expect([res.status, res.headers.get('x-snapshot-version'), res.text]).to.deep.equal([
      200,
      '1',
      baseAnswer,
    ]);
  }

  it('has at least 30 bad files, each with its expectation, and an expectation only for files that exist', async () => {
    const files = (await readdir(DIR)).sort();
    expect(files).to.deep.equal(Object.keys(expected).sort());
    expect(files.filter((f) => expected[f].status !== 201).length).to.be.at.least(30);
  });

  it('refuses each bad file with its status, code, line, column and reason; the live version stays', async () => {
    for (const [file, e] of Object.entries(expected).filter(([, x]) => x.status !== 201)) {
      const body = new Uint8Array(await readFile(join(DIR, file)));
      const res = await putBytes(leader.url, body);
      const about = `${file} (${e.what}): ${res.text.slice(0, 300)}`;
      expect(res.status, about).to.equal(e.status);
      expect(res.json.error, about).to.equal(e.error);
      if (e.message !== undefined) {
        expect((res.json.message as string).startsWith(e.message), about).to.equal(true);
      }
      if (e.line !== undefined) {
        expect(res.json.message, about).to.match(new RegExp(`^line ${e.line}: `));
        const rows = res.json.badRows as BadRow[];
        expect(res.json.badRowCount, about).to.equal(e.badRowCount);
        expect(rows.length, about).to.equal(Math.min(100, e.badRowCount ?? 0));
        expect([rows[0].line, rows[0].column], about).to.deep.equal([e.line, e.column]);
        expect(rows[0].reason.startsWith(e.reason ?? '?'), `${about}: reason ${rows[0].reason}`).to.equal(
          true,
        );
        for (const r of rows) expect(r.value.length, about).to.be.at.most(80);
      }
      await expectBaseLive();
    }
  });

  it('refuses a single 10 MB line, naming line 1, with its value cut to 80 characters', async () => {
    const body = Buffer.alloc(10 * 1024 * 1024 + 1, 'x');
    body[body.length - 1] = 0x0a;
    const res = await putBytes(leader.url, new Uint8Array(body));
    expect(res.status).to.equal(422);
    expect(res.json.error).to.equal('INGEST_BAD_ROWS');
    expect(res.json.message).to.match(/^line 1: /);
    expect((res.json.badRows as BadRow[])[0].value).to.equal('x'.repeat(80));
    await expectBaseLive();
  });

  it('accepts the files that are valid despite their shape', async () => {
    for (const [file, e] of Object.entries(expected).filter(([, x]) => x.status === 201)) {
      const body = new Uint8Array(await readFile(join(DIR, file)));
      const res = await putBytes(leader.url, body);
      expect(res.status, `${file} (${e.what}): ${res.text.slice(0, 300)}`).to.equal(201);
      expect(res.json.rows, file).to.equal(e.rows);
      const version = res.json.version as number;
      await waitFor(
        async () => ((await http(`${replica.url}/promotions/id-3`)).status === 200 ? true : undefined),
        10_000,
        `${file}: the replica on version ${version}`,
      );
      // Its rows answer as written: no CR, BOM, quote or header left in a value, the last row kept.
      expect(Object.keys(e.answers ?? {}), file).to.have.length(e.rows ?? 0);
      for (const [id, answer] of Object.entries(e.answers ?? {})) {
        const got = await http(`${replica.url}/promotions/${encodeURIComponent(id)}`);
        expect([got.status, got.headers.get('x-snapshot-version')], `${file} ${id}`).to.deep.equal([
          200,
          String(version),
        ]);
        expect(got.json, `${file} ${id}`).to.deep.equal(answer);
      }
      // Back to the base version for the next file (activate, the replicas follow).
      const back = await activate(leader.url, 1);
      expect(back.status, `${file}: ${back.text}`).to.equal(200);
      await waitFor(
        async () => ((await http(`${replica.url}/promotions/id-3`)).status === 404 ? true : undefined),
        10_000,
        `${file}: the replica back on version 1`,
      );
    }
  });
});
