/**
 * The partition directory as lookups use it (typed arrays, built once per loaded version), and the one rule both
 * serving modes follow to find an id's slots (FORMAT.md, "Lookup"). Immutable; safe to share.
 */
import { homeSlot, type PartitionEntry, partitionOf } from './format.js';
import { keyHash1, slotHash } from './key-hash.js';

/** Where an id may sit: its fingerprint, its partition, and the slots [home, end) to probe. */
export interface ProbeRange {
  readonly h1: number;
  readonly partition: number;
  readonly home: number;
  readonly end: number;
}

export class PartitionDirectory {
  readonly offsets: Float64Array;
  readonly ends: Float64Array;
  readonly homeSlots: Uint32Array;
  readonly slotCount: Uint32Array;
  readonly maxProbe: Uint32Array;

  constructor(
    readonly partitionBits: number,
    partitions: readonly PartitionEntry[],
  ) {
    this.offsets = Float64Array.from(partitions, (p) => p.offset);
    this.ends = Float64Array.from(partitions, (p) => p.offset + p.bytes);
    this.homeSlots = Uint32Array.from(partitions, (p) => p.homeSlots);
    this.slotCount = Uint32Array.from(partitions, (p) => p.slotCount);
    this.maxProbe = Uint32Array.from(partitions, (p) => p.maxProbe);
  }

  /** Bytes these arrays hold. */
  get bytes(): number {
    return this.offsets.length * 28;
  }

  locate(id: string): ProbeRange {
    const h1 = keyHash1(id);
    const partition = partitionOf(h1, this.partitionBits);
    const home = homeSlot(slotHash(h1), this.homeSlots[partition]);
    return { h1, partition, home, end: Math.min(home + this.maxProbe[partition], this.slotCount[partition]) };
  }
}
