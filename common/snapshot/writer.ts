/**
 * Builds one snapshot file from validated rows with bounded memory (FORMAT.md, "How a file is built").
 *
 * Memory: rows are kept in memory, encoded, until they pass `memoryBytes`; past that they spill into run files,
 * one per hash bucket. `finish` then builds ranges of partitions, several at once but with at most a quarter of
 * the budget of rows in flight; a run larger than that quarter is split again by the next hash bits. Peak: the
 * budget of rows, plus ranges in flight (about 2.5 times their rows). Duplicate ids resolve last-wins because rows
 * with the same id keep their input order everywhere: in memory, in runs, and in blocks the parse workers group by
 * hash (equal ids have equal hashes, and the grouping is stable).
 *
 * Concurrency: one caller; `add` may return a promise (a spill write), which must settle before the next call.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Promotion } from '../record.js';
import {
  DIRECTORY_ENTRY_BYTES,
  EMPTY_SLOT,
  encodeEntry,
  encodeHeader,
  HEADER_BYTES,
  homeSlot,
  LOAD_FACTOR,
  MAX_PARTITION_BITS,
  partitionOf,
  partitionSha,
  SLOT_BYTES,
  type SnapshotHeader,
  TARGET_PARTITION_ROWS,
} from './format.js';
import { keyHash1, keyHash1Bytes, slotHash } from './key-hash.js';
import {
  encodeRecord,
  encodeUuidRecordBytes,
  MAX_RECORD_BYTES,
  recordLength,
  sameRecordId,
} from './record-codec.js';

/** A row in memory or in a run file: h1 u32, h2 u32, then the record. */
const ROW_PREFIX = 8;
/** Room one encoded row may need. */
export const MAX_ROW_BYTES = ROW_PREFIX + MAX_RECORD_BYTES;

/**
 * Encodes one row as the builder keeps it (h1, h2, record) at `off`; returns its length. Parsing workers call this
 * so that the builder takes their output whole (`addEncoded`).
 */
export function encodeRow(p: Promotion, buf: Buffer, off: number): number {
  const h1 = keyHash1(p.id);
  buf.writeUInt32LE(h1, off);
  buf.writeUInt32LE(slotHash(h1), off + 4);
  return encodeRecord(p, buf, off + ROW_PREFIX) - off;
}

/**
 * encodeRow for a row given as ASCII bytes whose id (36 bytes at `idAt`) is a canonical UUID and whose price is
 * already canonical (see encodeUuidRecordBytes). Returns the row's length, or -1 when the id is not a canonical
 * UUID. The parse workers' fast path: no strings are made.
 */
export function encodeUuidRowBytes(
  src: Uint8Array,
  idAt: number,
  priceAt: number,
  priceLen: number,
  expiresAt: number,
  buf: Uint8Array,
  off: number,
): number {
  const end = encodeUuidRecordBytes(src, idAt, priceAt, priceLen, expiresAt, buf, off + ROW_PREFIX);
  if (end < 0) return -1;
  const h1 = keyHash1Bytes(src, idAt, 36);
  const h2 = slotHash(h1);
  buf[off] = h1 & 0xff;
  buf[off + 1] = (h1 >>> 8) & 0xff;
  buf[off + 2] = (h1 >>> 16) & 0xff;
  buf[off + 3] = h1 >>> 24;
  buf[off + 4] = h2 & 0xff;
  buf[off + 5] = (h2 >>> 8) & 0xff;
  buf[off + 6] = (h2 >>> 16) & 0xff;
  buf[off + 7] = h2 >>> 24;
  return end - off;
}

/**
 * Rows of a block grouped by the top GROUP_BITS bits of h1 (the bits that pick spill runs and partitions), so the
 * builder routes a block with one copy per group instead of one per row.
 */
export const GROUP_BITS = 8;
const GROUPS = 2 ** GROUP_BITS;

/** Where each group of a grouped block starts: group g is bytes [bytes[g], bytes[g+1]), rows [rows[g], rows[g+1]). */
export interface RowGroups {
  readonly bytes: Uint32Array;
  readonly rows: Uint32Array;
}

/**
 * Copies the `count` whole rows of `src[0, end)`, which start at `starts[0..count)`, into a new buffer of their
 * exact size, grouped by the top GROUP_BITS bits of h1; input order is kept inside a group (last row wins).
 */
