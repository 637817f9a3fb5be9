/**
 * Wires the leader's parts together from its config: store, ingest, replica registry, HTTP app.
 * Used by `main.ts` and by tests, which pass build tuning to exercise spilling on small files.
 */
import type Koa from 'koa';
import type { LeaderConfig } from '../common/config.js';
import type { Logger } from '../common/logger.js';
import { createHttpMetrics } from '../common/metrics.js';
import type { SnapshotManifest } from '../common/protocol.js';
import { createLeaderApp } from './app.js';
import { Ingestor } from './ingest.js';
import { registerLeaderMetrics } from './metrics.js';
import { ParsePool } from './parse-pool.js';
import { ReplicaRegistry } from './replicas.js';
import { SnapshotStore } from './snapshot-store.js';

export interface Leader {
  readonly app: Koa;
  readonly store: SnapshotStore;
  readonly ingestor: Ingestor;
  readonly replicas: ReplicaRegistry;
  /** Stops the parse workers (at shutdown). */
  close(): Promise<void>;
}

export async function createLeader(
  config: LeaderConfig,
  logger: Logger,
  buildTuning: { targetPartitionRows?: number; spillBuckets?: number } = {},
): Promise<Leader> {
  const store = await SnapshotStore.open(config.dataDir, logger);
  const replicas = new ReplicaRegistry(config.replicas, config.replicaToken, config.pushTimeoutMs, logger);
  const publish = (manifest: SnapshotManifest) => {
    void replicas.notifyAll(manifest);
    store
      .prune(config.keepVersions, replicas.versionsInUse())
      .catch((err) => logger.error({ err }, 'prune failed'));
  };
  const pool = new ParsePool(config.ingestWorkers);
  const metrics = createHttpMetrics('leader');
  const ingestMetrics = registerLeaderMetrics(metrics.registry, store, replicas);
  const ingestor = new Ingestor(store, config, logger, publish, pool, ingestMetrics, buildTuning);
  const app = createLeaderApp({ config, logger, store, ingestor, replicas, publish, metrics });
  return { app, store, ingestor, replicas, close: () => pool.close() };
}
