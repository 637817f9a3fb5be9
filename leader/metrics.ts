/**
 * The leader's own metrics: ingest outcomes, rows and durations (recorded by the ingest), and the current version
 * and each replica's lag (read from the store and the registry when Prometheus scrapes).
 */
import { Counter, type Gauge, type Histogram, type Registry } from 'prom-client';
import {
  counter,
  gauge,
  histogram,
  scrapedCounter,
  scrapedGauge,
  scrapedGauges,
} from '../common/metric-declarations.js';
import { METRIC_PREFIX } from '../common/metrics.js';
import type { ReplicaRegistry } from './replica-registry.js';
import type { SnapshotChecks } from './snapshot-checks.js';
import type { SnapshotStore } from './snapshot-store.js';

export interface IngestMetrics {
  readonly ingests: Counter<'result'>;
  readonly rows: Counter;
  readonly badRows: Counter;
  readonly duration: Histogram;
  readonly inProgress: Gauge;
}

export function registerLeaderMetrics(
  registry: Registry,
  store: SnapshotStore,
  replicas: ReplicaRegistry,
  checks: SnapshotChecks,
): IngestMetrics {
  scrapedGauge(
    registry,
    'snapshot_corrupt_versions',
    'Kept versions whose file on the leader failed its last verification (activation, start or scrub)',
    () => checks.corruptVersions().length,
  );
  scrapedGauge(
    registry,
    'current_version_verified',
    "The current version's file: 1 verified, 0 not checked yet, -1 corrupt",
    () => {
      const current = store.current();
      const state = current === undefined ? 'unchecked' : checks.of(current.version).state;
      return state === 'ok' ? 1 : state === 'corrupt' ? -1 : 0;
    },
  );
  scrapedCounter(
    registry,
    'snapshot_scrubbed_bytes_total',
    'Bytes of kept snapshot files verified by the background scrub',
    () => checks.scrubbedBytes,
  );
  const counted = { ok: 0, corrupt: 0 };
  new Counter({
    name: `${METRIC_PREFIX}snapshot_verifications_total`,
    help: "Verifications of the leader's own snapshot files, by result (ok, corrupt)",
    labelNames: ['result'],
    registers: [registry],
    collect() {
      for (const result of ['ok', 'corrupt'] as const) {
        this.inc({ result }, checks.results[result] - counted[result]);
        counted[result] = checks.results[result];
      }
    },
  });
  scrapedGauge(
    registry,
    'current_version',
    'The current version (0 before the first ingest)',
    () => store.current()?.version ?? 0,
  );
  scrapedGauges(
    registry,
    'replica_lag_versions',
    'Versions each known replica is behind the current one (-1 while unknown)',
    'replica',
    () => replicas.list(store.current()?.version).map((r) => [r.url, r.lag ?? -1]),
  );
  return {
    ingests: counter(
      registry,
      'ingests_total',
      'Files ingested, by result: ok, or the error code that refused them',
      ['result'],
    ),
    rows: counter(registry, 'ingest_rows_total', 'Rows made current by successful ingests'),
    badRows: counter(registry, 'ingest_bad_rows_total', 'Bad rows seen in ingested or refused files'),
    duration: histogram(
      registry,
      'ingest_duration_seconds',
      'Time from the first byte of a file to its version being current (or refused)',
      [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600, 1800],
    ),
    inProgress: gauge(registry, 'uploads_in_progress', 'Files being received and ingested now'),
  };
}
