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
import {
  DIRECTORY_ENTRY_BYTES,
  decodeDirectory,
  decodeHeader,
  EMPTY_SLOT,
  HEADER_BYTES,
  homeSlot,
  type PartitionEntry,
  partitionOf,
  SLOT_BYTES,
  type SnapshotHeader,
} from './format.js';
import { keyHash1, slotHash } from './key-hash.js';
import { recordHasId, renderRecord } from './record-codec.js';

const READ_CHUNK_BYTES = 1 << 20;

/** What the manifest says the file must be; a file that differs is refused. */
export interface ExpectedSnapshot {
  readonly snapshotId?: string;
  readonly checksum?: string;
}

/** A verified snapshot, ready to answer lookups. */
export interface LoadedSnapshot {
  readonly header: SnapshotHeader;
  readonly mode: 'memory';
  /** Resident bytes this snapshot holds. */
  readonly residentBytes: number;
  /** The JSON body for `id`, or undefined when the snapshot has no such id. */
  lookup(id: string): string | undefined;
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

function checkPartition(index: number, entry: PartitionEntry, bytes: Buffer): void {
  const sha = createHash('sha256').update(bytes).digest();
  if (!sha.subarray(0, entry.sha256.length).equals(entry.sha256)) {
    throw new SnapshotError(
      'SNAPSHOT_CHECKSUM_MISMATCH',
      `snapshot partition ${index} does not match its checksum`,
    );
  }
}

/**
 * Loads a whole snapshot into memory, verifying every checksum on the way. Throws a SnapshotError (and holds
 * nothing) when the file is not exactly what its header, directory and `expect` say.
 */
export async function loadSnapshot(path: string, expect: ExpectedSnapshot = {}): Promise<LoadedSnapshot> {
  const h = await open(path, 'r');
  try {
    const { header, directory, partitions } = await readLayout(h, expect);
    const body = createHash('sha256');
    const buffers: Buffer[] = [];
    for (let i = 0; i < partitions.length; i++) {
      const e = partitions[i];
      const buf = Buffer.allocUnsafeSlow(e.bytes);
      await readFully(h, buf, e.offset);
      body.update(buf);
      checkPartition(i, e, buf);
      buffers.push(buf);
    }
    body.update(directory);
    if (body.digest('hex') !== header.bodySha256) {
      throw new SnapshotError('SNAPSHOT_CHECKSUM_MISMATCH', 'snapshot body does not match its checksum');
    }
    return new MemorySnapshot(header, partitions, buffers);
  } finally {
    await h.close();
  }
}

/** Every partition held in memory; lookups are synchronous and allocate only the answer. */
class MemorySnapshot implements LoadedSnapshot {
  readonly mode = 'memory' as const;
  readonly residentBytes: number;
  private readonly slots: Uint32Array[];
  private readonly homeSlots: Uint32Array;
  private readonly maxProbe: Uint32Array;
  private readonly slotCount: Uint32Array;

  constructor(
    readonly header: SnapshotHeader,
    partitions: PartitionEntry[],
    private readonly buffers: Buffer[],
  ) {
    this.residentBytes = buffers.reduce((n, b) => n + b.length, 0);
    this.homeSlots = Uint32Array.from(partitions, (p) => p.homeSlots);
    this.maxProbe = Uint32Array.from(partitions, (p) => p.maxProbe);
    this.slotCount = Uint32Array.from(partitions, (p) => p.slotCount);
    // allocUnsafeSlow buffers start at offset 0 of their own ArrayBuffer, so a Uint32Array view is aligned.
    this.slots = buffers.map((b, i) => new Uint32Array(b.buffer, b.byteOffset, partitions[i].slotCount * 2));
  }

  lookup(id: string): string | undefined {
    const h1 = keyHash1(id);
    const p = partitionOf(h1, this.header.partitionBits);
    const slots = this.slots[p];
    const count = this.slotCount[p];
    let s = homeSlot(slotHash(h1), this.homeSlots[p]);
    const end = Math.min(s + this.maxProbe[p], count);
    const buf = this.buffers[p];
    const records = count * SLOT_BYTES;
    for (; s < end; s++) {
      const off = slots[2 * s + 1];
      if (off === EMPTY_SLOT) return undefined;
      if (slots[2 * s] === h1 && recordHasId(buf, records + off, id))
        return renderRecord(buf, records + off, id);
    }
    return undefined;
  }

  async close(): Promise<void> {
    // Memory is released when the last reference goes; nothing to close.
  }
}
