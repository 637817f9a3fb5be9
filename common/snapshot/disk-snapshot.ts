/**
 * Disk mode, for data larger than memory: the directory lives in memory, and so do as many partitions' slot tables,
 * packed (slot-index.ts, about 5 bytes a row), as their budget allows; records stay in the file. A lookup:
 * 1. the hot-record cache (record-cache.ts), if the id is there: answered at once, as in memory mode;
 * 2. in a partition whose slot table is in memory, an absent id is answered at once, and a present one costs one
 *    positional read, of its record; elsewhere, one read of the probe window and one of the record;
 * 3. the reads are done by the disk read pool's worker threads (read-pool.ts), in batches, never on the event loop.
 * Memory does not grow with the row count: the directory (28 bytes a partition), the slot tables within their
 * budget, and the cache's fixed arena.
 *
 * Concurrency: any number of lookups at once, on the main thread. `close` waits for the lookups in progress, then
 * closes the file and frees the slot tables and the cache; the owner calls it once, after the version stopped
 * being served. A lookup after `close` throws.
 */
import type { FileHandle } from 'node:fs/promises';
import { PartitionDirectory } from './directory.js';
import { type PartitionEntry, SLOT_BYTES, type SnapshotHeader } from './format.js';
import type { LoadedSnapshot } from './loaded-snapshot.js';
import { RESULT_MISS } from './read-channel.js';
import type { DiskReadPool } from './read-pool.js';
import { RecordCache } from './record-cache.js';
import { MAX_RECORD_BYTES, recordHasId, recordLength, renderRecord } from './record-codec.js';
import { SlotIndex } from './slot-index.js';
import type { PartitionSpan } from './verifier.js';

/** How a disk-mode version serves: the pool that reads for it, and the memory it may hold. */
export interface DiskOptions {
  readonly pool: DiskReadPool;
  /** Bytes for slot tables held in memory, whole partitions, as many as fit (0: none). */
  readonly slotBudgetBytes: number;
  /** Bytes for the hot-record cache (0: no cache). */
  readonly cacheBytes: number;
}

/** Counters over every disk-mode version of this process (the replica's metrics read them). */
export const diskStats = {
  /** Lookups asked of disk-mode versions. */
  lookups: 0,
  /** Lookups answered from the hot-record cache. */
  cacheHits: 0,
  /** Lookups that needed the file (a read of the record, or of the probe window and then the record). */
  fileLookups: 0,
};

type Resolve = (body: string | undefined) => void;
type Reject = (err: Error) => void;

export class DiskSnapshot implements LoadedSnapshot {
  readonly mode = 'disk' as const;
  readonly residentBytes: number;
  readonly heldRows: number;
  /** Of the partitions this file holds, how many have their slot table in memory (their ids cost one read). */
  readonly slotTables: { readonly held: number; readonly partitions: number };
  private readonly directory: PartitionDirectory;
  private readonly fd: number;
  private inFlight = 0;
  private closed = false;
  private closing: (() => void) | undefined;

  private constructor(
    readonly header: SnapshotHeader,
    partitions: readonly PartitionEntry[],
    private readonly handle: FileHandle,
    private readonly pool: DiskReadPool,
    private readonly slots: SlotIndex | undefined,
    private readonly cache: RecordCache | undefined,
    /** The partitions the file holds (verified); a shard replica's file has only its shard's. */
    private readonly span: PartitionSpan,
  ) {
    this.fd = handle.fd;
    this.directory = new PartitionDirectory(header.partitionBits, partitions);
    this.residentBytes = this.directory.bytes + (slots?.bytes ?? 0) + (cache?.bytes ?? 0);
    this.heldRows = 0;
    let held = 0;
    for (let i = span.first; i < span.end; i++) {
      this.heldRows += partitions[i].rows;
      if (slots?.holds(i)) held++;
    }
    this.slotTables = { held, partitions: span.end - span.first };
  }

