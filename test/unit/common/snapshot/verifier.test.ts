/**
 * The snapshot verifier as a pull uses it: header and directory checked first, then the body fed in any chunking,
 * from any point reached, with every byte covered; and the same answers as a file loaded by the reader.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { SnapshotError } from '../../../../common/errors.js';
import { H, HEADER_BYTES, type PartitionEntry } from '../../../../common/snapshot/format.js';
import { MemoryArena, memorySnapshotOf } from '../../../../common/snapshot/memory-arena.js';
import { loadSnapshot } from '../../../../common/snapshot/reader.js';
import {
  type BodySink,
  BodyVerifier,
  checkDirectory,
  checkHeader,
  directoryRange,
} from '../../../../common/snapshot/verifier.js';
import { cleanup, tempDir } from '../../../helpers.js';
import { buildFile, expectedAnswers, type Row } from '../../../snapshot-file.js';

function rows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => [
    i % 3 === 0 ? `id-${i}` : randomUUID(),
    `${i}.${i % 10}5`,
    '2018-06-04 06:01:20 +0200 CEST',
  ]);
}

/** A built file and its parts as a pull sees them. */
async function pulled(n = 2000, targetPartitionRows = 64) {
  const dir = await tempDir();
  const list = rows(n);
  const { path, header } = await buildFile(dir, list, { targetPartitionRows });
  const file = await readFile(path);
  const { start, end } = directoryRange(header);
  return { file, header, directory: file.subarray(start, end), expected: expectedAnswers(list) };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(SnapshotError);
    return (err as SnapshotError).code;
  }
  return 'no error';
}

/** Feeds body bytes [from, to) of `file` in chunks of `size`. */
function feed(v: BodyVerifier, file: Buffer, size: number, to = v.end): void {
  while (v.position < to) v.accept(file.subarray(v.position, Math.min(to, v.position + size)));
}

