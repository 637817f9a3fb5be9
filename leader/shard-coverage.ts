/**
 * Which versions the replicas serve *whole*: with shards (SHARD=k/S on replicas, common/snapshot/shard.ts) a version
 * is live only when every shard of a layout (one shard count S) has at least one replica serving it; a replica of
 * the whole data set is a layout of one shard. Replicas of two layouts at once (a blue-green reshard from S to S')
 * are counted apart: each layout is complete or not on its own.
 *
 * Pure functions over what the replica registry reports; safe to call from anywhere.
 */
import { parseShard } from '../common/snapshot/shard.js';

/** What one replica reports: its shard (`k/S`, or null for the whole data set) and the version it serves. */
export interface ServedBy {
  readonly shard: string | null;
  readonly version: number | null;
}

/** One shard of a layout: how many replicas hold it, and the versions they serve (newest first). */
export interface ShardServing {
  readonly index: number;
  readonly replicas: number;
  readonly versions: number[];
}

/** One layout (a shard count): each shard's replicas, and the versions that every shard serves. */
export interface LayoutCoverage {
  readonly shards: number;
  /** Versions served by at least one replica of every shard of this layout, newest first. */
  readonly live: number[];
  /** Shards with no replica serving the current version (all of them before any version is current). */
  readonly missingCurrent: number[];
  readonly perShard: ShardServing[];
}

export interface ShardCoverage {
  /** Whether some layout serves the current version on every one of its shards. */
  readonly currentLive: boolean;
  readonly layouts: LayoutCoverage[];
}

/** The coverage of versions by `replicas`' shards, `current` being the leader's current version. */
export function shardCoverage(replicas: readonly ServedBy[], current: number | undefined): ShardCoverage {
  const byCount = new Map<number, Map<number, { replicas: number; versions: Set<number> }>>();
  for (const r of replicas) {
    const shard = r.shard === null ? { index: 0, count: 1 } : parseShard(r.shard);
    if (typeof shard === 'string') continue;
    let layout = byCount.get(shard.count);
    if (layout === undefined) {
      layout = new Map();
      for (let k = 0; k < shard.count; k++) layout.set(k, { replicas: 0, versions: new Set() });
      byCount.set(shard.count, layout);
    }
    const cell = layout.get(shard.index) as { replicas: number; versions: Set<number> };
    cell.replicas++;
    if (r.version !== null) cell.versions.add(r.version);
  }
  const layouts = [...byCount.entries()]
    .sort(([a], [b]) => a - b)
    .map(([count, cells]): LayoutCoverage => {
      const perShard = [...cells.entries()].map(([index, c]) => ({
        index,
        replicas: c.replicas,
        versions: [...c.versions].sort((a, b) => b - a),
      }));
      const live = perShard[0].versions.filter((v) => perShard.every((s) => s.versions.includes(v)));
      const missingCurrent = perShard
        .filter((s) => current === undefined || !s.versions.includes(current))
        .map((s) => s.index);
      return { shards: count, live, missingCurrent, perShard };
    });
  return {
    currentLive: current !== undefined && layouts.some((l) => l.live.includes(current)),
    layouts,
  };
}
