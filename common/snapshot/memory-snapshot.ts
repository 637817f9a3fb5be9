/**
 * Memory mode: every partition held in memory; lookups are synchronous and allocate only the answer.
 * Immutable once built: any number of lookups may run; the memory goes with the last reference.
 */
import {
  EMPTY_SLOT,
  homeSlot,
  type PartitionEntry,
  partitionOf,
  SLOT_BYTES,
  type SnapshotHeader,
} from './format.js';
import { keyHash1, slotHash } from './key-hash.js';
import type { LoadedSnapshot } from './reader.js';
import { recordHasId, renderRecord } from './record-codec.js';

export class MemorySnapshot implements LoadedSnapshot {
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