export function groupRows(
  src: Uint8Array,
  end: number,
  starts: Uint32Array,
  count: number,
): { rows: Buffer; groups: RowGroups } {
  const bytes = new Uint32Array(GROUPS + 1);
  const rows = new Uint32Array(GROUPS + 1);
  for (let i = 0; i < count; i++) {
    const off = starts[i];
    // h1 is little-endian at the row's start: its top byte is the group.
    const g = src[off + 3] >>> (8 - GROUP_BITS);
    bytes[g + 1] += (i + 1 < count ? starts[i + 1] : end) - off;
    rows[g + 1]++;
  }
  for (let g = 0; g < GROUPS; g++) {
    bytes[g + 1] += bytes[g];
    rows[g + 1] += rows[g];
  }
  // allocUnsafeSlow: its own ArrayBuffer, so it can be transferred between threads.
  const out = Buffer.allocUnsafeSlow(bytes[GROUPS]);
  const fill = bytes.slice(0, GROUPS);
  for (let i = 0; i < count; i++) {
    const off = starts[i];
    const stop = i + 1 < count ? starts[i + 1] : end;
    const g = src[off + 3] >>> (8 - GROUP_BITS);
    let at = fill[g];
    for (let k = off; k < stop; k++) out[at++] = src[k];
    fill[g] = at;
  }
  return { rows: out, groups: { bytes, rows } };
}

const CHUNK_BYTES = 1 << 20;
const RUN_BUFFER_BYTES = 64 * 1024;
/** Spill writes allowed in flight before `add` makes its caller wait. */
const MAX_PENDING_WRITES = 16;

export interface BuildOptions {
  /** Where the finished file is written (a temporary name; the caller renames it into place). */
  readonly path: string;
  /** A directory for run files; the builder removes what it creates there. */
  readonly tmpDir: string;
  /** Bytes of encoded rows held in memory before spilling, and the largest run loaded at once. */
  readonly memoryBytes: number;
  /** Run files when spilling (a power of two); default from memoryBytes and `sizeHintBytes`. */
  readonly spillBuckets?: number;
  /** Rows per partition the layout aims for; tests lower it to get many partitions from few rows. */
  readonly targetPartitionRows?: number;
  /** Expected source size, when known (Content-Length, file size), to size the spill. */
  readonly sizeHintBytes?: number;
  /** Where partition ranges are built (worker threads, in the leader); default: this thread. */
  readonly rangeBuilder?: RangeBuilder;
  /** Ranges built at once; more use more cores and more memory (each range is a share of the rows). */
  readonly buildConcurrency?: number;
  /** Rows per range when rows in memory are split for building; tests lower it. */
  readonly rangeRows?: number;
}

export interface BuildMeta {
  readonly version: number;
  readonly sourceSha256: string;
  readonly badRowCount: number;
}

export interface BuildStats {
  /** Rows added, duplicates included. */
  readonly rowsAdded: number;
  /** True when rows went through run files. */
  readonly spilled: boolean;
}

/** Rows of one hash range: encoded rows in memory buffers, each buffer holding whole rows. */
interface RowSet {
  readonly buffers: Buffer[];
  /** Each buffer's groups when it is grouped (groupRows); memory rows only. */
  readonly groups?: (RowGroups | undefined)[];
  readonly count: number;
}

