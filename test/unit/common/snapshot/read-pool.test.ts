import { randomUUID } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { DiskSnapshot } from '../../../../common/snapshot/disk-snapshot.js';
import { decodeDirectory, decodeHeader, HEADER_BYTES } from '../../../../common/snapshot/format.js';
import { RESULT_ERROR } from '../../../../common/snapshot/read-channel.js';
import { DiskReadPool } from '../../../../common/snapshot/read-pool.js';
import { cleanup, tempDir } from '../../../helpers.js';
import { buildFile, expectedAnswers, type Row } from '../../../snapshot-file.js';

function rows(n: number): Row[] {
  return Array.from(
    { length: n },
    (_, i) => [randomUUID(), `${i}.5`, '2020-01-02 03:04:05 +0100 CET'] as const,
  );
}

/** Opens `path` in disk mode on `pool`, slot tables on disk (every lookup goes to the pool). */
async function openDisk(path: string, pool: DiskReadPool): Promise<DiskSnapshot> {
  const h = await open(path, 'r');
  const head = Buffer.alloc(HEADER_BYTES);
  await h.read(head, 0, HEADER_BYTES, 0);
  const header = decodeHeader(head, (await h.stat()).size);
  const dir = Buffer.alloc(header.fileBytes - header.directoryOffset);
  await h.read(dir, 0, dir.length, header.directoryOffset);
  return DiskSnapshot.open(header, decodeDirectory(dir, header), h, {
    pool,
    slotBudgetBytes: 0,
    cacheBytes: 0,
  });
}

describe('common/snapshot/read-pool', () => {
  const pools: DiskReadPool[] = [];
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.close();
    await cleanup();
  });

  it('gathers the reads of one turn into one batch and answers each', async () => {
    const dir = await tempDir();
    const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));
    const path = join(dir, 'bytes');
    await writeFile(path, data);
    const h = await open(path, 'r');
    const pool = new DiskReadPool(2);
    pools.push(pool);
    const reads = Array.from({ length: 100 }, (_, i) => {
      return new Promise<Buffer>((resolve, reject) => {
        pool.read(h.fd, i * 37, 50, -1, 0, 0, (n, _slot, out, at, err) =>
          err ? reject(err) : resolve(Buffer.from(out.subarray(at, at + n))),
        );
      });
    });
    const got = await Promise.all(reads);
    for (let i = 0; i < got.length; i++) {
      expect(got[i].equals(data.subarray(i * 37, i * 37 + 50)), `read ${i}`).to.equal(true);
    }
    expect(pool.batches).to.equal(1);
    expect(pool.preads).to.equal(100);
    await h.close();
  });

  it('fails a read that the system refuses, and goes on serving others', async () => {
    const pool = new DiskReadPool(1);
    pools.push(pool);
    const failed = await new Promise<{ n: number; err: Error | undefined }>((resolve) =>
      pool.read(987_654, 0, 10, -1, 0, 0, (n, _s, _o, _a, err) => resolve({ n, err })),
    );
    expect(failed.n).to.equal(RESULT_ERROR);
    expect(failed.err?.message).to.match(/positional read of the snapshot failed: EBADF/);
  });

  it('fails the lookups of a worker that dies, and replaces the worker', async () => {
    const dir = await tempDir();
    const all = rows(500);
    const { path } = await buildFile(dir, all, { targetPartitionRows: 50 });
    const expected = expectedAnswers(all);
    const pool = new DiskReadPool(1);
    pools.push(pool);
    const snap = await openDisk(path, pool);
    const ids = [...expected.keys()];
    const doomed = ids.slice(0, 20).map((id) => snap.lookup(id) as Promise<string | undefined>);
    // The batch goes to a worker that is still starting (a thread takes milliseconds to boot); it dies first.
    await new Promise((r) => setImmediate(r));
    expect(pool.threads).to.have.length(1);
    await pool.threads[0].terminate();
    const settled = await Promise.allSettled(doomed);
    expect(settled.map((s) => s.status)).to.deep.equal(doomed.map(() => 'rejected'));
    expect(pool.restarts).to.equal(1);
    // The next lookups start a new worker, which answers them.
    const answers = await Promise.all(ids.map((id) => snap.lookup(id)));
    expect(answers).to.deep.equal([...expected.values()]);
    expect(pool.threads).to.have.length(1);
    await snap.close();
  });
});
