import { readdir } from 'node:fs/promises';
import { expect } from 'chai';
import { AppError } from '../../../common/errors.js';
import { loadSnapshot } from '../../../common/snapshot/reader.js';
import { ParsePool } from '../../../leader/parse-pool.js';
import {
  capturingLogger,
  cleanup,
  csvOf,
  http,
  ingest,
  LEADER_AUTH,
  onCleanup,
  putCsv,
  startLeader,
  tempDir,
  waitFor,
} from '../../helpers.js';
import { buildFile, expectedAnswers, type Row } from '../../snapshot-file.js';

function rows(n: number): Row[] {
  const out: Row[] = [];
  for (let i = 0; i < n; i++) out.push([`id-${i % 7000}`, `${i}.5`, '2018-08-04 05:32:31 +0200 CEST']);
  return out;
}

describe('leader/parse-pool: partitions built on worker threads', function () {
  this.timeout(60_000);
  let pool: ParsePool;
  before(() => {
    pool = new ParsePool(2);
  });
  after(async () => {
    await pool.close();
    await cleanup();
  });

  for (const [name, options, blockRows] of [
    ['from memory, in many ranges', { rangeRows: 500 }, undefined],
    ['from run files', { memoryBytes: 64 * 1024, spillBuckets: 8 }, undefined],
    ['from memory, rows added in grouped blocks', { rangeRows: 500 }, 700],
    ['from run files, rows added in grouped blocks', { memoryBytes: 64 * 1024, spillBuckets: 8 }, 700],
    ['from run files split finer than the groups', { memoryBytes: 64 * 1024, spillBuckets: 512 }, 700],
  ] as const) {
    it(`answers exactly as an inline build, ${name}`, async () => {
      const dir = await tempDir();
      const data = rows(9000);
      const { path } = await buildFile(
        dir,
        data,
        {
          targetPartitionRows: 64,
          rangeBuilder: (...args) => pool.build(...args),
          buildConcurrency: 3,
          ...options,
        },
        'test.snap',
        blockRows,
      );
      const snap = await loadSnapshot(path);
      const expected = expectedAnswers(data);
      expect(snap.header.rowCount).to.equal(expected.size);
      expect(snap.header.duplicateCount).to.equal(data.length - expected.size);
      for (const [id, body] of expected) expect(snap.lookup(id), id).to.equal(body);
    });
  }
});

describe('leader/parse-pool: warm-up', function () {
  this.timeout(60_000);
  afterEach(cleanup);

  it('at leader start, warms every worker and builds a throwaway file through the whole ingest path, committing nothing', async () => {
    const { logger, lines } = capturingLogger();
    const leader = await startLeader({ INGEST_WORKERS: '2', INGEST_WARM_UP_ROWS: '20000' }, {}, {}, logger);
    const warmed = await waitFor(
      () =>
        lines
          .map((l) => JSON.parse(l) as { msg: string; rows?: number })
          .find((l) => l.msg === 'ingest path warmed up'),
      30_000,
      'the warm-up',
    );
    expect(warmed.rows).to.equal(20000);
    expect(leader.pool.warmed).to.equal(2);
    expect(leader.pool.deaths).to.equal(0);
    expect(leader.store.current()).to.equal(undefined);
    expect(await readdir(leader.store.tmpDir)).to.deep.equal([]);
    const res = await putCsv(leader.url, csvOf(rows(5000)));
    expect(res.status, res.text).to.equal(201);
    expect(res.json.version).to.equal(1);
  });
});

describe('leader/ingest: the warm-up gives way', function () {
  this.timeout(60_000);
  afterEach(cleanup);

  it('stops the warm-up when a file arrives first, and ingests the file', async () => {
    const { logger, lines } = capturingLogger();
    // A warm-up far longer than the file: without stopping it, the file would wait for it.
    const leader = await startLeader({ INGEST_WORKERS: '1', INGEST_WARM_UP_ROWS: '5000000' }, {}, {}, logger);
    const res = await putCsv(leader.url, csvOf(rows(2000)));
    expect(res.status, res.text).to.equal(201);
    const said = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(said).to.include('ingest warm-up stopped: a file arrived first');
    expect(said).to.not.include('ingest path warmed up');
    expect(await readdir(leader.store.tmpDir)).to.deep.equal([]);
  });
});

describe('leader/parse-pool: a worker that dies', function () {
  this.timeout(60_000);
  afterEach(cleanup);

  it('fails the jobs it held with INGEST_WORKER_FAILED, and a fresh worker takes the next job', async () => {
    const pool = new ParsePool(1);
    onCleanup(() => pool.close());
    const block = () => Buffer.from('a,1.5,2018-08-04 05:32:31\nb,2,2018-08-04 05:32:31\n');
    expect((await pool.parse(block(), true, 10)).rows).to.equal(2);
    // The worker exits on receiving the job, before it answers: it dies holding the job every time.
    pool.exitOnNextJob = true;
    const failed = await pool.parse(block(), true, 10).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failed).to.be.instanceOf(AppError);
    expect((failed as AppError).code).to.equal('INGEST_WORKER_FAILED');
    expect(pool.deaths).to.equal(1);
    expect((failed as AppError).message).to.include('exit code 1');
    expect((await pool.parse(block(), true, 10)).rows).to.equal(2);
  });

  it('fails the ingest it was part of (500 INGEST_WORKER_FAILED), keeps the live version, and the next ingest works', async () => {
    // No warm-up (the test helpers' default): the next job sent is the ingest's.
    const leader = await startLeader({ INGEST_WORKERS: '2' });
    const v1 = csvOf(rows(50).map(([id, price, date]) => [`${id}-v1`, price, date]));
    await ingest(leader.url, v1);
    leader.pool.exitOnNextJob = true;
    const res = await putCsv(leader.url, csvOf(rows(5000)));
    expect(res.status, res.text).to.equal(500);
    expect(res.json.error).to.equal('INGEST_WORKER_FAILED');
    expect((await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.current).to.equal(1);
    expect(leader.ingestor.busy).to.equal(false);
    const again = await putCsv(leader.url, csvOf(rows(5000)));
    expect(again.status, again.text).to.equal(201);
    expect(again.json.version).to.equal(2);
  });
});