function log2(n: number): number {
  return Math.round(Math.log2(n));
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/** Encoded rows for one hash range, spilled to a file through a small buffer; writes run one after another. */
class Run {
  private handle: FileHandle | undefined;
  private buf = Buffer.allocUnsafe(RUN_BUFFER_BYTES);
  private pos = 0;
  private tail: Promise<void> = Promise.resolve();
  bytes = 0;
  count = 0;
  constructor(readonly path: string) {}

  /** Copies one row in; returns the write to wait for when the buffer filled. */
  append(src: Buffer, off: number, len: number): Promise<void> | undefined {
    const p = this.pos + len > this.buf.length ? this.flush() : undefined;
    // A row is a few dozen bytes: a plain loop beats Buffer.copy's per-call cost.
    const buf = this.buf;
    const at = this.pos;
    for (let k = 0; k < len; k++) buf[at + k] = src[off + k];
    this.pos += len;
    this.count++;
    return p;
  }

  /** Copies `count` whole rows, `src[start, end)`, in; returns the write to wait for when the buffer filled. */
  appendSlice(src: Buffer, start: number, end: number, count: number): Promise<void> | undefined {
    const len = end - start;
    this.count += count;
    if (len > RUN_BUFFER_BYTES) {
      // Larger than the buffer: written as it is, after what is buffered (the rows are not changed afterwards).
      this.flush();
      return this.write(src.subarray(start, end));
    }
    const p = this.pos + len > this.buf.length ? this.flush() : undefined;
    src.copy(this.buf, this.pos, start, end);
    this.pos += len;
    return p;
  }

  flush(): Promise<void> {
    if (this.pos === 0) return this.tail;
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(RUN_BUFFER_BYTES);
    this.pos = 0;
    return this.write(out);
  }

  private write(out: Buffer): Promise<void> {
    const at = this.bytes;
    this.bytes += out.length;
    this.tail = this.tail.then(async () => {
      this.handle ??= await open(this.path, 'w');
      await writeFully(this.handle, out, at);
    });
    return this.tail;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle?.close();
    this.handle = undefined;
  }
}

async function writeFully(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/** A set of runs splitting one hash range by the next `bits` bits of h1, after the first `depth` bits. */
class Spill {
  readonly runs: Run[];
  private pending: Promise<void>[] = [];
  constructor(
    dir: string,
    readonly depth: number,
    readonly bits: number,
  ) {
    this.runs = Array.from(
      { length: 2 ** bits },
      (_, i) => new Run(join(dir, `run-${depth}-${i}-${randomBytes(4).toString('hex')}`)),
    );
  }

  private bucketOf(h1: number): number {
    return this.bits === 0 ? 0 : ((h1 << this.depth) >>> 0) >>> (32 - this.bits);
  }

  /** Appends one row; returns a promise when too many writes are in flight (bounded memory). */
  append(src: Buffer, off: number, len: number): Promise<void> | undefined {
    const w = this.runs[this.bucketOf(src.readUInt32LE(off))].append(src, off, len);
    if (w === undefined) return undefined;
    this.pending.push(w);
    return this.pending.length < MAX_PENDING_WRITES ? undefined : this.drain();
  }

  /** Appends every row of a grouped buffer (groupRows), one copy per run, or row by row when groups do not fit. */
  async appendGrouped(buf: Buffer, groups: RowGroups | undefined): Promise<void> {
    if (groups === undefined || this.depth !== 0 || this.bits > GROUP_BITS) return this.appendRows(buf);
    const shift = GROUP_BITS - this.bits;
    for (let b = 0; b < this.runs.length; b++) {
      const g0 = b << shift;
      const g1 = (b + 1) << shift;
      const start = groups.bytes[g0];
      const end = groups.bytes[g1];
      if (end === start) continue;
      const w = this.runs[b].appendSlice(buf, start, end, groups.rows[g1] - groups.rows[g0]);
      if (w === undefined) continue;
      this.pending.push(w);
      if (this.pending.length >= MAX_PENDING_WRITES) await this.drain();
    }
  }

  /** Appends every row of a buffer of whole rows. */
  async appendRows(buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const len = ROW_PREFIX + recordLength(buf, off + ROW_PREFIX);
      const w = this.append(buf, off, len);
      if (w !== undefined) await w;
      off += len;
    }
  }

  async drain(): Promise<void> {
    const p = this.pending;
    this.pending = [];
    await Promise.all(p);
  }

  async close(): Promise<void> {
    await this.drain();
    await Promise.all(this.runs.map((r) => r.close()));
  }
}

function forEachRow(buf: Buffer, fn: (off: number, len: number) => unknown): void {
  let off = 0;
  while (off < buf.length) {
    const len = ROW_PREFIX + recordLength(buf, off + ROW_PREFIX);
    fn(off, len);
    off += len;
  }
}

/** Appends snapshot bytes to the output file after the header's place. */
class Output {
  private position = HEADER_BYTES;
  constructor(readonly handle: FileHandle) {}

  get offset(): number {
    return this.position;
  }

  async write(bytes: Buffer): Promise<void> {
    await writeFully(this.handle, bytes, this.position);
    this.position += bytes.length;
  }
}

/** One built partition: its bytes (slot table, then records) and what its directory entry says. */
export interface BuiltPartition {
  readonly bytes: Uint8Array;
  readonly rows: number;
  readonly homeSlots: number;
  readonly slotCount: number;
  readonly maxProbe: number;
  readonly sha256: Uint8Array;
}

/** Consecutive partitions [first, first + parts.length), built from their rows. Plain data: it crosses threads. */
export interface BuiltRange {
  readonly first: number;
  readonly parts: BuiltPartition[];
  readonly duplicates: number;
}

/** Reads the u32 little-endian at `off` (a row's h1 or h2) without Buffer.readUInt32LE's checks. */
function u32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

/**
 * Builds partitions [first, first + count) from rows that all hash into that range, given in input order (the
 * last of equal ids wins). Pure and synchronous: it runs on the main thread or in a worker (`RangeBuilder`).
 *
 * Every pass reads the rows front to back: the rows of a range are several megabytes, and a read at random in
 * them costs a cache miss.
 */
export function buildRange(
  buffers: Buffer[],
  rowCount: number,
  first: number,
  count: number,
  partitionBits: number,
): BuiltRange {
  const bufIndex = new Uint32Array(rowCount);
  const offsets = new Uint32Array(rowCount);
  const lengths = new Uint16Array(rowCount);
  const starts = new Uint32Array(count + 1);
  let i = 0;
  for (let bi = 0; bi < buffers.length; bi++) {
    const b = buffers[bi];
    let off = 0;
    while (off < b.length) {
      const len = recordLength(b, off + ROW_PREFIX);
      starts[partitionOf(u32(b, off), partitionBits) - first + 1]++;
      bufIndex[i] = bi;
      offsets[i] = off;
      lengths[i++] = len;
      off += ROW_PREFIX + len;
    }
  }
  for (let p = 0; p < count; p++) starts[p + 1] += starts[p];
  // Stable counting sort by partition keeps input order inside a partition: last row wins on duplicates. The
  // hashes move with the rows, so placing a partition's rows reads them in order.
  const order = new Uint32Array(rowCount);
  const h1s = new Uint32Array(rowCount);
  const h2s = new Uint32Array(rowCount);
  const fill = starts.slice(0, count);
  for (let r = 0; r < rowCount; r++) {
    const b = buffers[bufIndex[r]];
    const o = offsets[r];
    const h1 = u32(b, o);
    const k = fill[partitionOf(h1, partitionBits) - first]++;
    order[k] = r;
    h1s[k] = h1;
    h2s[k] = u32(b, o + 4);
  }
  const sorted: SortedRows = { buffers, bufIndex, offsets, lengths, order, h1s, h2s };
  const parts: BuiltPartition[] = [];
  let duplicates = 0;
  for (let p = 0; p < count; p++) {
    const built = buildPartition(sorted, starts[p], starts[p + 1]);
    duplicates += built.duplicates;
    parts.push(built.part);
  }
  return { first, parts, duplicates };
}

/** A range's rows counting-sorted by partition: sorted position k is row order[k], with hashes h1s[k], h2s[k]. */
interface SortedRows {
  readonly buffers: Buffer[];
  readonly bufIndex: Uint32Array;
  readonly offsets: Uint32Array;
  /** Record length (without the row prefix) of each row. */
  readonly lengths: Uint16Array;
  readonly order: Uint32Array;
  readonly h1s: Uint32Array;
  readonly h2s: Uint32Array;
}

/** One partition from sorted positions [from, to). Records are laid out in input order, which FORMAT.md leaves free. */
function buildPartition(
  sorted: SortedRows,
  from: number,
  to: number,
): { part: BuiltPartition; duplicates: number } {
  const { buffers, bufIndex, offsets, lengths, order, h1s, h2s } = sorted;
  const n = to - from;
  const homeSlots = Math.max(1, Math.ceil(n / LOAD_FACTOR));
  let cap = homeSlots + 64;
  let fps = new Uint32Array(cap);
  // The sorted position (less `from`) of the row in each slot, -1 for none.
  let refs = new Int32Array(cap).fill(-1);
  let maxProbe = 0;
  let used = 0;
  let duplicates = 0;
  for (let j = 0; j < n; j++) {
    const h1 = h1s[from + j];
    let s = homeSlot(h2s[from + j], homeSlots);
    let probe = 1;
    for (; ; s++, probe++) {
      if (s >= cap) {
        cap *= 2;
        const f2 = new Uint32Array(cap);
        f2.set(fps);
        fps = f2;
        const r2 = new Int32Array(cap).fill(-1);
        r2.set(refs);
        refs = r2;
      }
      const other = refs[s];
      if (other === -1) {
        fps[s] = h1;
        refs[s] = j;
        if (s >= used) used = s + 1;
        break;
      }
      if (fps[s] === h1) {
        const r = order[from + j];
        const q = order[from + other];
        if (
          sameRecordId(
            buffers[bufIndex[r]],
            offsets[r] + ROW_PREFIX,
            buffers[bufIndex[q]],
            offsets[q] + ROW_PREFIX,
          )
        ) {
          refs[s] = j;
          duplicates++;
          break;
        }
      }
    }
    if (probe > maxProbe) maxProbe = probe;
  }
  // Which rows survived (the last of each id), and where each one's record goes: in input order.
  const recordAt = new Int32Array(n).fill(-1);
  for (let s = 0; s < used; s++) if (refs[s] !== -1) recordAt[refs[s]] = 0;
  let recordBytes = 0;
  let live = 0;
  for (let j = 0; j < n; j++) {
    if (recordAt[j] === -1) continue;
    recordAt[j] = recordBytes;
    recordBytes += lengths[order[from + j]];
    live++;
  }
  const slotBytes = used * SLOT_BYTES;
  // allocUnsafeSlow: offset 0 of its own ArrayBuffer, so the slot table can be written through a Uint32Array,
  // and the buffer can be transferred between threads.
  const part = Buffer.allocUnsafeSlow(slotBytes + recordBytes);
  let rec = slotBytes;
  for (let j = 0; j < n; j++) {
    if (recordAt[j] === -1) continue;
    const r = order[from + j];
    const b = buffers[bufIndex[r]];
    const o = offsets[r] + ROW_PREFIX;
    const len = lengths[r];
    // Records are a few dozen bytes: a plain loop beats Buffer.copy's per-call cost.
    for (let k = 0; k < len; k++) part[rec + k] = b[o + k];
    rec += len;
  }
  const slots = new Uint32Array(part.buffer, 0, used * 2);
  for (let s = 0; s < used; s++) {
    const j = refs[s];
    if (j === -1) {
      slots[2 * s] = 0;
      slots[2 * s + 1] = EMPTY_SLOT;
      continue;
    }
    slots[2 * s] = fps[s];
    slots[2 * s + 1] = recordAt[j];
  }
  return {
    part: {
      bytes: part,
      rows: live,
      homeSlots,
      slotCount: used,
      maxProbe: Math.min(maxProbe, used),
      sha256: partitionSha(part),
    },
    duplicates,
  };
}

/**
 * Builds a range of partitions from one buffer of encoded rows, possibly on another thread (the leader passes its
 * worker pool). `rows` is handed over: the caller must not use it afterwards.
 */
export type RangeBuilder = (
  rows: Buffer,
  rowCount: number,
  first: number,
  count: number,
  partitionBits: number,
) => Promise<BuiltRange>;

/** The default RangeBuilder: on this thread. */
export const buildRangeHere: RangeBuilder = async (rows, rowCount, first, count, bits) =>
  buildRange([rows], rowCount, first, count, bits);

/** Writes built ranges in partition order and fills the directory. */
class PartitionWriter {
  readonly directory: Buffer;
  duplicates = 0;
  rows = 0;
  constructor(
    readonly out: Output,
    readonly partitionBits: number,
  ) {
    this.directory = Buffer.alloc(2 ** partitionBits * DIRECTORY_ENTRY_BYTES);
  }

  async emit(range: BuiltRange): Promise<void> {
    this.duplicates += range.duplicates;
    for (const [i, part] of range.parts.entries()) {
      const bytes = Buffer.from(part.bytes.buffer, part.bytes.byteOffset, part.bytes.byteLength);
      encodeEntry(this.directory, range.first + i, {
        offset: this.out.offset,
        bytes: bytes.length,
        rows: part.rows,
        homeSlots: part.homeSlots,
        slotCount: part.slotCount,
        maxProbe: part.maxProbe,
        sha256: Buffer.from(part.sha256),
      });
      this.rows += part.rows;
      await this.out.write(bytes);
    }
  }
}

/** Copies the rows of `set` whose partition is in [first, first + count) into one buffer, in input order. */
function gatherRows(
  set: RowSet,
  partitionBits: number,
  first: number,
  count: number,
): { rows: Buffer; count: number } {
  let bytes = 0;
  let n = 0;
  const inRange = (b: Buffer, off: number) => {
    const p = partitionOf(b.readUInt32LE(off), partitionBits);
    return p >= first && p < first + count;
  };
  for (const b of set.buffers) {
    forEachRow(b, (off, len) => {
      if (!inRange(b, off)) return;
      bytes += len;
      n++;
    });
  }
  const rows = Buffer.allocUnsafeSlow(bytes);
  let at = 0;
  for (const b of set.buffers) {
    forEachRow(b, (off, len) => {
      if (!inRange(b, off)) return;
      for (let k = 0; k < len; k++) rows[at + k] = b[off + k];
      at += len;
    });
  }
  return { rows, count: n };
}

/** Reads a run file whole (it fits the memory budget) as a row set. */
async function loadRun(run: Run): Promise<RowSet> {
  if (run.count === 0) return { buffers: [], count: 0 };
  const h = await open(run.path, 'r');
  try {
    // Its own ArrayBuffer: the rows may move to a worker thread.
    const buf = Buffer.allocUnsafeSlow(run.bytes);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await h.read(buf, done, Math.min(CHUNK_BYTES * 4, buf.length - done), done);
      if (bytesRead === 0) throw new Error(`run file ${run.path} is shorter than written`);
      done += bytesRead;
    }
    return { buffers: [buf], count: run.count };
  } finally {
    await h.close();
  }
}