  /**
   * Serves the verified file open in `handle` (which the snapshot then owns), loading as many slot tables as fit
   * `options.slotBudgetBytes`. `span`: the partitions the file holds (a shard replica's file has only its shard's).
   */
  static async open(
    header: SnapshotHeader,
    partitions: readonly PartitionEntry[],
    handle: FileHandle,
    options: DiskOptions,
    span: PartitionSpan = { first: 0, end: partitions.length },
  ): Promise<DiskSnapshot> {
    const started = options.pool.start();
    const slots = await SlotIndex.load(handle, partitions, options.slotBudgetBytes, span);
    const cache = options.cacheBytes > 0 ? new RecordCache(options.cacheBytes) : undefined;
    // Served only once the workers run: the first reads do not wait for threads to boot.
    await started;
    return new DiskSnapshot(header, partitions, handle, options.pool, slots, cache, span);
  }

  /** The hot-record cache's entries in use and capacity (tests, metrics). */
  get cacheSize(): { used: number; capacity: number; bytes: number } | undefined {
    const c = this.cache;
    return c === undefined ? undefined : { used: c.size, capacity: c.capacity, bytes: c.bytes };
  }

  lookup(id: string): string | undefined | Promise<string | undefined> {
    if (this.closed) throw new Error(`version ${this.header.version} is closed`);
    diskStats.lookups++;
    const { h1, partition, home, end } = this.directory.locate(id);
    // Outside the partitions held the file has a hole: never read it (the read path answers 421 before this).
    if (home >= end || partition < this.span.first || partition >= this.span.end) return undefined;
    const cache = this.cache;
    if (cache !== undefined) {
      const at = cache.find(h1, id);
      if (at !== -1) {
        diskStats.cacheHits++;
        return renderRecord(cache.data, at, id);
      }
    }
    let first = -1;
    const slots = this.slots;
    if (slots?.holds(partition)) {
      first = slots.find(partition, h1, home, end);
      // The packed fingerprint rules the id out without a read.
      if (first === -1) return undefined;
    }
    diskStats.fileLookups++;
    this.inFlight++;
    return new Promise<string | undefined>((resolve, reject) => {
      this.fetch(id, h1, partition, first === -1 ? home : first, end, resolve, reject);
    });
  }

  /**
   * Reads the candidate record at slot `from` (slot tables in memory) or probes [from, end) in the file, and
   * settles the lookup; a candidate of another id (a fingerprint collision) goes on from the next slot.
   */
  private fetch(
    id: string,
    h1: number,
    partition: number,
    from: number,
    end: number,
    resolve: Resolve,
    reject: Reject,
  ): void {
    const d = this.directory;
    const start = d.offsets[partition];
    const recordsAt = start + d.slotCount[partition] * SLOT_BYTES;
    const partitionEnd = d.ends[partition];
    const slots = this.slots?.holds(partition) ? this.slots : undefined;
    let position: number;
    let length: number;
    let probeH1: number;
    if (slots !== undefined) {
      position = recordsAt + slots.recordOffset(partition, from);
      length = Math.min(MAX_RECORD_BYTES, partitionEnd - position);
      probeH1 = -1;
    } else {
      position = start + from * SLOT_BYTES;
      length = (end - from) * SLOT_BYTES;
      probeH1 = h1;
    }
    this.pool.read(this.fd, position, length, probeH1, recordsAt, partitionEnd, (n, slot, out, at, err) => {
      if (err !== undefined) {
        this.settle();
        reject(err);
        return;
      }
      if (n === RESULT_MISS) {
        this.settle();
        resolve(undefined);
        return;
      }
      if (recordHasId(out, at, id)) {
        const body = renderRecord(out, at, id);
        this.cache?.insert(h1, out, at, recordLength(out, at));
        this.settle();
        resolve(body);
        return;
      }
      const next = slots !== undefined ? slots.find(partition, h1, from + 1, end) : from + slot + 1;
      if (next === -1 || next >= end) {
        this.settle();
        resolve(undefined);
        return;
      }
      this.fetch(id, h1, partition, next, end, resolve, reject);
    });
  }

  private settle(): void {
    if (--this.inFlight === 0 && this.closing !== undefined) this.closing();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.closing = resolve));
    this.slots?.release();
    this.cache?.release();
    await this.handle.close();
  }
}
