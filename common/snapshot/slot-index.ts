/**
 * Disk mode's slot tables held in memory, packed to 4 bytes a slot (about 5 bytes a row), so that a lookup finds
 * its record's offset without reading the file and reads only the record. A file slot is 8 bytes (fingerprint h1,
 * record offset); here each partition packs the offset into the fewest bits that its records region needs and
 * keeps the low bits of h1 in the rest, as a shorter fingerprint. A shorter fingerprint matches a wrong id more
 * often (1 in 2^bits per slot passed, about 1 in 1000 with 10 bits), and the caller, which compares the ids,
 * goes on to the next candidate: answers stay exact, a rare lookup costs one more read.
 *
 * Built from the file's own slot tables (verified bytes: the file was checked before it opened), one partition at a
 * time, with asynchronous reads, so the event loop is held for one partition's packing at a time.
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

/** Bytes of memory the packed tables of `partitions` in `span` take. */
export function slotIndexBytes(
  partitions: readonly PartitionEntry[],
  span: Span = { first: 0, end: partitions.length },
): number {
  let slots = 0;
  for (let p = span.first; p < span.end; p++) slots += partitions[p].slotCount;
  return slots * 4;
}

export class SlotIndex {
  private constructor(
    private readonly arena: ArrayBuffer,
    private readonly tables: Uint32Array[],
    private readonly offsetBits: Uint8Array,
  ) {}

  /**
   * Reads and packs every partition's slot table from `h` (the file whose layout `partitions` is). Undefined when a
   * partition's records need more than MAX_OFFSET_BITS bits of offset (a partition of hundreds of MB): its
   * fingerprints would be too short, and probes read the file's tables instead.
   */
  static async load(
    h: FileHandle,
    partitions: readonly PartitionEntry[],
    span: Span = { first: 0, end: partitions.length },
  ): Promise<SlotIndex | undefined> {
    const offsetBits = new Uint8Array(partitions.length);
    for (let p = span.first; p < span.end; p++) {
      const e = partitions[p];
      // Offsets are below recordsBytes < 2^bits, so an offset of all ones (PACKED_EMPTY's low bits) never occurs.
      const bits = Math.max(1, 32 - Math.clz32(e.bytes - e.slotCount * SLOT_BYTES));
      if (bits > MAX_OFFSET_BITS) return undefined;
      offsetBits[p] = bits;
    }
    const arena = new ArrayBuffer(slotIndexBytes(partitions, span));
    // Partitions outside the span (a hole in a shard's file) get empty tables: lookups never reach them.
    const tables: Uint32Array[] = partitions.map(() => new Uint32Array(0));
    let scratch = Buffer.alloc(0);
    let at = 0;
    for (let p = span.first; p < span.end; p++) {
      const e = partitions[p];
      const table = new Uint32Array(arena, at, e.slotCount);
      at += e.slotCount * 4;
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

  /**
   * The first slot in [from, end) of `partition` whose packed fingerprint matches `h1`, or -1 when an empty slot
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

  /** The record offset (relative to the end of the slot table) that slot `s` of `partition` holds. */
  recordOffset(partition: number, s: number): number {
    return this.tables[partition][s] & ((1 << this.offsetBits[partition]) - 1);
  }

  /** Frees the tables now; the index must not be used afterwards. */
  release(): void {
    releaseArrayBuffers([this.arena]);
  }
}
