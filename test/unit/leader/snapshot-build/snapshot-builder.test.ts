/**
 * The snapshot builder as ingest drives it: rows one by one or in grouped blocks, in memory or through run files,
 * give one file whose header says what was built and whose lookups answer the last row of each id.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { FORMAT_MAJOR, FORMAT_MINOR, MAX_SHARD_BITS } from '../../../../common/snapshot/format.js';
import { loadSnapshot } from '../../../../common/snapshot/reader.js';
import { SnapshotBuilder } from '../../../../leader/snapshot-build/snapshot-builder.js';
import { cleanup, tempDir } from '../../../helpers.js';
import { buildFile, expectedAnswers, mixedRows, promotion } from '../../../snapshot-file.js';

describe('leader/snapshot-build/snapshot-builder', () => {
  afterEach(cleanup);

  it('writes a header that names the format, the build and what the rows gave', async () => {
    const dir = await tempDir();
    const rows = mixedRows(8000);
    const { path, header } = await buildFile(dir, rows, { targetPartitionRows: 100 });
    const expected = expectedAnswers(rows);
    expect(header.formatMajor).to.equal(FORMAT_MAJOR);
    expect(header.formatMinor).to.equal(FORMAT_MINOR);
    expect(header).to.include({ version: 3, sourceSha256: 'ab'.repeat(32), badRowCount: 0 });
    expect(header.rowCount).to.equal(expected.size);
    expect(header.duplicateCount).to.equal(rows.length - expected.size);
    // About 100 rows per partition: 2^7 = 128 partitions for the 8000 ids (and their duplicates).
    expect(header.partitionBits).to.equal(7);
    expect(header.fileBytes).to.equal((await stat(path)).size);
    expect(header.snapshotId).to.match(/^[0-9a-f]{32}$/);
    // The header returned is the header written.
    expect((await loadSnapshot(path)).header).to.deep.equal(header);
  });

  it('builds the same answers through run files when rows exceed the memory budget, and removes them', async () => {
    const dir = await tempDir();
    const rows = mixedRows(20_000);
    // 64 KiB of memory forces the spill after a few hundred rows, and runs larger than that are split again.
    const { path, header } = await buildFile(dir, rows, {
      memoryBytes: 64 * 1024,
      spillBuckets: 4,
      targetPartitionRows: 50,
    });
    const expected = expectedAnswers(rows);
    expect(header.rowCount).to.equal(expected.size);
    const snap = await loadSnapshot(path);
    for (const [id, body] of expected) expect(snap.lookup(id), id).to.equal(body);
    expect((await readdir(dir)).sort()).to.deep.equal(['test.snap']);
  });

  for (const [name, options] of [
    ['in memory', {}],
    ['through run files', { memoryBytes: 64 * 1024, spillBuckets: 8 }],
  ] as const) {
    it(`answers the same for rows added in grouped blocks as one by one, ${name}`, async () => {
      const dir = await tempDir();
      // Repeated ids across blocks: the last of each id must win whichever way the rows came.
      const rows = mixedRows(5000);
      const opts = { targetPartitionRows: 64, ...options };
      const one = await buildFile(dir, rows, opts, 'one.snap');
      const blocks = await buildFile(dir, rows, opts, 'blocks.snap', 333);
      expect(blocks.header.rowCount).to.equal(one.header.rowCount);
      expect(blocks.header.duplicateCount).to.equal(one.header.duplicateCount);
      const snap = await loadSnapshot(blocks.path);
      for (const [id, body] of expectedAnswers(rows)) expect(snap.lookup(id), id).to.equal(body);
    });
  }

  it('says whether it spilled', async () => {
    const dir = await tempDir();
    const small = new SnapshotBuilder({ path: join(dir, 'a.snap'), tmpDir: dir, memoryBytes: 64 << 20 });
    const spilling = new SnapshotBuilder({ path: join(dir, 'b.snap'), tmpDir: dir, memoryBytes: 64 * 1024 });
    for (const [i, row] of mixedRows(3000).entries()) {
      await small.add(promotion(row, i + 1));
      await spilling.add(promotion(row, i + 1));
    }
    expect(small.stats).to.deep.equal({ rowsAdded: 3334, spilled: false });
    expect(spilling.stats).to.deep.equal({ rowsAdded: 3334, spilled: true });
    await small.abort();
    await spilling.abort();
  });

  it('abort removes its run files and writes nothing', async () => {
    const dir = await tempDir();
    const builder = new SnapshotBuilder({ path: join(dir, 'x.snap'), tmpDir: dir, memoryBytes: 64 * 1024 });
    for (const [i, row] of mixedRows(3000).entries()) await builder.add(promotion(row, i + 1));
    expect(await readdir(dir)).to.have.length(1);
    await builder.abort();
    await builder.abort();
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('refuses a spill bucket count that is not a power of two', () => {
    expect(
      () => new SnapshotBuilder({ path: 'x', tmpDir: 'y', memoryBytes: 1 << 20, spillBuckets: 6 }),
    ).to.throw('spillBuckets must be a power of two');
  });

  it('builds an empty file that answers nothing', async () => {
    const dir = await tempDir();
    const { path, header } = await buildFile(dir, []);
    expect(header.rowCount).to.equal(0);
    // Never fewer than MAX_SHARD_BITS partition bits: any file splits into up to 64 shards (FORMAT.md, Shards).
    expect(header.partitionBits).to.equal(MAX_SHARD_BITS);
    expect((await loadSnapshot(path)).lookup('x')).to.equal(undefined);
  });
});