/** Streams a run file in chunks of whole rows (for splitting a run larger than memory). */
async function* runChunks(run: Run): AsyncGenerator<Buffer> {
  const h = await open(run.path, 'r');
  try {
    let carry = Buffer.alloc(0);
    let position = 0;
    while (position < run.bytes) {
      const buf = Buffer.allocUnsafe(CHUNK_BYTES);
      const { bytesRead } = await h.read(buf, 0, CHUNK_BYTES, position);
      if (bytesRead === 0) throw new Error(`run file ${run.path} is shorter than written`);
      position += bytesRead;
      const data = carry.length
        ? Buffer.concat([carry, buf.subarray(0, bytesRead)])
        : buf.subarray(0, bytesRead);
      let whole = 0;
      while (whole + ROW_PREFIX < data.length) {
        const len = ROW_PREFIX + recordLength(data, whole + ROW_PREFIX);
        if (whole + len > data.length) break;
        whole += len;
      }
      yield data.subarray(0, whole);
      carry = Buffer.from(data.subarray(whole));
    }
  } finally {
    await h.close();
  }
}

/** Rows per range when the rows in memory are split for building on several threads. */
const RANGE_ROWS = 131_072;

/**
 * Ranges being built, at most `concurrency` at once and at most `maxBytes` of rows in flight (one range may exceed
 * it alone), written in the order they were added.
 */
