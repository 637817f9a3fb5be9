/**
 * Opens a snapshot file, proves it is what it claims (header checksum, layout, per-partition and body checksums,
 * identity against the manifest), and serves lookups from it in memory.
 *
 * Loading reads the file in chunks of at most READ_CHUNK_BYTES with asynchronous reads, so the event loop is never
 * held for more than one chunk's hashing. A loaded snapshot is immutable: any number of lookups may run on it;
 * `close` is called once, by the owner, after the last lookup.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { SnapshotError } from '../errors.js';
import { DiskSnapshot } from './disk-snapshot.js';
import {
  DIRECTORY_ENTRY_BYTES,
  decodeDirectory,
  decodeHeader,
  HEADER_BYTES,
  type PartitionEntry,
  type SnapshotHeader,
} from './format.js';
import { MemorySnapshot } from './memory-snapshot.js';

const READ_CHUNK_BYTES = 1 << 20;

/** What the manifest says the file must be; a file that differs is refused. */
export interface ExpectedSnapshot {
  readonly snapshotId?: string;
  readonly checksum?: string;
}

/** A verified snapshot, ready to answer lookups. */
export interface LoadedSnapshot {
  readonly header: SnapshotHeader;
  readonly mode: SnapshotMode;
  /** Bytes of the file this snapshot holds in memory. */
  readonly residentBytes: number;
  /**
   * The JSON body for `id`, or undefined when the snapshot has no such id: at once in memory mode, as a promise
   * in disk mode (at most two positional reads).
   */
  lookup(id: string): string | undefined | Promise<string | undefined>;
  /** Releases the snapshot once lookups in progress are done; later lookups are not allowed. */
  close(): Promise<void>;
}

async function readFully(h: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await h.read(
      buf,
      done,
      Math.min(READ_CHUNK_BYTES, buf.length - done),
      position + done,
    );
    if (bytesRead === 0) {
      throw new SnapshotError(
        'SNAPSHOT_TRUNCATED',
        `snapshot ended at byte ${position + done} while reading`,
      );
    }
    done += bytesRead;
  }
}

/** Reads and checks header and directory: the part every mode keeps in memory. */
export async function readLayout(
  h: FileHandle,
  expect: ExpectedSnapshot = {},
): Promise<{ header: SnapshotHeader; directory: Buffer; partitions: PartitionEntry[] }> {
  const size = (await h.stat()).size;
  const head = Buffer.alloc(HEADER_BYTES);
  if (size >= HEADER_BYTES) await readFully(h, head, 0);
  const header = decodeHeader(head, size);
  if (expect.checksum !== undefined && expect.checksum !== header.checksum) {
    throw new SnapshotError(
      'SNAPSHOT_ID_MISMATCH',
      `snapshot checksum ${header.checksum} is not the expected ${expect.checksum}`,
    );
  }
  if (expect.snapshotId !== undefined && expect.snapshotId !== header.snapshotId) {
    throw new SnapshotError(
      'SNAPSHOT_ID_MISMATCH',
      `snapshot id ${header.snapshotId} is not the expected ${expect.snapshotId}`,
    );
  }
  const directory = Buffer.alloc(2 ** header.partitionBits * DIRECTORY_ENTRY_BYTES);
  await readFully(h, directory, header.directoryOffset);
  return { header, directory, partitions: decodeDirectory(directory, header) };
}

export type SnapshotMode = 'memory' | 'disk';

/**
 * Reads every partition in chunks of at most READ_CHUNK_BYTES, checking each partition's checksum and the body's,
 * and returns the partitions' bytes when `keep` (memory mode). Throws SNAPSHOT_CHECKSUM_MISMATCH on any difference.
 */
async function verifyBody(
  h: FileHandle,
  header: SnapshotHeader,
  directory: Buffer,
  partitions: PartitionEntry[],
  keep: boolean,
): Promise<Buffer[]> {
  // The header's checksum covers the directory's hash; the directory holds every partition's: one pass each.
  if (createHash('sha256').update(directory).digest('hex') !== header.directorySha256) {
    throw new SnapshotError('SNAPSHOT_CHECKSUM_MISMATCH', 'snapshot directory does not match its checksum');
  }
  const kept: Buffer[] = [];
  const scratch = keep ? undefined : Buffer.allocUnsafe(READ_CHUNK_BYTES);
  for (let i = 0; i < partitions.length; i++) {
    const e = partitions[i];
    const part = createHash('sha256');
    const whole = keep ? Buffer.allocUnsafeSlow(e.bytes) : undefined;
    for (let done = 0; done < e.bytes; ) {
      const n = Math.min(READ_CHUNK_BYTES, e.bytes - done);
      const target = whole ? whole.subarray(done, done + n) : (scratch as Buffer).subarray(0, n);
      await readFully(h, target, e.offset + done);
      part.update(target);
      done += n;
    }
    if (!part.digest().subarray(0, e.sha256.length).equals(e.sha256)) {
      throw new SnapshotError(
        'SNAPSHOT_CHECKSUM_MISMATCH',
        `snapshot partition ${i} does not match its checksum`,
      );
    }
    if (whole) kept.push(whole);
  }
  return kept;
}

/**
 * Verifies a snapshot file completely (header, layout, every checksum, identity against `expect`) and opens it for
 * lookups: `memory` holds every partition in memory; `disk` keeps only the directory and reads at lookup time.
 * Throws a SnapshotError (and holds nothing) when the file is not exactly what it claims.
 */
export async function loadSnapshot(
  path: string,
  expect: ExpectedSnapshot = {},
  mode: SnapshotMode = 'memory',
): Promise<LoadedSnapshot> {
  const h = await open(path, 'r');
  let keepOpen = false;
  try {
    const { header, directory, partitions } = await readLayout(h, expect);
    const kept = await verifyBody(h, header, directory, partitions, mode === 'memory');
    if (mode === 'memory') return new MemorySnapshot(header, partitions, kept);
    keepOpen = true;
    return new DiskSnapshot(header, partitions, h);
  } finally {
    if (!keepOpen) await h.close();
  }
}
