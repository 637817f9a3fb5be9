import { readFile, stat, writeFile } from 'node:fs/promises';
import { expect } from 'chai';
import { SnapshotError } from '../../../../common/errors.js';
import { type DiskSnapshot, diskStats } from '../../../../common/snapshot/disk-snapshot.js';
import { H, HEADER_BYTES } from '../../../../common/snapshot/format.js';
import { sharedReadPool } from '../../../../common/snapshot/read-pool.js';
import { loadSnapshot } from '../../../../common/snapshot/reader.js';
import { cleanup, tempDir, waitFor } from '../../../helpers.js';
import { buildFile, expectedAnswers, mixedRows } from '../../../snapshot-file.js';

async function expectRefused(path: string, code: string, mode: 'memory' | 'disk' = 'memory'): Promise<void> {
  try {
    await loadSnapshot(path, {}, mode);
  } catch (err) {
    expect(err).to.be.instanceOf(SnapshotError);
    expect((err as SnapshotError).code).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('common/snapshot/reader', () => {
  afterEach(cleanup);

  it('round-trips rows: every id answers its last row, absent ids answer nothing', async () => {
    const dir = await tempDir();
    const rows = mixedRows(3000);
    const { path, header } = await buildFile(dir, rows, { targetPartitionRows: 100 });
    const expected = expectedAnswers(rows);
    expect(header.rowCount).to.equal(expected.size);
    expect(header.duplicateCount).to.equal(rows.length - expected.size);
    expect(header.partitionBits).to.be.greaterThan(3);
    const snap = await loadSnapshot(path, { checksum: header.checksum, snapshotId: header.snapshotId });
    expect(snap.header).to.deep.equal(header);
    for (const [id, body] of expected) expect(snap.lookup(id), id).to.equal(body);
    for (const id of ['absent', rows[1][0].toLowerCase(), `${rows[3][0]}x`, '', 'id-1']) {
      expect(snap.lookup(id), id).to.equal(undefined);
    }
  });

  // Slot table budgets: every table (1 MiB), none, and about a quarter of them (the 3000 rows' ~24 KB of tables).
  const SLOT_BUDGETS = { all: 1 << 20, none: 0, some: 6000 } as const;
  for (const [slots, cache] of [
    ['none', false],
    ['all', false],
    ['none', true],
    ['all', true],
    ['some', false],
  ] as const) {
    it(`answers the same in disk mode, with the file read at lookup time (slot tables: ${slots} in memory, cache ${cache ? 'on' : 'off'})`, async () => {
      const dir = await tempDir();
      const rows = mixedRows(3000);
      const { path } = await buildFile(dir, rows, { targetPartitionRows: 100 });
      const pool = sharedReadPool(1);
      const snap = (await loadSnapshot(path, {}, 'disk', undefined, {
        pool,
        slotBudgetBytes: SLOT_BUDGETS[slots],
        cacheBytes: cache ? 1 << 20 : 0,
      })) as DiskSnapshot;
      expect(snap.mode).to.equal('disk');
      const { held, partitions } = snap.slotTables;
      if (slots === 'all') expect(held).to.equal(partitions);
      else if (slots === 'none') expect(held).to.equal(0);
      else expect(held).to.be.within(1, partitions - 1);
      const overhead = Math.min(SLOT_BUDGETS[slots], 6000 * 4) + (cache ? 1 << 20 : 0);
      expect(snap.residentBytes).to.be.lessThan(10_000 + overhead);
      const expected = expectedAnswers(rows);
      const preads = pool.preads;
      const hits = diskStats.cacheHits;
      const answers = await Promise.all([...expected.keys()].map((id) => snap.lookup(id)));
      expect(answers).to.deep.equal([...expected.values()]);
      // One read per present id whose partition's slot table is in memory (a rare fingerprint collision costs one
      // more), else a probe and the record.
      const perLookup = (pool.preads - preads) / expected.size;
      if (slots === 'all') expect(perLookup).to.be.within(1, 1.05);
      else if (slots === 'none') expect(perLookup).to.be.within(2, 2.05);
      else expect(perLookup).to.be.within(1.05, 1.95);
      // Asked again: the cache answers at once, and with the same bytes.
      const again = [...expected.keys()].map((id) => snap.lookup(id));
      if (cache) {
        expect(diskStats.cacheHits - hits).to.equal(expected.size);
        expect(again.every((a) => typeof a === 'string')).to.equal(true);
      }
      expect(await Promise.all(again)).to.deep.equal([...expected.values()]);
      for (const id of ['absent', rows[1][0].toLowerCase(), ''])
        expect(await snap.lookup(id), id).to.equal(undefined);
      // Closing waits for lookups in progress, which still answer; later lookups throw.
      const pending = snap.lookup(rows[3][0]);
      await snap.close();
      expect(await pending).to.equal(expected.get(rows[3][0]));
      expect(() => snap.lookup(rows[3][0])).to.throw(/closed/);
    });
  }

  it('memory mode frees its partitions at close, without waiting for a garbage collection', async () => {
    const dir = await tempDir();
    const rows = mixedRows(40_000);
    const { path } = await buildFile(dir, rows);
    const snap = await loadSnapshot(path);
    const id = rows[3][0];
    expect(snap.lookup(id)).to.be.a('string');
    const held = snap.residentBytes;
    expect(held).to.be.greaterThan(1_000_000);
    const before = process.memoryUsage().arrayBuffers;
    await snap.close();
    // The snapshot object is still referenced here: only the release can account for the drop.
    await waitFor(
      () => (before - process.memoryUsage().arrayBuffers >= held ? true : undefined),
      10_000,
      'the partitions to be freed',
    );
    expect(() => snap.lookup(id)).to.throw(/closed/);
  });

  it('refuses a corrupted file in disk mode too, before serving anything', async () => {
    const dir = await tempDir();
    const { path } = await buildFile(dir, mixedRows(300), { targetPartitionRows: 32 });
    const b = await readFile(path);
    b[HEADER_BYTES + 40] ^= 1;
    await writeFile(path, b);
    await expectRefused(path, 'SNAPSHOT_CHECKSUM_MISMATCH', 'disk');
  });

  describe('refuses a file it cannot trust, with a named error', () => {
    let path: string;
    let bytes: Buffer;
    beforeEach(async () => {
      const dir = await tempDir();
      path = (await buildFile(dir, mixedRows(500), { targetPartitionRows: 64 })).path;
      bytes = await readFile(path);
    });

    it('wrong magic', async () => {
      const b = Buffer.from(bytes);
      b.write('NOTASNAP', 0, 'latin1');
      await writeFile(path, b);
      await expectRefused(path, 'SNAPSHOT_BAD_MAGIC');
    });

    it('unknown major version', async () => {
      const b = Buffer.from(bytes);
      b.writeUInt16LE(2, H.formatMajor);
      await writeFile(path, b);
      await expectRefused(path, 'SNAPSHOT_BAD_VERSION');
    });

    it('a flipped byte in the header, a partition, or the directory', async () => {
      for (const at of [H.rowCount, HEADER_BYTES + 5, bytes.length - 3]) {
        const b = Buffer.from(bytes);
        b[at] ^= 0x40;
        await writeFile(path, b);
        await expectRefused(path, 'SNAPSHOT_CHECKSUM_MISMATCH');
      }
    });

    it('a truncated file', async () => {
      await writeFile(path, bytes.subarray(0, bytes.length - 10));
      await expectRefused(path, 'SNAPSHOT_TRUNCATED');
      await writeFile(path, bytes.subarray(0, 100));
      await expectRefused(path, 'SNAPSHOT_TRUNCATED');
    });

    it('extra bytes after the directory', async () => {
      await writeFile(path, Buffer.concat([bytes, Buffer.from('x')]));
      await expectRefused(path, 'SNAPSHOT_BAD_LAYOUT');
    });

    it('a file that is not the one the manifest names', async () => {
      try {
        await loadSnapshot(path, { checksum: '00'.repeat(32) });
        expect.fail('expected a refusal');
      } catch (err) {
        expect((err as SnapshotError).code).to.equal('SNAPSHOT_ID_MISMATCH');
      }
    });
  });

  it('fuzz: every flipped or truncated variant is refused or answers exactly, never crashes or hangs', async () => {
    const dir = await tempDir();
    const rows = mixedRows(300);
    const { path } = await buildFile(dir, rows, { targetPartitionRows: 32 });
    const good = await readFile(path);
    const expected = expectedAnswers(rows);
    const size = (await stat(path)).size;
    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(good);
      let variant: Buffer = b;
      if (i % 3 === 2) {
        variant = b.subarray(0, rand(size));
      } else {
        for (let k = 0; k <= i % 4; k++) b[rand(size)] ^= 1 << rand(8);
      }
      await writeFile(path, variant);
      try {
        const snap = await loadSnapshot(path);
        // Accepted only when the bytes are unchanged (a flip that flipped back): then it must answer exactly.
        for (const [id, body] of expected) expect(snap.lookup(id)).to.equal(body);
      } catch (err) {
        expect(err, String(err)).to.be.instanceOf(SnapshotError);
        refused++;
      }
    }
    expect(refused).to.be.greaterThan(290);
  });
});