class RangeJobs {
  private readonly inFlight: { result: Promise<BuiltRange>; bytes: number }[] = [];
  private bytes = 0;
  constructor(
    readonly writer: PartitionWriter,
    private readonly build: RangeBuilder,
    private readonly concurrency: number,
    private readonly maxBytes: number,
  ) {}

  async add(rows: Buffer, rowCount: number, first: number, count: number): Promise<void> {
    while (
      this.inFlight.length > 0 &&
      (this.inFlight.length >= this.concurrency || this.bytes + rows.length > this.maxBytes)
    ) {
      await this.emitOldest();
    }
    const result = this.build(rows, rowCount, first, count, this.writer.partitionBits);
    result.catch(() => undefined);
    this.inFlight.push({ result, bytes: rows.length });
    this.bytes += rows.length;
  }

  private async emitOldest(): Promise<void> {
    const job = this.inFlight.shift() as { result: Promise<BuiltRange>; bytes: number };
    this.bytes -= job.bytes;
    await this.writer.emit(await job.result);
  }

  async drain(): Promise<void> {
    while (this.inFlight.length > 0) await this.emitOldest();
  }
}

/** Accepts validated rows and writes one snapshot file. See the module comment for the memory bound. */
export class SnapshotBuilder {
  private chunks: Buffer[] = [];
  /** The groups of each chunk that came grouped (groupRows); undefined for rows added one by one. */
  private chunkGroups: (RowGroups | undefined)[] = [];
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private pos = 0;
  private inMemory = 0;
  /** Bytes of encoded rows held in memory (the chunks plus the part of `chunk` in use). */
  private memoryRowBytes = 0;
  private spill: Spill | undefined;
  private rowsAdded = 0;
  private readonly scratch = Buffer.allocUnsafe(MAX_ROW_BYTES);
  /** Run files live in a directory of their own, removed whole by abort(). */
  private readonly runDir: string;