describe('common/snapshot/verifier', () => {
  afterEach(cleanup);

  it('checks the header against the manifest and finds the directory it names', async () => {
    const { file, header, directory } = await pulled();
    const head = file.subarray(0, HEADER_BYTES);
    expect(
      checkHeader(head, file.length, { checksum: header.checksum, snapshotId: header.snapshotId }),
    ).to.deep.equal(header);
    expect(codeOf(() => checkHeader(head, file.length, { checksum: 'ab'.repeat(32) }))).to.equal(
      'SNAPSHOT_ID_MISMATCH',
    );
    expect(codeOf(() => checkHeader(head, file.length, { snapshotId: 'cd'.repeat(16) }))).to.equal(
      'SNAPSHOT_ID_MISMATCH',
    );
    // The manifest's size must be the header's.
    expect(codeOf(() => checkHeader(head, file.length + 1))).to.equal('SNAPSHOT_BAD_LAYOUT');
    expect(codeOf(() => checkHeader(head.subarray(0, 100), file.length))).to.equal('SNAPSHOT_TRUNCATED');
    const flipped = Buffer.from(head);
    flipped[H.rowCount] ^= 1;
    expect(codeOf(() => checkHeader(flipped, file.length))).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');

    expect(checkDirectory(header, directory)).to.have.length(2 ** header.partitionBits);
    const bad = Buffer.from(directory);
    bad[5] ^= 1;
    expect(codeOf(() => checkDirectory(header, bad))).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
    expect(codeOf(() => checkDirectory(header, directory.subarray(1)))).to.equal('SNAPSHOT_BAD_LAYOUT');
  });

  it('verifies a body fed in any chunking and answers as the file reader does', async () => {
    const { file, header, directory, expected } = await pulled();
    const partitions = checkDirectory(header, directory);
    expect(partitions.length).to.be.greaterThan(8);
    for (const size of [1, 7, 4096, 65536, file.length]) {
      const v = new BodyVerifier(header, partitions, new MemoryArena(partitions));
      feed(v, file, size);
      expect(v.done, `chunks of ${size}`).to.equal(true);
      const snap = memorySnapshotOf(v);
      for (const [id, body] of expected) expect(snap.lookup(id), id).to.equal(body);
      expect(snap.lookup('absent')).to.equal(undefined);
    }
  });

  it('goes on from where a cut stopped: two verifiers agree whatever the cut point', async () => {
    const { file, header, directory, expected } = await pulled(500, 32);
    const partitions = checkDirectory(header, directory);
    for (const cut of [
      HEADER_BYTES + 1,
      partitions[2].offset,
      partitions[2].offset + 3,
      header.directoryOffset - 1,
    ]) {
      const v = new BodyVerifier(header, partitions, new MemoryArena(partitions));
      feed(v, file, 1000, cut);
      expect(v.position).to.equal(cut);
      expect(v.done).to.equal(false);
      feed(v, file, 333);
      const snap = memorySnapshotOf(v);
      for (const [id, body] of expected) expect(snap.lookup(id), id).to.equal(body);
    }
  });

  it('hands every body byte to its sink once, in file order, with the partition and the place it is in', async () => {
    const { file, header, directory } = await pulled(500, 32);
    const partitions = checkDirectory(header, directory);
    const got: number[][] = partitions.map(() => []);
    const sink: BodySink = {
      take: (partition, at, piece) => {
        expect(at, `partition ${partition}`).to.equal(got[partition].length);
        got[partition].push(...piece);
      },
    };
    const v = new BodyVerifier(header, partitions, sink);
    feed(v, file, 777);
    for (const [i, e] of partitions.entries()) {
      expect(
        Buffer.from(got[i]).equals(file.subarray(e.offset, e.offset + e.bytes)),
        `partition ${i}`,
      ).to.equal(true);
    }
  });

  it('refuses a flipped bit in any partition at that partition end, holding nothing (memory or disk mode)', async () => {
    const { file, header, directory } = await pulled(500, 32);
    const partitions = checkDirectory(header, directory);
    const last = partitions.at(-1) as PartitionEntry;
    for (const keep of [true, false]) {
      for (const at of [HEADER_BYTES, partitions[1].offset + 9, last.offset + last.bytes - 1]) {
        const bad = Buffer.from(file);
        bad[at] ^= 0x10;
        const v = new BodyVerifier(header, partitions, keep ? new MemoryArena(partitions) : undefined);
        expect(codeOf(() => feed(v, bad, 4096))).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
        // Nothing past the bad partition was taken.
        const e = partitions.find((p) => p.offset <= at && at < p.offset + p.bytes) as PartitionEntry;
        expect(v.position).to.be.at.most(e.offset + e.bytes);
        expect(v.done).to.equal(false);
      }
    }
  });

  it('refuses bytes past the body end, and a snapshot before its body is complete', async () => {
    const { file, header, directory } = await pulled(200, 32);
    const partitions = checkDirectory(header, directory);
    const v = new BodyVerifier(header, partitions, new MemoryArena(partitions));
    expect(() => memorySnapshotOf(v)).to.throw(/complete body/);
    feed(v, file, 4096);
    expect(codeOf(() => v.accept(Buffer.alloc(1)))).to.equal('SNAPSHOT_BAD_LAYOUT');
    const disk = new BodyVerifier(header, partitions);
    feed(disk, file, 4096);
    expect(disk.done).to.equal(true);
    expect(() => memorySnapshotOf(disk)).to.throw(/MemoryArena/);
  });

  it('loads from a file through the same checks (the reader feeds it in chunks)', async () => {
    const dir = await tempDir();
    const list = rows(3000);
    const { path, header } = await buildFile(dir, list, { targetPartitionRows: 50 });
    const snap = await loadSnapshot(path, { checksum: header.checksum });
    for (const [id, body] of expectedAnswers(list)) expect(snap.lookup(id), id).to.equal(body);
  });
});
