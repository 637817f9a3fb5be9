/**
 * Builds one snapshot file from validated rows with bounded memory (common/snapshot/FORMAT.md, "How a file is
 * built"): the orchestration of row-encoding.ts, spill.ts, partition-build.ts and partition-writer.ts.
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
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Promotion } from '../../common/record.js';
import {
  encodeHeader,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  HEADER_BYTES,
  MAX_PARTITION_BITS,
  MAX_SHARD_BITS,
  partitionOf,
  type SnapshotHeader,
  TARGET_PARTITION_ROWS,
} from '../../common/snapshot/format.js';
import { buildRangeHere, type RangeBuilder } from './partition-build.js';
import { Output, PartitionWriter, RangeJobs } from './partition-writer.js';
import { encodeRow, forEachRow, MAX_ROW_BYTES } from './row-encoding.js';
import type { RowGroups } from './row-groups.js';
import { loadRun, runChunks, Spill } from './spill.js';

/** Bytes of one in-memory chunk of rows added one by one. */
const CHUNK_BYTES = 1 << 20;

/** Where a build writes and how much memory and parallelism it may use. */
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

/** What the header records about the build's source, known only to the caller. */
export interface BuildMeta {
  readonly version: number;
  readonly sourceSha256: string;
  readonly badRowCount: number;
}

/** What a build has taken in so far. */
export interface BuildStats {
  /** Rows added, duplicates included. */
  readonly rowsAdded: number;
  /** True when rows went through run files. */
  readonly spilled: boolean;
}

/** Rows of one hash range: encoded rows in memory buffers, each buffer holding whole rows. */
interface RowSet {
  readonly buffers: Buffer[];
  /** Each buffer's groups when it is grouped (groupRows). */
  readonly groups?: (RowGroups | undefined)[];
  readonly count: number;
}

function log2(n: number): number {
  return Math.round(Math.log2(n));
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
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

/** Rows per range when the rows in memory are split for building on several threads. */
const RANGE_ROWS = 131_072;

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
    // MAX_SHARD_BITS at least: any file splits into any number of shards up to the maximum.
    const minBits = Math.max(MAX_SHARD_BITS, spill?.bits ?? 0);
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
      return { ...fields, formatMajor: FORMAT_MAJOR, formatMinor: FORMAT_MINOR, checksum };
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
      await jobs.add(loaded.rows, loaded.count, first, partitions);
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
