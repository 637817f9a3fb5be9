/**
 * Layout constants of the snapshot file and the codecs of its header and directory.
 * The prose specification is FORMAT.md beside this file; a unit test checks that the two agree.
 * Pure functions over Buffers; safe to call from anywhere.
 */
import { createHash } from 'node:crypto';
import { SnapshotError } from '../errors.js';

export const MAGIC = 'PROMOSNP';
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;
export const HEADER_BYTES = 256;
export const DIRECTORY_ENTRY_BYTES = 48;
export const SLOT_BYTES = 8;
export const EMPTY_SLOT = 0xffffffff;
export const MAX_PARTITION_BITS = 24;
/**
 * Every file has at least this many partition bits, so that any file splits into up to 2^MAX_SHARD_BITS shards
 * (SHARD=k/S, S up to 64): a shard is the run of partitions whose top bits equal k, and needs one partition at
 * least. Empty partitions are valid (a slot table of one empty slot).
 */
export const MAX_SHARD_BITS = 6;
/** Slots per row in a partition's table: rows / LOAD_FACTOR home slots. */
export const LOAD_FACTOR = 0.8;
/** The builder picks the partition count so that a partition holds about this many rows. */
export const TARGET_PARTITION_ROWS = 65536;

/** Byte offsets of the header fields. */
export const H = {
  magic: 0,
  formatMajor: 8,
  formatMinor: 10,
  headerBytes: 12,
  snapshotId: 16,
  version: 32,
  partitionBits: 36,
  rowCount: 40,
  duplicateCount: 48,
  badRowCount: 56,
  buildTimeMs: 64,
  directoryOffset: 72,
  fileBytes: 80,
  sourceSha256: 96,
  directorySha256: 128,
  headerSha256: 224,
} as const;

/** Byte offsets of the fields of one directory entry. */
export const D = {
  offset: 0,
  bytes: 8,
  rows: 16,
  homeSlots: 20,
  slotCount: 24,
  maxProbe: 28,
  sha256: 32,
} as const;
export const PARTITION_SHA_BYTES = 16;

/** What a snapshot file says about itself. */
export interface SnapshotHeader {
  readonly formatMajor: number;
  readonly formatMinor: number;
  /** Random id, hex; pairs a file with its manifest. */
  readonly snapshotId: string;
  readonly version: number;
  readonly partitionBits: number;
  readonly rowCount: number;
  readonly duplicateCount: number;
  readonly badRowCount: number;
  readonly buildTimeMs: number;
  readonly directoryOffset: number;
  readonly fileBytes: number;
  /** SHA-256 of the source CSV bytes, hex. */
  readonly sourceSha256: string;
  /** SHA-256 of every byte after the header, hex. */
  readonly directorySha256: string;
  /**
   * SHA-256 of header bytes [0, 224), hex: the file's checksum. It covers the directory through directorySha256,
   * and the directory covers every partition through their own SHA-256s (a hash tree of depth two).
   */
  readonly checksum: string;
}

/** One partition as the directory describes it. */
export interface PartitionEntry {
  readonly offset: number;
  readonly bytes: number;
  readonly rows: number;
  readonly homeSlots: number;
  readonly slotCount: number;
  readonly maxProbe: number;
  readonly sha256: Buffer;
}

const TWO_32 = 4294967296;

export function writeU64(buf: Buffer, off: number, n: number): void {
  buf.writeUInt32LE(n % TWO_32, off);
  buf.writeUInt32LE(Math.floor(n / TWO_32), off + 4);
}

export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * TWO_32;
}

/** Fills `buf` (HEADER_BYTES long) with the header and its own checksum; returns that checksum, hex. */
export function encodeHeader(
  buf: Buffer,
  h: Omit<SnapshotHeader, 'checksum' | 'formatMajor' | 'formatMinor'>,
): string {
  buf.fill(0, 0, HEADER_BYTES);
  buf.write(MAGIC, H.magic, 'latin1');
  buf.writeUInt16LE(FORMAT_MAJOR, H.formatMajor);
  buf.writeUInt16LE(FORMAT_MINOR, H.formatMinor);
  buf.writeUInt32LE(HEADER_BYTES, H.headerBytes);
  buf.write(h.snapshotId, H.snapshotId, 16, 'hex');
  buf.writeUInt32LE(h.version, H.version);
  buf.writeUInt32LE(h.partitionBits, H.partitionBits);
  writeU64(buf, H.rowCount, h.rowCount);
  writeU64(buf, H.duplicateCount, h.duplicateCount);
  writeU64(buf, H.badRowCount, h.badRowCount);
  writeU64(buf, H.buildTimeMs, h.buildTimeMs);
  writeU64(buf, H.directoryOffset, h.directoryOffset);
  writeU64(buf, H.fileBytes, h.fileBytes);
  buf.write(h.sourceSha256, H.sourceSha256, 32, 'hex');
  buf.write(h.directorySha256, H.directorySha256, 32, 'hex');
  const digest = createHash('sha256').update(buf.subarray(0, H.headerSha256)).digest();
  digest.copy(buf, H.headerSha256);
  return digest.toString('hex');
}

/**
 * Parses and checks a header: magic, major version, its own checksum, and that the layout it describes
 * fits a file of `actualBytes`. Throws a SnapshotError naming what is wrong.
 */
