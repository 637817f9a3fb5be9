/**
 * Opens a snapshot file, proves it is what it claims (header checksum, layout, per-partition checksums, identity
 * against the manifest: verifier.ts), and serves lookups from it, in memory or from disk.
 *
 * A replica verifies a pulled file while it arrives (replica/sync.ts) and never reads it back; this reader is for
 * files already on disk (a restart, a local copy of a kept version). It reads the body in chunks of
 * VERIFY_CHUNK_BYTES with asynchronous reads, so the event loop is held for one chunk's hash at a time.
 *
 * Concurrency: each load opens its own handle; loads may run at once. What a load returns follows
 * loaded-snapshot.ts.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { DEFAULTS } from '../config.js';
import { SnapshotError } from '../errors.js';
import { readFully } from '../file-io.js';
import { type DiskOptions, DiskSnapshot } from './disk-snapshot.js';
import { HEADER_BYTES, type PartitionEntry, type SnapshotHeader } from './format.js';
import type { LoadedSnapshot, SnapshotMode } from './loaded-snapshot.js';
import { MemoryArena, memorySnapshotOf } from './memory-arena.js';
import { sharedReadPool } from './read-pool.js';
import { type Shard, shardRange } from './shard.js';
import {
  BodyVerifier,
  checkDirectory,
  checkHeader,
  directoryRange,
  type ExpectedSnapshot,
  VERIFY_CHUNK_BYTES,
} from './verifier.js';

export type { ExpectedSnapshot } from './verifier.js';

/** Fills `buf` from `position`; a file that ends first is truncated. */
async function readExactly(h: FileHandle, buf: Buffer, position: number): Promise<void> {
  const n = await readFully(h, buf, position);
  if (n < buf.length) {
    throw new SnapshotError('SNAPSHOT_TRUNCATED', `snapshot ended at byte ${position + n} while reading`);
  }
}

/** Reads and checks header and directory: the part every mode keeps in memory. */
export async function readLayout(
  h: FileHandle,
  expect: ExpectedSnapshot = {},
): Promise<{ header: SnapshotHeader; directory: Buffer; partitions: PartitionEntry[] }> {
  const size = (await h.stat()).size;
  const head = Buffer.alloc(HEADER_BYTES);
  if (size >= HEADER_BYTES) await readExactly(h, head, 0);
  const header = checkHeader(head, size, expect);
  const { start, end } = directoryRange(header);
  const directory = Buffer.alloc(end - start);
  await readExactly(h, directory, start);
  return { header, directory, partitions: checkDirectory(header, directory) };
}

/**
 * Feeds `verifier` the file's body bytes from `verifier.position` up to `until` (the body's end by default), one
 * chunk of at most VERIFY_CHUNK_BYTES per read (each read is asynchronous: other work runs between chunks).
 */
export async function verifyFromFile(
  h: FileHandle,
  verifier: BodyVerifier,
  until = verifier.end,
): Promise<void> {
  const scratch = Buffer.allocUnsafe(Math.max(0, Math.min(VERIFY_CHUNK_BYTES, until - verifier.position)));
  while (verifier.position < until) {
    const chunk = scratch.subarray(0, Math.min(scratch.length, until - verifier.position));
    await readExactly(h, chunk, verifier.position);
    verifier.accept(chunk);
  }
}

/** Disk mode as configured by default: the default read pool, slot tables and cache within their default budgets. */
export function defaultDiskOptions(): DiskOptions {
  return {
    pool: sharedReadPool(DEFAULTS.diskReadWorkers),
    slotBudgetBytes: DEFAULTS.diskSlotTableBytes,
    cacheBytes: DEFAULTS.diskCacheBytes,
  };
}

/**
 * Verifies a snapshot file completely (header, layout, every checksum, identity against `expect`) and opens it for
 * lookups: `memory` holds every partition in memory; `disk` keeps the directory (and as many slot tables as fit
 * `disk`'s budget) and reads records at lookup time. With `shard`, only that shard's partitions are verified
 * and served (a shard replica's file holds only their bytes, shard.ts). Throws a SnapshotError (and holds nothing)
 * when the file is not exactly what it claims.
 */
export async function loadSnapshot(
  path: string,
  expect: ExpectedSnapshot = {},
  mode: SnapshotMode = 'memory',
  shard?: Shard,
  disk: DiskOptions = defaultDiskOptions(),
): Promise<LoadedSnapshot> {
  const h = await open(path, 'r');
  let keepOpen = false;
  try {
    const { header, partitions } = await readLayout(h, expect);
    const span = shard === undefined ? undefined : shardRange(header, partitions, shard);
    const arena = mode === 'memory' ? new MemoryArena(partitions, span) : undefined;
    const verifier = new BodyVerifier(header, partitions, arena, span);
    await verifyFromFile(h, verifier);
    if (mode === 'memory') return memorySnapshotOf(verifier);
    const snapshot = await DiskSnapshot.open(header, partitions, h, disk, verifier.span);
    keepOpen = true;
    return snapshot;
  } finally {
    if (!keepOpen) await h.close();
  }
}

/**
 * Opens a file whose every byte was already verified (by a BodyVerifier as it arrived, its size checked before its
 * fsync) for disk-mode lookups.
 */
export async function openVerified(
  path: string,
  verifier: BodyVerifier,
  disk: DiskOptions = defaultDiskOptions(),
): Promise<DiskSnapshot> {
  if (!verifier.done) throw new Error('openVerified needs a verifier that has taken the whole body');
  const h = await open(path, 'r');
  try {
    return await DiskSnapshot.open(verifier.header, [...verifier.partitions], h, disk, verifier.span);
  } catch (err) {
    await h.close();
    throw err;
  }
}
