/**
 * Proves a snapshot's bytes are what they claim, in file order, as they come: the header (its own checksum, the
 * manifest's identity), the directory (its SHA-256 in the header), then the body, each partition hashed as its
 * bytes arrive and checked when its last byte is in (FORMAT.md: a hash tree of depth two). A replica feeds it the
 * bytes of a pull as they are received, so a pulled file is never read back; `loadSnapshot` feeds it a file.
 *
 * Concurrency: one owner feeds one BodyVerifier, in file order, one call at a time. `accept` is synchronous and
 * costs one hash (and what the sink does with it) of the chunk it is given: callers keep chunks small (a socket's
 * chunks, or at most VERIFY_CHUNK_BYTES) and yield to the event loop between them.
 */
import { createHash, type Hash } from 'node:crypto';
import { SnapshotError } from '../errors.js';
import {
  DIRECTORY_ENTRY_BYTES,
  decodeDirectory,
  decodeHeader,
  HEADER_BYTES,
  type PartitionEntry,
  type SnapshotHeader,
} from './format.js';

/** Largest chunk a caller should hash in one synchronous step (about 0.2 ms of SHA-256 here). */
export const VERIFY_CHUNK_BYTES = 256 * 1024;

/** What the manifest says the file must be; a file that differs is refused. */
export interface ExpectedSnapshot {
  readonly snapshotId?: string;
  readonly checksum?: string;
}

/**
 * Decodes and checks the first HEADER_BYTES of a file of `fileBytes` bytes (magic, major version, its own
 * checksum, a layout that fits), then its identity against `expect`. Throws a SnapshotError naming what differs.
 */
export function checkHeader(head: Buffer, fileBytes: number, expect: ExpectedSnapshot = {}): SnapshotHeader {
  const header = decodeHeader(head, fileBytes);
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
  return header;
}

/** Where the directory lies in the file: [start, end), end being the file's length. */
export function directoryRange(header: SnapshotHeader): { start: number; end: number } {
  return { start: header.directoryOffset, end: header.directoryOffset + directoryBytes(header) };
}

function directoryBytes(header: SnapshotHeader): number {
  return 2 ** header.partitionBits * DIRECTORY_ENTRY_BYTES;
}

/**
 * Checks the directory's bytes against the header's directorySha256 and decodes it (partitions must tile the body
 * exactly). Throws SNAPSHOT_CHECKSUM_MISMATCH or SNAPSHOT_BAD_LAYOUT.
 */
export function checkDirectory(header: SnapshotHeader, directory: Buffer): PartitionEntry[] {
  if (directory.length !== directoryBytes(header)) {
    throw new SnapshotError(
      'SNAPSHOT_BAD_LAYOUT',
      `snapshot directory is ${directory.length} bytes, not ${directoryBytes(header)}`,
    );
  }
  if (createHash('sha256').update(directory).digest('hex') !== header.directorySha256) {
    throw new SnapshotError('SNAPSHOT_CHECKSUM_MISMATCH', 'snapshot directory does not match its checksum');
  }
  return decodeDirectory(directory, header);
}

/** The partitions [first, end) a verifier checks: all of them, or one shard's (shard.ts). */
export interface PartitionSpan {
  readonly first: number;
  readonly end: number;
}

/**
 * Where a verifier hands the body bytes it is given, to keep them (memory-arena.ts builds the in-memory version).
 * A byte is handed over before its partition's checksum is known: nothing may be used until the verifier is done.
 */
export interface BodySink {
  /** Bytes `[at, at + piece.length)` of partition `partition`; `piece` is the caller's, valid only during the call. */
  take(partition: number, at: number, piece: Buffer): void;
}

/**
 * Verifies the body [HEADER_BYTES, directoryOffset), or only the bytes of the partitions of `span` (a shard: one
 * contiguous range of the file), as it is fed in order, from any starting point it has reached (a resumed transfer
 * goes on where the cut one stopped), and hands every byte on to `sink` when there is one.
 */
export class BodyVerifier {
  /** Absolute file offset of the next body byte expected. */
  position: number;
  /** Where the bytes checked begin: HEADER_BYTES for the whole body, a shard's first byte for a shard. */
  readonly start: number;
  /** The partitions checked. */
  readonly span: PartitionSpan;
  private readonly last: number;
  private index: number;
  private hash: Hash | undefined;
  private readonly stop: number;

  constructor(
    readonly header: SnapshotHeader,
    readonly partitions: readonly PartitionEntry[],
    readonly sink?: BodySink,
    span: PartitionSpan = { first: 0, end: partitions.length },
  ) {
    if (span.first < 0 || span.end > partitions.length || span.first > span.end) {
      throw new RangeError(`partitions [${span.first}, ${span.end}) are not in [0, ${partitions.length})`);
    }
    this.span = { first: span.first, end: span.end };
    this.last = span.end;
    this.index = span.first;
    const lastEntry = partitions[span.end - 1];
    this.position = span.first < span.end ? partitions[span.first].offset : HEADER_BYTES;
    this.start = this.position;
    this.stop =
      lastEntry === undefined || span.first >= span.end ? this.position : lastEntry.offset + lastEntry.bytes;
    this.skipEmpty();
  }

  /** Whether every byte checked has arrived and verified. */
  get done(): boolean {
    return this.index >= this.last;
  }

  /** The file offset where the bytes checked end (the directory's start, for the whole body). */
  get end(): number {
    return this.stop;
  }

  /**
   * Takes the next `chunk.length` body bytes. Throws SNAPSHOT_CHECKSUM_MISMATCH as soon as a partition's last byte
   * shows it differs, SNAPSHOT_BAD_LAYOUT for bytes past the end; after a throw the verifier is spent.
   */
  accept(chunk: Buffer): void {
    if (chunk.length > this.end - this.position) {
      throw new SnapshotError(
        'SNAPSHOT_BAD_LAYOUT',
        `snapshot body bytes arrived past the end of the checked range (${this.end}) at ${this.position}`,
      );
    }
    let off = 0;
    while (off < chunk.length) {
      const e = this.partitions[this.index];
      const at = this.position - e.offset;
      const n = Math.min(chunk.length - off, e.bytes - at);
      const piece = chunk.subarray(off, off + n);
      if (at === 0) this.hash = createHash('sha256');
      (this.hash as Hash).update(piece);
      this.sink?.take(this.index, at, piece);
      off += n;
      this.position += n;
      if (at + n === e.bytes) this.endPartition();
    }
  }

  private endPartition(): void {
    const e = this.partitions[this.index];
    const digest = (this.hash as Hash).digest();
    if (!digest.subarray(0, e.sha256.length).equals(e.sha256)) {
      throw new SnapshotError(
        'SNAPSHOT_CHECKSUM_MISMATCH',
        `snapshot partition ${this.index} does not match its checksum`,
      );
    }
    this.hash = undefined;
    this.index++;
    this.skipEmpty();
  }

  /** Partitions of zero bytes (an empty partition: FORMAT.md, Shards) get no byte to end them: end them here. */
  private skipEmpty(): void {
    while (this.index < this.last && this.partitions[this.index].bytes === 0) {
      const e = this.partitions[this.index];
      if (!createHash('sha256').digest().subarray(0, e.sha256.length).equals(e.sha256)) {
        throw new SnapshotError(
          'SNAPSHOT_CHECKSUM_MISMATCH',
          `snapshot partition ${this.index} does not match its checksum`,
        );
      }
      this.index++;
    }
  }
}
