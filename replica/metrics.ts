/**
 * The replica's own metrics: the version and rows it serves and in which mode, read from the live index when
 * Prometheus scrapes (nothing to update on the hot path).
 */
import { Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../common/metrics.js';
import type { LiveIndex } from './live-index.js';

export function registerReplicaMetrics(registry: Registry, index: LiveIndex): void {
  new Gauge({
    name: `${METRIC_PREFIX}snapshot_version`,
    help: 'Version this replica serves (0 before the first)',
    registers: [registry],
    collect() {
      this.set(index.current?.manifest.version ?? 0);
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
