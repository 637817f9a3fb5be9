/**
 * The replica's own metrics: the version and rows it serves and in which mode (read from the live index when
 * Prometheus scrapes: nothing to update on the hot path), how long versions took to load, and bytes pulled.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../common/metrics.js';
import { DiskSnapshot, diskStats } from '../common/snapshot/disk-snapshot.js';
import { readPoolStats } from '../common/snapshot/read-pool.js';
import type { LiveIndex } from './live-index.js';
import type { Syncer } from './sync.js';

/** A counter whose value is read from `read()` when Prometheus scrapes (the hot path only adds to plain fields). */
function scrapedCounter(registry: Registry, name: string, help: string, read: () => number): void {
  let reported = 0;
  new Counter({
    name: `${METRIC_PREFIX}${name}`,
    help,
    registers: [registry],
    collect() {
      const now = read();
      this.inc(now - reported);
      reported = now;
    },
  });
}

/** Disk mode: lookups, cache hits, positional reads, worker restarts, and the cache's fill. */
function registerDiskMetrics(registry: Registry, index: LiveIndex): void {
  scrapedCounter(
    registry,
    'disk_lookups_total',
    'Lookups asked of disk-mode versions',
    () => diskStats.lookups,
  );
  scrapedCounter(
    registry,
    'disk_cache_hits_total',
    'Disk-mode lookups answered from the hot-record cache (hit ratio: this over disk_lookups_total)',
    () => diskStats.cacheHits,
  );
  scrapedCounter(
    registry,
    'disk_file_lookups_total',
    'Disk-mode lookups that read the file (neither cached nor ruled out by the slot tables in memory)',
    () => diskStats.fileLookups,
  );
  scrapedCounter(
    registry,
    'disk_reads_total',
    'Positional reads of snapshot files by the disk read workers (per lookup: this over disk_lookups_total)',
    () => readPoolStats.preads,
  );
  scrapedCounter(
    registry,
    'disk_read_batches_total',
    'Batches of reads handed to the disk read workers',
    () => readPoolStats.batches,
  );
  scrapedCounter(
    registry,
    'disk_read_worker_restarts_total',
    'Disk read workers that died and were replaced (their lookups answered 500)',
    () => readPoolStats.restarts,
  );
  new Gauge({
    name: `${METRIC_PREFIX}disk_cache_entries`,
    help: "Records in the served version's hot-record cache",
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const s = index.current?.snapshot;
      const c = s instanceof DiskSnapshot ? s.cacheSize : undefined;
      this.set({ state: 'used' }, c?.used ?? 0);
      this.set({ state: 'capacity' }, c?.capacity ?? 0);
    },
  });
}

export function registerReplicaMetrics(registry: Registry, index: LiveIndex, syncer: Syncer): void {
  registerDiskMetrics(registry, index);
  const loads = new Histogram({
    name: `${METRIC_PREFIX}snapshot_load_duration_seconds`,
    help: 'Time from deciding to load a version to serving it: pull, verification, load and swap',
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800],
    registers: [registry],
  });
  syncer.onLoaded = (seconds) => loads.observe(seconds);
  scrapedCounter(
    registry,
    'snapshot_pulled_bytes_total',
    'Bytes of snapshot files received from the leader',
    () => syncer.pulledBytes,
  );
  new Gauge({
    name: `${METRIC_PREFIX}snapshot_version`,
    help: 'Version this replica serves (0 before the first)',
    registers: [registry],
    collect() {
      this.set(index.current?.manifest.version ?? 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}snapshot_wanted_version`,
    help: 'Version this replica was last told to serve (0 before it was told any)',
    registers: [registry],
    collect() {
      this.set(syncer.status.wantedVersion ?? 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}snapshot_behind`,
    help: '1 while this replica serves another version than the one it was told to, because that one failed to load',
    registers: [registry],
    collect() {
      this.set(syncer.behind ? 1 : 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}snapshot_rows`,
    help: 'Rows in the version this replica serves',
    registers: [registry],
    collect() {
      this.set(index.current?.manifest.rows ?? 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}snapshot_serve_mode`,
    help: 'How the served version is held: 1 for the mode in use (memory or disk)',
    labelNames: ['mode'],
    registers: [registry],
    collect() {
      const mode = index.current?.snapshot.mode;
      this.set({ mode: 'memory' }, mode === 'memory' ? 1 : 0);
      this.set({ mode: 'disk' }, mode === 'disk' ? 1 : 0);
    },
  });
}
