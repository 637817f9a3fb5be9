/**
 * Disk mode's cache of hot records: a fixed arena of ENTRY_BYTES-byte entries holding records as the file stores
 * them (answers are rendered from them as memory mode renders from its partitions), found through an open-addressing
 * table keyed by the id's first hash, and evicted by CLOCK with small counters (GCLOCK): a hit raises an entry's
 * counter (up to MAX_COUNT), the hand lowers it, and an entry at zero goes. Scan resistance comes from admission,
 * as TinyLFU's "doorkeeper" does it: once the cache is full, a record is admitted only when its id missed before,
 * recently (its first hash is still in a direct-mapped table of recent misses), so ids read once, such as a key
 * scan, never take an entry from ids that are read again and again. The arena is sized once from its byte
 * budget; nothing grows, so the bound holds whatever the keys.
 *
 * One cache belongs to one loaded version (disk-snapshot.ts): a swap brings a new, empty cache, so an answer of an
 * old version can never come from the cache after the swap; `release` frees the arena when the version goes.
 *
 * Concurrency: main thread only; every method is synchronous.
 */
import { recordHasId } from './record-codec.js';
import { releaseArrayBuffers } from './release.js';

/**
 * Bytes of one entry. A UUID record is 32 bytes with a 9-digit price; a raw id's record is 8 bytes besides the id
 * and the price, so any id of up to 36 characters (an upper-case UUID, say) fits with a price of up to 12
 * characters. Longer records are not kept. 64 MiB holds 804K entries, against 703K with the first design's 64-byte
 * entries (and its table of misses rounded up to a power of two), which took the steady-state hit ratio of
 * Zipfian reads (s = 0.99 over 1M ids) from 96.7% to 98.0%; the best any cache of as many entries can do is 97.4%
 * and 98.4% (scripts/bench/cache-hits.ts, BENCHMARKS.md).
 */
export const ENTRY_BYTES = 56;
const MAX_COUNT = 3;
/** Entries the hand may pass over for one insertion before it takes the one it points at (bounds the work). */
const MAX_SWEEP = 32;
/** Bytes per entry besides its record and its share of the two tables: fingerprint (4), counter (1). */
const ENTRY_OVERHEAD = 5;
const TABLE_LOAD = 0.7;
/**
 * Slots of the table of recent misses per entry. Between two reads of a hot id that is not yet in, the misses of
 * other ids may overwrite its slot; with 3 slots an entry, its mark outlives a scan of `capacity` ids with odds
 * e^(-1/3), about 0.72. The table's size is exactly this (its slot is found by multiplying, not by a mask), so no
 * rounding to a power of two takes entries from the arena.
 */
const DOOR_SLOTS_PER_ENTRY = 3;

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Slots of the lookup table for `capacity` entries (one always stays empty, so a probe ends). */
function tableSlots(capacity: number): number {
  return pow2AtLeast(Math.ceil(capacity / TABLE_LOAD) + 1);
}

export class RecordCache {
  /** Entries the arena holds. */
  readonly capacity: number;
  /** Bytes allocated for the arena and its table (at most the budget). */
  readonly bytes: number;
  /** The records, ENTRY_BYTES apart. */
  readonly data: Buffer;
  private readonly fp: Uint32Array;
  private readonly count: Uint8Array;
  /** Entry index + 1 per table slot; 0 is empty. */
  private readonly table: Int32Array;
  /** First hashes of recent misses, direct-mapped: a second miss of the same id admits its record. */
  private readonly doorkeeper: Uint32Array;
  private readonly mask: number;
  private used = 0;
  private hand = 0;
  hits = 0;
  misses = 0;

