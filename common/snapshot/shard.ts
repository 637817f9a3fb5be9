/**
 * Shards of a snapshot (FORMAT.md, "Shards"): with S = 2^s shards, shard k holds the ids whose h1 has k as its top
 * s bits. Partitions are picked by h1's top partitionBits bits (at least MAX_SHARD_BITS, so at least s) and lie in
 * order in the file, so shard k is the contiguous run of partitions [k * P / S, (k + 1) * P / S): one byte range
 * of the file. A shard replica pulls and verifies only that range (verifier.ts), and nginx computes the same shard
 * from the id (k8s/router/) to pick the replica group.
 *
 * Pure functions and immutable values; safe to share.
 */
import { SnapshotError } from '../errors.js';
import { HEADER_BYTES, MAX_SHARD_BITS, type PartitionEntry, type SnapshotHeader } from './format.js';
import { keyHash1 } from './key-hash.js';

/** Largest shard count: 2^MAX_SHARD_BITS = 64. */
export const MAX_SHARDS = 2 ** MAX_SHARD_BITS;

/** One shard of S: `index` k in [0, count), `count` S a power of two, `bits` s = log2(S). */
export interface Shard {
  readonly index: number;
  readonly count: number;
  readonly bits: number;
}

/** The shard k of S, checked: S a power of two from 1 to MAX_SHARDS, 0 <= k < S. Throws RangeError otherwise. */
export function shardOf(index: number, count: number): Shard {
  if (!Number.isInteger(count) || count < 1 || count > MAX_SHARDS || (count & (count - 1)) !== 0) {
    throw new RangeError(`the shard count must be a power of two from 1 to ${MAX_SHARDS}, got ${count}`);
  }
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new RangeError(`the shard index must be from 0 to ${count - 1}, got ${index}`);
  }
  return Object.freeze({ index, count, bits: Math.log2(count) });
}

/** Parses `k/S` (e.g. `1/4`); returns the shard or a reason it is not one. */
export function parseShard(text: string): Shard | string {
  const m = /^(\d{1,3})\/(\d{1,3})$/.exec(text.trim());
  if (m === null) return `expected k/S like 1/4, got "${text}"`;
  try {
    return shardOf(Number(m[1]), Number(m[2]));
  } catch (err) {
    return (err as Error).message;
  }
}

/** `k/S`, as SHARD and the replica's reports write it. */
export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/** The shard (of 2^bits) that an id with first hash h1 belongs to. */
export function shardOfHash(h1: number, bits: number): number {
  return bits === 0 ? 0 : h1 >>> (32 - bits);
}

/** The shard (of `shard.count`) that holds `id`. */
export function shardOfId(id: string, bits: number): number {
  return shardOfHash(keyHash1(id), bits);
}

/** Where a shard lies in one file: its partitions [first, end) and their bytes [start, stop). */
export interface ShardRange {
  readonly first: number;
  readonly end: number;
  readonly start: number;
  readonly stop: number;
}

/**
 * The partitions and byte range of `shard` in a file with this header and (checked) directory. Throws
 * SNAPSHOT_BAD_LAYOUT when the file has fewer partitions than shards (a file built before MAX_SHARD_BITS).
 */
export function shardRange(
  header: SnapshotHeader,
  partitions: readonly PartitionEntry[],
  shard: Shard,
): ShardRange {
  if (header.partitionBits < shard.bits) {
    throw new SnapshotError(
      'SNAPSHOT_BAD_LAYOUT',
      `snapshot v${header.version} has ${2 ** header.partitionBits} partitions, fewer than ${shard.count} shards`,
    );
  }
  const per = 2 ** (header.partitionBits - shard.bits);
  const first = shard.index * per;
  const end = first + per;
  const start = first < partitions.length ? partitions[first].offset : HEADER_BYTES;
  const last = partitions[end - 1];
  return { first, end, start, stop: last === undefined ? start : last.offset + last.bytes };
}
