/**
 * Memory mode: every partition held in memory (or, on a shard replica, the partitions of its shard: `buffers[i]` is
 * partition `first + i`); lookups are synchronous and allocate only the answer. A lookup of an id in a partition not
 * held answers undefined: the read path refuses ids of other shards before it asks (421).
 * Immutable once built: any number of lookups may run. `close` frees the partitions' memory at once (release.ts),
 * without waiting for a major garbage collection, which may not come for minutes: since lookups are synchronous,
 * none is in progress when the owner closes a version it no longer serves. A lookup after `close` throws.
 */
import { PartitionDirectory } from './directory.js';
import { EMPTY_SLOT, type PartitionEntry, SLOT_BYTES, type SnapshotHeader } from './format.js';
import type { LoadedSnapshot } from './loaded-snapshot.js';
import { recordHasId, renderRecord } from './record-codec.js';
import { releaseArrayBuffers } from './release.js';

export class MemorySnapshot implements LoadedSnapshot {
  readonly mode = 'memory' as const;
  readonly residentBytes: number;
  readonly heldRows: number;
  private readonly directory: PartitionDirectory;
  private readonly slots: Uint32Array[];
  private closed = false;

  /**
   * `first`: the partition `buffers[0]` holds; `arena`: the ArrayBuffer that holds every partition, owned by this
   * snapshot and freed by `close`.
   */
  constructor(
    readonly header: SnapshotHeader,
    partitions: PartitionEntry[],
    private readonly buffers: Buffer[],
    private readonly first = 0,
    private readonly arena?: ArrayBuffer,
  ) {
    this.residentBytes = buffers.reduce((n, b) => n + b.length, 0);
    this.heldRows = 0;
    for (let i = 0; i < buffers.length; i++) this.heldRows += partitions[first + i].rows;
    this.directory = new PartitionDirectory(header.partitionBits, partitions);
    // Each buffer starts at an aligned offset of its ArrayBuffer (MemoryArena places them so), so a Uint32Array
    // view is aligned (little-endian, as the file is, on every platform Node runs on here).
    this.slots = buffers.map(
      (b, i) => new Uint32Array(b.buffer, b.byteOffset, partitions[first + i].slotCount * 2),
    );
  }

  lookup(id: string): string | undefined {
    if (this.closed) throw new Error(`version ${this.header.version} is closed`);
    const { h1, partition, home, end } = this.directory.locate(id);
    const slots = this.slots[partition - this.first];
    const buf = this.buffers[partition - this.first];
    if (slots === undefined) return undefined;
    const records = this.directory.slotCount[partition] * SLOT_BYTES;
    for (let s = home; s < end; s++) {
      const off = slots[2 * s + 1];
      if (off === EMPTY_SLOT) return undefined;
      if (slots[2 * s] === h1 && recordHasId(buf, records + off, id))
        return renderRecord(buf, records + off, id);
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.arena !== undefined) releaseArrayBuffers([this.arena]);
  }
}
