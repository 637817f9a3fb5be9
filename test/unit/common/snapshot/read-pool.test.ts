import { randomUUID } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { DiskSnapshot } from '../../../../common/snapshot/disk-snapshot.js';
import { decodeDirectory, decodeHeader, HEADER_BYTES } from '../../../../common/snapshot/format.js';
import { RESULT_ERROR } from '../../../../common/snapshot/read-channel.js';
import { DiskReadPool } from '../../../../common/snapshot/read-pool.js';
import { cleanup, http, tempDir, waitFor } from '../../../helpers.js';
import { buildFile, expectedAnswers, type Row } from '../../../snapshot-file.js';
import { readServer } from '../../replica/fakes.js';

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

  it('answers 500 for the lookups of a worker that dies, replaces the worker, and serves again', async () => {
    const dir = await tempDir();
    const all = rows(300);
    const { path } = await buildFile(dir, all, { targetPartitionRows: 50 });
    const expected = expectedAnswers(all);
    const ids = [...expected.keys()];
    const pool = new DiskReadPool(1);
    pools.push(pool);
    const snap = await openDisk(path, pool);
    const { server } = await readServer(snap, { transport: 'fast' });
    expect((await http(`${server.url}/promotions/${ids[0]}`)).status).to.equal(200);
    // The running worker dies while idle: nothing fails, it is dropped.
    await pool.threads[0].terminate();
    expect(pool.restarts).to.equal(1);
    expect(pool.threads).to.have.length(0);
    // The next reads start a new worker, which dies before it took their first batch (a thread takes
    // milliseconds to start; the batch is handed over at once): that batch answers 500, the reads that came
    // later wait for the next worker.
    const asked = ids.slice(0, 10);
    const answers = asked.map((id) => http(`${server.url}/promotions/${id}`));
    await waitFor(() => (pool.batches > 1 ? true : undefined), 10_000, 'the batch handed to a new worker');
    await pool.threads[0].terminate();
    const got = await Promise.all(answers);
    expect(pool.restarts).to.equal(2);
    expect(got.filter((a) => a.status === 500).length).to.be.greaterThan(0);
    got.forEach((a, i) => {
      if (a.status === 500) expect(a.json.error).to.equal('INTERNAL');
      else expect(a.text, asked[i]).to.equal(expected.get(asked[i]));
    });
    // And a third worker serves every id.
    for (const id of ids) {
      const res = await http(`${server.url}/promotions/${id}`);
      expect(res.status, id).to.equal(200);
      expect(res.text).to.equal(expected.get(id));
    }
    await snap.close();
  });
});