  constructor(readonly options: BuildOptions) {
    this.runDir = join(options.tmpDir, `runs-${randomBytes(6).toString('hex')}`);
    if (options.spillBuckets !== undefined && !isPowerOfTwo(options.spillBuckets)) {
      throw new Error('spillBuckets must be a power of two');
    }
  }

  get stats(): BuildStats {
    return { rowsAdded: this.rowsAdded, spilled: this.spill !== undefined };
  }

  /** Adds one validated row. When it returns a promise, wait for it before the next call. */
  add(p: Promotion): Promise<void> | undefined {
    this.rowsAdded++;
    if (this.spill !== undefined) {
      return this.spill.append(this.scratch, 0, encodeRow(p, this.scratch, 0));
    }
    if (this.pos + MAX_ROW_BYTES > CHUNK_BYTES) {
      this.chunks.push(this.chunk.subarray(0, this.pos));
      this.chunkGroups.push(undefined);
      this.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      this.pos = 0;
    }
    const len = encodeRow(p, this.chunk, this.pos);
    this.pos += len;
    this.inMemory++;
    this.memoryRowBytes += len;
    return this.memoryRowBytes + CHUNK_BYTES > this.options.memoryBytes ? this.startSpill() : undefined;
  }

  /**
   * Adds `count` rows already encoded by `encodeRow`, as one buffer of whole rows: in input order, or grouped by
   * `groupRows` (input order inside each group) when `groups` is given. The builder keeps the buffer (the caller
   * must not reuse it). When it returns a promise, wait for it before the next call.
   */
  addEncoded(rows: Buffer, count: number, groups?: RowGroups): Promise<void> | undefined {
    if (count === 0) return undefined;
    this.rowsAdded += count;
    if (this.spill !== undefined) return this.spill.appendGrouped(rows, groups);
    if (this.pos > 0) {
      // Rows added one by one before these keep their place in input order.
      this.chunks.push(this.chunk.subarray(0, this.pos));
      this.chunkGroups.push(undefined);
      this.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      this.pos = 0;
    }
    this.chunks.push(rows);
    this.chunkGroups.push(groups);
    this.inMemory += count;
    this.memoryRowBytes += rows.length;
    return this.memoryRowBytes + CHUNK_BYTES > this.options.memoryBytes ? this.startSpill() : undefined;
  }

