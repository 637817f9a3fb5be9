/**
 * The replica's own metrics: the version and rows it serves and in which mode (read from the live index when
 * Prometheus scrapes: nothing to update on the hot path), how long versions took to load, and bytes pulled.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../common/metrics.js';
import type { LiveIndex } from './live-index.js';
import type { Syncer } from './sync.js';

export function registerReplicaMetrics(registry: Registry, index: LiveIndex, syncer: Syncer): void {
  const loads = new Histogram({
    name: `${METRIC_PREFIX}snapshot_load_duration_seconds`,
    help: 'Time from deciding to load a version to serving it: pull, verification, load and swap',
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800],
    registers: [registry],
  });
  syncer.onLoaded = (seconds) => loads.observe(seconds);
  let reported = 0;
  new Counter({
    name: `${METRIC_PREFIX}snapshot_pulled_bytes_total`,
    help: 'Bytes of snapshot files received from the leader',
    registers: [registry],
    collect() {
      this.inc(syncer.pulledBytes - reported);
      reported = syncer.pulledBytes;
    },
  });
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
