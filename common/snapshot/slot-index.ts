/**
 * Disk mode's slot tables held in memory, packed to 4 bytes a slot (about 5 bytes a row), so that a lookup finds
 * its record's offset without reading the file and reads only the record. A file slot is 8 bytes (fingerprint h1,
 * record offset); here each partition packs the offset into the fewest bits that its records region needs and
 * keeps the low bits of h1 in the rest, as a shorter fingerprint. A shorter fingerprint matches a wrong id more
 * often (1 in 2^bits per slot passed, about 1 in 1000 with 10 bits), and the caller, which compares the ids,
 * goes on to the next candidate: answers stay exact, a rare lookup costs one more read.
 *
 * Held for as many partitions as a budget allows (whole partitions, in order: ids hash evenly over them, so which
 * ones does not matter), so memory stays bounded however many rows the file has; a lookup in a partition without
 * its table reads the file's (one read more). Built from the file's own slot tables (verified bytes: the file was
 * checked before it opened), one partition at a time, with asynchronous reads, so the event loop is held for one
 * partition's packing at a time.
 *
 * Concurrency: immutable once built; main thread only. `release` frees the memory once no lookup uses it.
 */
import type { FileHandle } from 'node:fs/promises';
import { EMPTY_SLOT, type PartitionEntry, SLOT_BYTES } from './format.js';
import { releaseArrayBuffers } from './release.js';

/** A packed slot that holds nothing (never a real one: offsets stay below 2^bits - 1). */
const PACKED_EMPTY = 0xffffffff;
/** Offsets longer than this leave fingerprints too short to be worth it (4 bits). */
const MAX_OFFSET_BITS = 28;

/** The partitions [first, end) a file holds (all of them, or a shard's). */
interface Span {
  readonly first: number;
  readonly end: number;
}

/** Bytes of memory partition `e`'s packed table takes. */
function packedBytes(e: PartitionEntry): number {
  return e.slotCount * 4;
}

/** Bits of record offset partition `e` needs, or 0 when too many for a fingerprint worth keeping. */
function offsetBitsOf(e: PartitionEntry): number {
  // Offsets are below recordsBytes < 2^bits, so an offset of all ones (PACKED_EMPTY's low bits) never occurs.
  const bits = Math.max(1, 32 - Math.clz32(e.bytes - e.slotCount * SLOT_BYTES));
  return bits > MAX_OFFSET_BITS ? 0 : bits;
}

export class SlotIndex {
  private constructor(
    private readonly arena: ArrayBuffer,
    private readonly tables: Uint32Array[],
    private readonly offsetBits: Uint8Array,
  ) {}

  /**
   * Reads and packs the slot tables of the partitions in `span` from `h` (the file whose layout `partitions` is),
   * as many as fit `budgetBytes`, in order. A partition whose records need more than MAX_OFFSET_BITS bits of offset
   * (hundreds of MB) is left out: its fingerprints would be too short. Undefined when no table is held.
   */
  static async load(
    h: FileHandle,
    partitions: readonly PartitionEntry[],
    budgetBytes: number,
    span: Span = { first: 0, end: partitions.length },
  ): Promise<SlotIndex | undefined> {
    // offsetBits[p] > 0: partition p's table is held. Partitions outside the span (a hole in a shard's file) and
    // past the budget are not: their lookups read the file's table.
    const offsetBits = new Uint8Array(partitions.length);
    let total = 0;
    for (let p = span.first; p < span.end; p++) {
      const e = partitions[p];
      const bits = offsetBitsOf(e);
      if (bits === 0 || total + packedBytes(e) > budgetBytes) continue;
      offsetBits[p] = bits;
      total += packedBytes(e);
    }
    if (total === 0) return undefined;
    const arena = new ArrayBuffer(total);
    const tables: Uint32Array[] = partitions.map(() => new Uint32Array(0));
    let scratch = Buffer.alloc(0);
    let at = 0;
    for (let p = span.first; p < span.end; p++) {
      if (offsetBits[p] === 0) continue;
      const e = partitions[p];
      const table = new Uint32Array(arena, at, e.slotCount);
      at += packedBytes(e);
      tables[p] = table;
      const n = e.slotCount * SLOT_BYTES;
      if (scratch.length < n) scratch = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await h.read(scratch, done, n - done, e.offset + done);
        if (bytesRead === 0) throw new Error(`snapshot ended inside partition ${p}'s slot table`);
        done += bytesRead;
      }
      const bits = offsetBits[p];
      const fpMask = (1 << (32 - bits)) - 1;
      for (let s = 0; s < e.slotCount; s++) {
        const off = scratch.readUInt32LE(s * SLOT_BYTES + 4);
        table[s] =
          off === EMPTY_SLOT
            ? PACKED_EMPTY
            : (((scratch.readUInt32LE(s * SLOT_BYTES) & fpMask) << bits) | off) >>> 0;
      }
    }
    return new SlotIndex(arena, tables, offsetBits);
  }

  /** Bytes held. */
  get bytes(): number {
    return this.arena.byteLength;
  }

  /** Whether `partition`'s table is held (else its lookups read the file's). */
  holds(partition: number): boolean {
    return this.offsetBits[partition] !== 0;
  }

  /**
   * The first slot in [from, end) of held `partition` whose packed fingerprint matches `h1`, or -1 when an empty slot
   * or `end` comes first (the id is absent).
   */
  find(partition: number, h1: number, from: number, end: number): number {
    const table = this.tables[partition];
    const bits = this.offsetBits[partition];
    const fp = h1 & ((1 << (32 - bits)) - 1);
    for (let s = from; s < end; s++) {
      const w = table[s];
      if (w === PACKED_EMPTY) return -1;
      if (w >>> bits === fp) return s;
    }
    return -1;
  }

  /** The record offset (relative to the end of the slot table) that slot `s` of held `partition` holds. */
  recordOffset(partition: number, s: number): number {
    return this.tables[partition][s] & ((1 << this.offsetBits[partition]) - 1);
  }

  /** Frees the tables now; the index must not be used afterwards. */
  release(): void {
    releaseArrayBuffers([this.arena]);
  }
}
