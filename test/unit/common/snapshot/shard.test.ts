import { randomUUID } from 'node:crypto';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { SnapshotError } from '../../../../common/errors.js';
import {
  HEADER_BYTES,
  MAX_SHARD_BITS,
  partitionOf,
  type SnapshotHeader,
} from '../../../../common/snapshot/format.js';
import { keyHash1 } from '../../../../common/snapshot/key-hash.js';
import { loadSnapshot, readLayout } from '../../../../common/snapshot/reader.js';
import {
  MAX_SHARDS,
  parseShard,
  type Shard,
  shardOf,
  shardOfId,
  shardRange,
} from '../../../../common/snapshot/shard.js';
import { cleanup, tempDir } from '../../../helpers.js';
import { buildFile, expectedAnswers, type Row } from '../../../snapshot-file.js';

function uuidRows(n: number): Row[] {
  return Array.from(
    { length: n },
    (_, i): Row => [randomUUID(), `${i}.25`, '2018-01-01 00:00:00 +0200 CEST'],
  );
}

async function layoutOf(path: string) {
  const h = await open(path, 'r');
  try {
    return await readLayout(h);
  } finally {
    await h.close();
  }
}

/** A copy of `path` holding only what a replica of `shard` keeps: header, the shard's range, the directory. */
async function sparseCopy(path: string, shard: Shard, out: string): Promise<{ start: number; stop: number }> {
  const bytes = await readFile(path);
  const { header, partitions } = await layoutOf(path);
  const range = shardRange(header, partitions, shard);
  const copy = Buffer.alloc(bytes.length);
  bytes.copy(copy, 0, 0, HEADER_BYTES);
  bytes.copy(copy, range.start, range.start, range.stop);
  bytes.copy(copy, header.directoryOffset, header.directoryOffset);
  await writeFile(out, copy);
  return range;
}

async function refusal(load: Promise<unknown>): Promise<string> {
  try {
    await load;
  } catch (err) {
    expect(err).to.be.instanceOf(SnapshotError);
    return (err as SnapshotError).code;
  }
  return 'loaded';
}

