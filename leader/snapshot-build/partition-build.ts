/**
 * The pure part of a snapshot build: from the rows of a hash range, in input order, the partitions of that range
 * (slot table, fingerprints, records) as FORMAT.md lays them out, with duplicates resolved last-wins.
 *
 * Pure and synchronous: it runs on the main thread or in a parse worker (the result is plain data that crosses
 * threads).
 */
import {
  EMPTY_SLOT,
  homeSlot,
  LOAD_FACTOR,
  partitionOf,
  partitionSha,
  SLOT_BYTES,
} from '../../common/snapshot/format.js';
import { recordLength, sameRecordId } from '../../common/snapshot/record-codec.js';
import { ROW_PREFIX } from './row-encoding.js';

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
