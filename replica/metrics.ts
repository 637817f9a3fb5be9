/**
 * The replica's own metrics: the version and rows it serves and in which mode (read from the live index when
 * Prometheus scrapes: nothing to update on the hot path), how long versions took to load, and bytes pulled.
 */
import type { Registry } from 'prom-client';
import { histogram, scrapedCounter, scrapedGauge, scrapedGauges } from '../common/metric-declarations.js';
import { DiskSnapshot, diskStats } from '../common/snapshot/disk-snapshot.js';
import { readPoolStats } from '../common/snapshot/read-pool.js';
import type { LiveIndex } from './live-index.js';
import type { Syncer } from './sync.js';

/** Disk mode's running totals, each a counter: name, help, the total. */
const DISK_COUNTERS: readonly (readonly [string, string, () => number])[] = [
  ['disk_lookups_total', 'Lookups asked of disk-mode versions', () => diskStats.lookups],
  [
    'disk_cache_hits_total',
    'Disk-mode lookups answered from the hot-record cache (hit ratio: this over disk_lookups_total)',
    () => diskStats.cacheHits,
  ],
  [
    'disk_file_lookups_total',
    'Disk-mode lookups that read the file (neither cached nor ruled out by the slot tables in memory)',
    () => diskStats.fileLookups,
  ],
  [
    'disk_reads_total',
    'Positional reads of snapshot files by the disk read workers (per lookup: this over disk_lookups_total)',
    () => readPoolStats.preads,
  ],
  [
    'disk_read_batches_total',
    'Batches of reads handed to the disk read workers',
    () => readPoolStats.batches,
  ],
  [
    'disk_read_worker_restarts_total',
    'Disk read workers that died and were replaced (their lookups answered 500)',
    () => readPoolStats.restarts,
  ],
];

/** Disk mode: lookups, cache hits, positional reads, worker restarts, and the cache's fill. */
function registerDiskMetrics(registry: Registry, index: LiveIndex): void {
  for (const [name, help, total] of DISK_COUNTERS) scrapedCounter(registry, name, help, total);
  const disk = () => {
    const s = index.current?.snapshot;
    return s instanceof DiskSnapshot ? s : undefined;
  };
  scrapedGauges(
    registry,
    'disk_cache_entries',
    "Records in the served version's hot-record cache",
    'state',
    () => {
      const c = disk()?.cacheSize;
      return [
        ['used', c?.used ?? 0],
        ['capacity', c?.capacity ?? 0],
      ];
    },
  );
  scrapedGauges(
    registry,
    'disk_slot_table_partitions',
    'Partitions of the served version whose slot table is in memory (held) or not (file): one read or two',
    'state',
    () => {
      const t = disk()?.slotTables;
      return [
        ['held', t?.held ?? 0],
        ['file', t === undefined ? 0 : t.partitions - t.held],
      ];
    },
  );
}

export function registerReplicaMetrics(registry: Registry, index: LiveIndex, syncer: Syncer): void {
  registerDiskMetrics(registry, index);
  const loads = histogram(
    registry,
    'snapshot_load_duration_seconds',
    'Time from deciding to load a version to serving it: pull, verification, load and swap',
    [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800],
  );
  syncer.onLoaded = (seconds) => loads.observe(seconds);
  scrapedCounter(
    registry,
    'snapshot_pulled_bytes_total',
    'Bytes of snapshot files received from the leader',
    () => syncer.pulledBytes,
  );
  scrapedGauge(
    registry,
    'snapshot_version',
    'Version this replica serves (0 before the first)',
    () => index.current?.manifest.version ?? 0,
  );
  scrapedGauge(
    registry,
    'snapshot_wanted_version',
    'Version this replica was last told to serve (0 before it was told any)',
    () => syncer.status.wantedVersion ?? 0,
  );
  scrapedGauge(
    registry,
    'snapshot_behind',
    '1 while this replica serves another version than the one it was told to, because that one failed to load',
    () => (syncer.behind ? 1 : 0),
  );
  scrapedGauge(
    registry,
    'snapshot_rows',
    'Rows in the version this replica serves',
    () => index.current?.manifest.rows ?? 0,
  );
  scrapedGauges(
    registry,
    'snapshot_serve_mode',
    'How the served version is held: 1 for the mode in use (memory or disk)',
    'mode',
    () => {
      const mode = index.current?.snapshot.mode;
      return (['memory', 'disk'] as const).map((m) => [m, mode === m ? 1 : 0]);
    },
  );
}