export function decodeHeader(buf: Buffer, actualBytes: number): SnapshotHeader {
  if (buf.length < HEADER_BYTES || actualBytes < HEADER_BYTES) {
    throw new SnapshotError(
      'SNAPSHOT_TRUNCATED',
      `snapshot is ${actualBytes} bytes, shorter than its header`,
    );
  }
  if (buf.toString('latin1', H.magic, H.magic + MAGIC.length) !== MAGIC) {
    throw new SnapshotError('SNAPSHOT_BAD_MAGIC', `not a snapshot file: the first bytes are not "${MAGIC}"`);
  }
  const major = buf.readUInt16LE(H.formatMajor);
  if (major !== FORMAT_MAJOR) {
    throw new SnapshotError(
      'SNAPSHOT_BAD_VERSION',
      `snapshot format ${major}.x is not supported; this build reads ${FORMAT_MAJOR}.x`,
    );
  }
  const digest = createHash('sha256').update(buf.subarray(0, H.headerSha256)).digest();
  if (!digest.equals(buf.subarray(H.headerSha256, H.headerSha256 + 32))) {
    throw new SnapshotError(
      'SNAPSHOT_CHECKSUM_MISMATCH',
      'snapshot header checksum does not match its contents',
    );
  }
  const header: SnapshotHeader = {
    formatMajor: major,
    formatMinor: buf.readUInt16LE(H.formatMinor),
    snapshotId: buf.toString('hex', H.snapshotId, H.snapshotId + 16),
    version: buf.readUInt32LE(H.version),
    partitionBits: buf.readUInt32LE(H.partitionBits),
    rowCount: readU64(buf, H.rowCount),
    duplicateCount: readU64(buf, H.duplicateCount),
    badRowCount: readU64(buf, H.badRowCount),
    buildTimeMs: readU64(buf, H.buildTimeMs),
    directoryOffset: readU64(buf, H.directoryOffset),
    fileBytes: readU64(buf, H.fileBytes),
    sourceSha256: buf.toString('hex', H.sourceSha256, H.sourceSha256 + 32),
    directorySha256: buf.toString('hex', H.directorySha256, H.directorySha256 + 32),
    checksum: digest.toString('hex'),
  };
  if (buf.readUInt32LE(H.headerBytes) !== HEADER_BYTES || header.partitionBits > MAX_PARTITION_BITS) {
    throw new SnapshotError(
      'SNAPSHOT_BAD_LAYOUT',
      'snapshot header has an impossible header size or partition count',
    );
  }
  if (actualBytes < header.fileBytes) {
    throw new SnapshotError(
      'SNAPSHOT_TRUNCATED',
      `snapshot is ${actualBytes} bytes but its header says ${header.fileBytes}: the file is incomplete`,
    );
  }
  const dirBytes = 2 ** header.partitionBits * DIRECTORY_ENTRY_BYTES;
  if (actualBytes !== header.fileBytes || header.directoryOffset + dirBytes !== header.fileBytes) {
    throw new SnapshotError('SNAPSHOT_BAD_LAYOUT', 'snapshot directory does not end where the file ends');
  }
  return header;
}

export function encodeEntry(dir: Buffer, index: number, e: PartitionEntry): void {
  const o = index * DIRECTORY_ENTRY_BYTES;
  writeU64(dir, o + D.offset, e.offset);
  writeU64(dir, o + D.bytes, e.bytes);
  dir.writeUInt32LE(e.rows, o + D.rows);
  dir.writeUInt32LE(e.homeSlots, o + D.homeSlots);
  dir.writeUInt32LE(e.slotCount, o + D.slotCount);
  dir.writeUInt32LE(e.maxProbe, o + D.maxProbe);
  e.sha256.copy(dir, o + D.sha256, 0, PARTITION_SHA_BYTES);
}

/** Parses the directory and checks that partitions tile the body exactly and their tables fit inside them. */
export function decodeDirectory(dir: Buffer, header: SnapshotHeader): PartitionEntry[] {
  const count = 2 ** header.partitionBits;
  const entries: PartitionEntry[] = [];
  let expectedOffset = HEADER_BYTES;
  let rows = 0;
  for (let i = 0; i < count; i++) {
    const o = i * DIRECTORY_ENTRY_BYTES;
    const e: PartitionEntry = {
      offset: readU64(dir, o + D.offset),
      bytes: readU64(dir, o + D.bytes),
      rows: dir.readUInt32LE(o + D.rows),
      homeSlots: dir.readUInt32LE(o + D.homeSlots),
      slotCount: dir.readUInt32LE(o + D.slotCount),
      maxProbe: dir.readUInt32LE(o + D.maxProbe),
      sha256: Buffer.from(dir.subarray(o + D.sha256, o + D.sha256 + PARTITION_SHA_BYTES)),
    };
    if (
      e.offset !== expectedOffset ||
      e.offset + e.bytes > header.directoryOffset ||
      e.slotCount * SLOT_BYTES > e.bytes ||
      e.homeSlots < 1 ||
      e.maxProbe > e.slotCount ||
      e.rows > e.slotCount
    ) {
      throw new SnapshotError(
        'SNAPSHOT_BAD_LAYOUT',
        `snapshot partition ${i} has an impossible offset or size`,
      );
    }
    expectedOffset += e.bytes;
    rows += e.rows;
    entries.push(e);
  }
  if (expectedOffset !== header.directoryOffset || rows !== header.rowCount) {
    throw new SnapshotError('SNAPSHOT_BAD_LAYOUT', 'snapshot partitions do not add up to the header');
  }
  return entries;
}

/** A partition's checksum as the directory stores it. */
export function partitionSha(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, PARTITION_SHA_BYTES);
}

/** Index of the partition that holds a key with first hash `h1`. */
export function partitionOf(h1: number, partitionBits: number): number {
  return partitionBits === 0 ? 0 : h1 >>> (32 - partitionBits);
}

/** The first slot a key with second hash `h2` may sit in, in a table of `homeSlots` home slots. */
export function homeSlot(h2: number, homeSlots: number): number {
  return Math.floor((h2 * homeSlots) / TWO_32);
}