  /** A cache within `budgetBytes` (at least one entry's worth). */
  constructor(budgetBytes: number) {
    const total = (c: number) =>
      c * (ENTRY_BYTES + ENTRY_OVERHEAD + 4 * DOOR_SLOTS_PER_ENTRY) + 4 * tableSlots(c);
    // The most entries that fit (total grows with c): a binary search, since the table's size goes in steps.
    let lo = 1;
    let hi = Math.max(1, Math.floor(budgetBytes / (ENTRY_BYTES + ENTRY_OVERHEAD)));
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (total(mid) <= budgetBytes) lo = mid;
      else hi = mid - 1;
    }
    this.capacity = lo;
    const slots = tableSlots(this.capacity);
    this.bytes = total(this.capacity);
    // allocUnsafeSlow: its own ArrayBuffer (release can detach it), and pages become resident only when written.
    this.data = Buffer.allocUnsafeSlow(this.capacity * ENTRY_BYTES);
    this.fp = new Uint32Array(this.capacity);
    this.count = new Uint8Array(this.capacity);
    this.table = new Int32Array(slots);
    this.mask = slots - 1;
    this.doorkeeper = new Uint32Array(DOOR_SLOTS_PER_ENTRY * this.capacity);
  }

  /** Entries in use. */
  get size(): number {
    return this.used;
  }

  /** Where `id`'s record starts in `data`, or -1 (h1 is the id's first hash). Counts a hit or a miss. */
  find(h1: number, id: string): number {
    const table = this.table;
    for (let t = h1 & this.mask; ; t = (t + 1) & this.mask) {
      const e = table[t] - 1;
      if (e < 0) break;
      if (this.fp[e] === h1 && recordHasId(this.data, e * ENTRY_BYTES, id)) {
        this.hits++;
        if (this.count[e] < MAX_COUNT) this.count[e]++;
        return e * ENTRY_BYTES;
      }
    }
    this.misses++;
    return -1;
  }

  /**
   * Offers the record `src[at, at + length)` of the id with first hash `h1`, just read after a miss: kept while the
   * cache has free entries, then only when the id missed recently before (and always only if it fits an entry).
   */
  insert(h1: number, src: Buffer, at: number, length: number): void {
    if (length > ENTRY_BYTES || length === 0) return;
    if (this.used === this.capacity) {
      // h1's share of the table's length (h1 / 2^32 is exact, and the product stays below the length).
      const door = Math.floor((h1 / 4294967296) * this.doorkeeper.length);
      if (this.doorkeeper[door] !== h1) {
        this.doorkeeper[door] = h1;
        return;
      }
      this.doorkeeper[door] = 0;
    }
    const e = this.victim();
    src.copy(this.data, e * ENTRY_BYTES, at, at + length);
    this.fp[e] = h1;
    this.count[e] = 0;
    let t = h1 & this.mask;
    while (this.table[t] !== 0) t = (t + 1) & this.mask;
    this.table[t] = e + 1;
  }

  /** A free entry: the next unused one, else the first the hand finds at zero (or the one it reaches last). */
  private victim(): number {
    if (this.used < this.capacity) return this.used++;
    for (let step = 0; ; step++) {
      const e = this.hand;
      this.hand = e + 1 === this.capacity ? 0 : e + 1;
      if (this.count[e] === 0 || step === MAX_SWEEP) {
        this.remove(e);
        return e;
      }
      this.count[e]--;
    }
  }

  /** Takes entry `e` out of the table (backward-shift deletion keeps every probe sequence unbroken). */
  private remove(e: number): void {
    const table = this.table;
    const mask = this.mask;
    let i = this.fp[e] & mask;
    while (table[i] !== e + 1) i = (i + 1) & mask;
    for (let j = (i + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const home = this.fp[table[j] - 1] & mask;
      // The entry at j may move to the hole at i unless its home lies cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        table[i] = table[j];
        i = j;
      }
    }
    table[i] = 0;
  }

  /** Frees the arena now (the version is gone); the cache must not be used afterwards. */
  release(): void {
    releaseArrayBuffers([
      this.data.buffer,
      this.fp.buffer,
      this.count.buffer,
      this.table.buffer,
      this.doorkeeper.buffer,
    ]);
  }
}
