/** The memory a memory-mode version is built in, from bytes a verifier proved. */
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { MemoryArena, memorySnapshotOf, PARTITION_ALIGN } from '../../../../common/snapshot/memory-arena.js';
import {
  BodyVerifier,
  checkDirectory,
  checkHeader,
  directoryRange,
} from '../../../../common/snapshot/verifier.js';
import { cleanup, tempDir } from '../../../helpers.js';
import { buildFile, expectedAnswers, mixedRows } from '../../../snapshot-file.js';

async function layout() {
  const dir = await tempDir();
  const rows = mixedRows(1000);
  const { path } = await buildFile(dir, rows, { targetPartitionRows: 40 });
  const file = await readFile(path);
  const header = checkHeader(file.subarray(0, 256), file.length);
  const { start, end } = directoryRange(header);
  return { file, header, partitions: checkDirectory(header, file.subarray(start, end)), rows };
}

describe('common/snapshot/memory-arena', () => {
  afterEach(cleanup);

  it('places every partition at an aligned offset of one buffer, holding exactly its bytes once verified', async () => {
    const { file, header, partitions, rows } = await layout();
    const arena = new MemoryArena(partitions);
    const v = new BodyVerifier(header, partitions, arena);
    v.accept(file.subarray(v.position, v.end));
    const snap = memorySnapshotOf(v);
    expect(snap.residentBytes).to.equal(partitions.reduce((n, e) => n + e.bytes, 0));
    for (const [id, body] of expectedAnswers(rows)) expect(snap.lookup(id), id).to.equal(body);
    // Alignment is what lets MemorySnapshot read slots through a Uint32Array.
    for (const [i, slice] of arena.slices.entries()) {
      expect(slice.byteOffset % PARTITION_ALIGN, `partition ${i}`).to.equal(0);
      expect(slice.length).to.equal(partitions[i].bytes);
      expect(slice.buffer).to.equal(arena.slices[0].buffer);
    }
  });

  it('gives a version only for the verifier that fed it, once that verifier is done', async () => {
    const { file, header, partitions } = await layout();
    const arena = new MemoryArena(partitions);
    const v = new BodyVerifier(header, partitions, arena);
    expect(() => arena.toSnapshot(v)).to.throw(/complete body/);
    v.accept(file.subarray(v.position, v.end));
    const other = new BodyVerifier(header, partitions, new MemoryArena(partitions));
    expect(() => arena.toSnapshot(other)).to.throw(/verifier that fed this arena/);
    expect(arena.toSnapshot(v).lookup('absent')).to.equal(undefined);
  });
});