  private takeMemoryRows(): RowSet {
    const buffers = [...this.chunks, this.chunk.subarray(0, this.pos)];
    const groups = [...this.chunkGroups, undefined];
    const keep = buffers.map((b) => b.length > 0);
    const set = {
      buffers: buffers.filter((_, i) => keep[i]),
      groups: groups.filter((_, i) => keep[i]),
      count: this.inMemory,
    };
    this.chunks = [];
    this.chunkGroups = [];
    this.chunk = Buffer.allocUnsafe(0);
    this.pos = 0;
    this.inMemory = 0;
    this.memoryRowBytes = 0;
    return set;
  }

  private spillBits(): number {
    if (this.options.spillBuckets !== undefined) return log2(this.options.spillBuckets);
    // Aim for runs of an eighth of the budget (rows take about that again once encoded); 256 runs when the size
    // is unknown, and runs that turn out too large are split again at finish.
    const hint = this.options.sizeHintBytes;
    if (hint === undefined) return 8;
    const runs = Math.ceil(hint / (this.options.memoryBytes / 8));
    return Math.min(12, Math.max(4, Math.ceil(Math.log2(runs))));
  }

  private async startSpill(): Promise<void> {
    await mkdir(this.runDir, { recursive: true });
    this.spill = new Spill(this.runDir, 0, this.spillBits());
    const set = this.takeMemoryRows();
    for (const [i, b] of set.buffers.entries()) await this.spill.appendGrouped(b, set.groups?.[i]);
  }