describe('common/snapshot/shard', () => {
  afterEach(cleanup);

  it('parses k/S: S a power of two from 1 to 64, k below S', () => {
    expect(MAX_SHARDS)
      .to.equal(2 ** MAX_SHARD_BITS)
      .and.to.be.at.least(64);
    expect(parseShard('1/4')).to.deep.equal({ index: 1, count: 4, bits: 2 });
    expect(parseShard('0/1')).to.deep.equal({ index: 0, count: 1, bits: 0 });
    expect(parseShard('63/64')).to.deep.equal({ index: 63, count: 64, bits: 6 });
    for (const bad of ['4/4', '1/3', '0/0', '0/128', '-1/4', '1', 'a/b', '1/4/2', ''])
      expect(parseShard(bad), bad).to.be.a('string');
    expect(parseShard('1/3')).to.match(/power of two/);
    expect(parseShard('4/4')).to.match(/from 0 to 3/);
  });

  it('builds every file with at least MAX_SHARD_BITS partition bits, so a 10-row file splits into 8 shards', async () => {
    const dir = await tempDir();
    const rows = uuidRows(10);
    const { path, header } = await buildFile(dir, rows);
    expect(header.partitionBits).to.equal(MAX_SHARD_BITS);
    const { partitions } = await layoutOf(path);
    const expected = expectedAnswers(rows);
    const shard8 = (k: number) => shardOf(k, 8);
    let served = 0;
    for (let k = 0; k < 8; k++) {
      const copy = join(dir, `s${k}.snap`);
      await sparseCopy(path, shard8(k), copy);
      const snap = await loadSnapshot(copy, {}, 'memory', shard8(k));
      served += snap.heldRows;
      for (const [id, body] of expected) {
        if (shardOfId(id, 3) === k) expect(snap.lookup(id), id).to.equal(body);
      }
    }
    expect(served).to.equal(10);
    // Empty partitions are valid: most of the 64 hold no row.
    expect(partitions.filter((p) => p.rows === 0).length).to.be.greaterThan(40);
  });

  it('shard ranges tile the body in order, and each id lies in its shard', async () => {
    const dir = await tempDir();
    const rows = uuidRows(3000);
    const { path, header } = await buildFile(dir, rows, { targetPartitionRows: 20 });
    expect(header.partitionBits).to.be.greaterThan(MAX_SHARD_BITS);
    const { partitions } = await layoutOf(path);
    for (const count of [1, 2, 4, 8, 64]) {
      let at = HEADER_BYTES;
      let first = 0;
      for (let k = 0; k < count; k++) {
        const r = shardRange(header, partitions, shardOf(k, count));
        expect([r.first, r.start], `${k}/${count}`).to.deep.equal([first, at]);
        expect(r.end - r.first).to.equal(partitions.length / count);
        at = r.stop;
        first = r.end;
      }
      expect([first, at]).to.deep.equal([partitions.length, header.directoryOffset]);
      const bits = Math.log2(count);
      for (const [id] of rows.slice(0, 200)) {
        const r = shardRange(header, partitions, shardOf(shardOfId(id, bits), count));
        const p = partitionOf(keyHash1(id), header.partitionBits);
        expect(p >= r.first && p < r.end, id).to.equal(true);
      }
    }
  });

  it('refuses a shard count above the file partition count with a named error', () => {
    const header = { partitionBits: 2, version: 3 } as SnapshotHeader;
    expect(() => shardRange(header, [], shardOf(1, 8)))
      .to.throw(SnapshotError)
      .with.property('code', 'SNAPSHOT_BAD_LAYOUT');
  });

  for (const mode of ['memory', 'disk'] as const) {
    it(`verifies and serves only its shard's partitions from a file holding only them (${mode} mode)`, async () => {
      const dir = await tempDir();
      const rows = uuidRows(4000);
      const { path, header } = await buildFile(dir, rows, { targetPartitionRows: 100 });
      const shard = shardOf(2, 4);
      const copy = join(dir, 'shard.snap');
      const range = await sparseCopy(path, shard, copy);

      // The whole file does not verify (the other shards are zeros); the shard does.
      expect(await refusal(loadSnapshot(copy, {}, mode))).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
      const snap = await loadSnapshot(copy, { checksum: header.checksum }, mode, shard);
      const expected = expectedAnswers(rows);
      const mine = [...expected].filter(([id]) => shardOfId(id, 2) === 2);
      expect(snap.heldRows).to.equal(mine.length);
      expect(mine.length).to.be.within(800, 1200);
      for (const [id, body] of mine) expect(await snap.lookup(id), id).to.equal(body);
      // An id of another shard is never looked for in the hole: no answer.
      const other = [...expected.keys()].find((id) => shardOfId(id, 2) !== 2) as string;
      expect(await snap.lookup(other)).to.equal(undefined);
      if (mode === 'memory') {
        expect(snap.residentBytes).to.be.within(range.stop - range.start, range.stop - range.start + 8 * 64);
      }
      await snap.close();

      // A flipped byte inside the shard's range is refused; one in another shard's range is not its concern.
      const bytes = await readFile(copy);
      const inside = Buffer.from(bytes);
      inside[range.start + Math.floor((range.stop - range.start) / 2)] ^= 0x10;
      await writeFile(copy, inside);
      expect(await refusal(loadSnapshot(copy, {}, mode, shard))).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
      const outside = Buffer.from(bytes);
      outside[range.stop + 10] ^= 0x10;
      await writeFile(copy, outside);
      expect(await refusal(loadSnapshot(copy, {}, mode, shard).then((s) => s.close()))).to.equal('loaded');
      // Truncated inside the shard's range: refused.
      await writeFile(copy, bytes.subarray(0, range.stop - 1));
      expect(await refusal(loadSnapshot(copy, {}, mode, shard))).to.equal('SNAPSHOT_TRUNCATED');
      expect((await stat(path)).size).to.equal(header.fileBytes);
    });
  }
});
