import { appendFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { AppError } from '../../../common/errors.js';
import { Inbox } from '../../../leader/inbox.js';
import { generateLines } from '../../../scripts/generate.js';
import {
  cleanup,
  csvOf,
  ingest,
  onCleanup,
  quietLogger,
  startLeader,
  tempDir,
  waitFor,
} from '../../helpers.js';

const STABLE = { INBOX_STABLE_MS: '300' };

function rowsCsv(rows: number, seed: number): string {
  return `${[...generateLines({ rows, seed })].join('\n')}\n`;
}

/**
 * The name of a report in `names` whose data file is there too (matching `suffix`), if any. The inbox writes the
 * report first and then moves the file beside it, so a report alone means the file is still on its way.
 */
function handledReport(names: string[], suffix = ''): string | undefined {
  return names.find((n) => n.endsWith(`${suffix}${REPORT}`) && names.includes(n.slice(0, -REPORT.length)));
}
const REPORT = '.report.json';

/** Waits until `folder` holds a data file and its report; returns the report. */
async function reportIn(folder: string): Promise<Record<string, unknown>> {
  const name = await waitFor(
    async () => handledReport(await readdir(folder)),
    10_000,
    `a file and its report in ${folder}`,
  );
  return JSON.parse(await readFile(join(folder, name), 'utf8')) as Record<string, unknown>;
}

/**
 * The clock the inbox times a file's stability with, moved only by the test: however slow the machine, a file
 * being written never looks stable, since no time passes for the inbox between two writes unless the test says so.
 */
function fakeElapsed(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

/** Waits for `name` and its report in `folder`, moving `clock` on by 100 ms per look (the file is then stable). */
async function reportAfter(
  folder: string,
  name: string,
  clock: { advance: (ms: number) => void },
): Promise<Record<string, unknown>> {
  const report = await waitFor(
    async () => {
      clock.advance(100);
      return handledReport(await readdir(folder), `-${name}`);
    },
    10_000,
    `${name} and its report in ${folder}`,
  );
  return JSON.parse(await readFile(join(folder, report), 'utf8')) as Record<string, unknown>;
}

describe('leader inbox', () => {
  afterEach(cleanup);

  it('ingests a file dropped slowly in pieces once, after it is complete, and moves it to done/', async () => {
    const clock = fakeElapsed();
    const leader = await startLeader(STABLE, {}, {}, quietLogger(), clock.now);
    const inbox = leader.config.inboxDir;
    const csv = rowsCsv(3000, 1);
    const path = join(inbox, 'promotions.csv');
    const pieces = 5;
    const size = Math.ceil(csv.length / pieces);
    for (let i = 0; i < pieces; i++) {
      await appendFile(path, csv.slice(i * size, (i + 1) * size));
      // Half the stable time between pieces, as the inbox's clock counts it (real time does not matter).
      clock.advance(Number(STABLE.INBOX_STABLE_MS) / 2);
    }
    const report = await reportAfter(join(inbox, 'done'), 'promotions.csv', clock);
    expect(report).to.include({ file: 'promotions.csv', accepted: true, version: 1, rows: 3000 });
    expect(leader.store.list().map((m) => m.rows)).to.deep.equal([3000]);
    const done = await readdir(join(inbox, 'done'));
    expect(done.filter((n) => n.endsWith('-promotions.csv'))).to.have.length(1);
    expect(await readdir(inbox)).to.have.members(['done', 'rejected']);
  });

  it('moves a bad file to rejected/ with a report of its bad rows; the live version stays', async () => {
    const leader = await startLeader(STABLE);
    await ingest(leader.url, csvOf([['a', '1', '2018-01-04 06:01:20']]));
    const bad = csvOf([
      ['b', '2', '2018-01-04 06:01:20'],
      ['c', '1,5', '2018-01-04 06:01:20'],
      ['d', '3', '2018-02-30 06:01:20'],
    ]);
    await writeFile(join(leader.config.inboxDir, 'bad.csv'), bad);
    const report = await reportIn(join(leader.config.inboxDir, 'rejected'));
    expect(report).to.include({ file: 'bad.csv', accepted: false, error: 'INGEST_BAD_ROWS', badRowCount: 2 });
    expect(report.message).to.match(/^line 2: /);
    const rows = report.badRows as { line: number; column: string; value: string; reason: string }[];
    expect(rows.map((r) => [r.line, r.column])).to.deep.equal([
      [2, 'row'],
      [3, 'expiration_date'],
    ]);
    expect(rows[1].value).to.equal('2018-02-30 06:01:20');
    expect(leader.store.current()?.version).to.equal(1);
  });

  it('refuses a dropped file much smaller than the current version (no force from the inbox)', async () => {
    const leader = await startLeader(STABLE);
    await ingest(leader.url, rowsCsv(10, 4));
    await writeFile(join(leader.config.inboxDir, 'small.csv'), rowsCsv(2, 5));
    const report = await reportIn(join(leader.config.inboxDir, 'rejected'));
    expect(report).to.include({ file: 'small.csv', accepted: false, error: 'INGEST_SHRINK' });
    expect(report.message).to.include('force=true');
    expect(leader.store.list().map((m) => m.rows)).to.deep.equal([10]);
  });

  it('does not ingest early a file found half-copied at start', async () => {
    const dataDir = await tempDir();
    const inbox = join(dataDir, 'inbox');
    await mkdir(inbox, { recursive: true });
    const csv = rowsCsv(2000, 2);
    const path = join(inbox, 'late.csv');
    await writeFile(path, csv.slice(0, csv.length / 2));
    const clock = fakeElapsed();
    const leader = await startLeader({ ...STABLE, DATA_DIR: dataDir }, {}, {}, quietLogger(), clock.now);
    clock.advance(Number(STABLE.INBOX_STABLE_MS) - 1);
    await appendFile(path, csv.slice(csv.length / 2));
    const report = await reportAfter(join(inbox, 'done'), 'late.csv', clock);
    expect(report).to.include({ accepted: true, rows: 2000 });
    expect(leader.store.list()).to.have.length(1);
  });

  it('ignores files being copied under a temporary name until they are renamed', async () => {
    const clock = fakeElapsed();
    const leader = await startLeader(STABLE, {}, {}, quietLogger(), clock.now);
    const inbox = leader.config.inboxDir;
    await writeFile(join(inbox, 'next.csv.partial'), rowsCsv(10, 3));
    await writeFile(join(inbox, '.hidden.csv'), rowsCsv(10, 3));
    // A file dropped after them, ingested once stable: by then the inbox has seen the other two and passed over them.
    await writeFile(join(inbox, 'first.csv'), rowsCsv(10, 6));
    expect(await reportAfter(join(inbox, 'done'), 'first.csv', clock)).to.include({ version: 1 });
    clock.advance(100 * Number(STABLE.INBOX_STABLE_MS));
    await rename(join(inbox, 'next.csv.partial'), join(inbox, 'next.csv'));
    expect(await reportAfter(join(inbox, 'done'), 'next.csv', clock)).to.include({ rows: 10, version: 2 });
    // Two versions, first.csv's and next.csv's: neither ignored name was ever ingested (nor refused).
    expect(leader.store.list()).to.have.length(2);
    expect(await readdir(join(inbox, 'rejected'))).to.deep.equal([]);
    expect(await readdir(inbox)).to.have.members(['.hidden.csv', 'done', 'rejected']);
  });

  it('keeps only the newest INBOX_KEEP_FILES files of done/ when INBOX_KEEP_MS is 0', async () => {
    const leader = await startLeader({ ...STABLE, INBOX_KEEP_FILES: '1', INBOX_KEEP_MS: '0' });
    const done = join(leader.config.inboxDir, 'done');
    for (const [i, name] of ['one.csv', 'two.csv'].entries()) {
      await writeFile(join(leader.config.inboxDir, name), rowsCsv(10, 10 + i));
      await waitFor(
        async () => (leader.store.current()?.version === i + 1 ? true : undefined),
        10_000,
        `version ${i + 1}`,
      );
    }
    // The version is current a moment before its file moves to done/: wait for the move and the prune after it.
    const kept = await waitFor(
      async () => {
        const names = (await readdir(done)).sort();
        return names.length === 2 && names.every((n) => n.includes('-two.csv')) ? names : undefined;
      },
      5000,
      'done/ to keep only two.csv and its report',
    );
    expect(kept[0]).to.match(/-two\.csv$/);
    expect(kept[1]).to.match(/-two\.csv\.report\.json$/);
  });

  it('prunes no handled file younger than INBOX_KEEP_MS, however many come; older ones past the count go', async () => {
    const dir = join(await tempDir(), 'inbox');
    let now = Date.parse('2026-12-01T09:00:00.000Z');
    const refuse = {
      ingestFile: async () => {
        throw new AppError('INGEST_EMPTY', 'the file has no rows');
      },
    };
    const inbox = new Inbox(
      { inboxDir: dir, inboxStableMs: 20, inboxKeepFiles: 3, inboxKeepMs: 7 * 24 * 3600_000 },
      refuse,
      quietLogger(),
      () => now,
    );
    onCleanup(() => inbox.close());
    await inbox.start();
    const rejected = join(dir, 'rejected');
    const handled = async () => (await readdir(rejected)).filter((n) => !n.endsWith('.report.json')).sort();
    // A file moves to rejected/ a moment before its report is written: wait for both.
    const drop = async (name: string, count: number) => {
      await writeFile(join(dir, name), '');
      await waitFor(
        async () =>
          (await handled()).length === count && (await readdir(rejected)).length === 2 * count
            ? true
            : undefined,
        10_000,
        name,
      );
    };
    for (let i = 1; i <= 5; i++) {
      now += 1000;
      await drop(`f${i}.csv`, i);
    }
    // Five reports written within seconds: all kept, with their data files.
    expect(await readdir(rejected)).to.have.length(10);
    // Eight days on, a sixth comes: the five are past the age, so only the newest three of all six stay.
    now += 8 * 24 * 3600_000;
    await drop('f6.csv', 3);
    expect((await handled()).map((n) => n.replace(/^.*Z-/, ''))).to.deep.equal([
      'f4.csv',
      'f5.csv',
      'f6.csv',
    ]);
    expect(await readdir(rejected)).to.have.length(6);
  });
});