  /** Writes the file (header last), fsyncs it and returns its header. Removes run files whatever happens. */
  async finish(meta: BuildMeta): Promise<SnapshotHeader> {
    const spill = this.spill;
    const minBits = spill?.bits ?? 0;
    const targetRows = this.options.targetPartitionRows ?? TARGET_PARTITION_ROWS;
    const wanted = Math.ceil(Math.log2(Math.max(1, this.rowsAdded / targetRows)));
    const partitionBits = Math.min(MAX_PARTITION_BITS, Math.max(minBits, wanted));
    const handle = await open(this.options.path, 'w');
    try {
      const out = new Output(handle);
      const writer = new PartitionWriter(out, partitionBits);
      const jobs = new RangeJobs(
        writer,
        this.options.rangeBuilder ?? buildRangeHere,
        this.options.buildConcurrency ?? 1,
        // A range being built holds its rows, its index arrays and its output: about 2.5 times its rows.
        this.options.memoryBytes / 4,
      );
      if (spill === undefined) {
        const set = this.takeMemoryRows();
        // Ranges of about RANGE_ROWS rows each, so that several build at once.
        const partitions = 2 ** partitionBits;
        const ranges = Math.min(
          partitions,
          2 ** Math.max(0, Math.ceil(Math.log2(set.count / (this.options.rangeRows ?? RANGE_ROWS)))),
        );
        const per = partitions / ranges;
        for (let r = 0; r < ranges; r++) {
          const { rows, count } =
            ranges === 1
              ? { rows: Buffer.concat(set.buffers), count: set.count }
              : gatherRows(set, partitionBits, r * per, per);
          await jobs.add(rows, count, r * per, per);
        }
      } else {
        await spill.close();
        await this.writeSpill(jobs, spill, 0);
      }
      await jobs.drain();
      const directoryOffset = out.offset;
      await out.write(writer.directory);
      const header = Buffer.allocUnsafe(HEADER_BYTES);
      const fields = {
        snapshotId: randomBytes(16).toString('hex'),
        version: meta.version,
        partitionBits,
        rowCount: writer.rows,
        duplicateCount: writer.duplicates,
        badRowCount: meta.badRowCount,
        buildTimeMs: Date.now(),
        directoryOffset,
        fileBytes: out.offset,
        sourceSha256: meta.sourceSha256,
        directorySha256: createHash('sha256').update(writer.directory).digest('hex'),
      };
      const checksum = encodeHeader(header, fields);
      await handle.write(header, 0, HEADER_BYTES, 0);
      await handle.sync();
      return { ...fields, formatMajor: 1, formatMinor: 0, checksum };
    } finally {
      await handle.close();
      await this.abort();
    }
  }

  /** Builds every bucket of `spill` in partition order; `prefix` is the hash range the spill splits. */
  private async writeSpill(jobs: RangeJobs, spill: Spill, prefix: number): Promise<void> {
    const bits = jobs.writer.partitionBits;
    for (let b = 0; b < spill.runs.length; b++) {
      const run = spill.runs[b];
      const depth = spill.depth + spill.bits;
      const range = prefix * 2 ** spill.bits + b;
      const partitions = 2 ** (bits - depth);
      const first = range * partitions;
      if (run.bytes > this.options.memoryBytes / 4 && partitions > 1) {
        // Too large to load: split by the next hash bits, at most down to one partition per run.
        const sub = new Spill(this.runDir, depth, Math.min(4, bits - depth));
        for await (const chunk of runChunks(run)) await sub.appendRows(chunk);
        await sub.close();
        await rm(run.path, { force: true });
        await this.writeSpill(jobs, sub, range);
        continue;
      }
      const loaded = await loadRun(run);
      await jobs.add(loaded.buffers[0] ?? Buffer.allocUnsafeSlow(0), loaded.count, first, partitions);
      await rm(run.path, { force: true });
    }
  }

  /** Drops buffered rows and removes run files. Safe to call more than once. */
  async abort(): Promise<void> {
    this.chunks = [];
    this.chunkGroups = [];
    this.chunk = Buffer.allocUnsafe(0);
    const runs = this.spill?.runs ?? [];
    this.spill = undefined;
    await Promise.all(runs.map((r) => r.close().catch(() => undefined)));
    await rm(this.runDir, { recursive: true, force: true });
  }
}
