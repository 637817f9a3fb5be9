import { expect } from 'chai';
import { loadSnapshot } from '../../../common/snapshot/reader.js';
import { ParsePool } from '../../../leader/parse-pool.js';
import { cleanup, tempDir } from '../../helpers.js';
import { buildFile, expectedAnswers, type Row } from '../common/snapshot/snapshot-file.js';

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
