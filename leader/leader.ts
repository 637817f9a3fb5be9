/**
 * Wires the leader's parts together from its config: store, ingest, replica registry, HTTP app.
 * Used by `main.ts` and by tests, which pass build tuning to exercise spilling on small files, and short notice
 * retries or a fake DNS resolver to the replica registry.
 *
 * Concurrency: rollbacks, prunes and fall-backs from a corrupt current version run one at a time (a prune never removes a version an activation is making
 * current); ingest commits run under the ingest lock and only add versions newer than any a prune may remove.
 */
import type Koa from 'koa';
import type { LeaderConfig } from '../common/config.js';
import type { Logger } from '../common/logger.js';
import { createHttpMetrics } from '../common/metrics.js';
import type { SnapshotManifest } from '../common/protocol.js';
import { createLeaderApp } from './app.js';
import { resetFormsDir } from './form-upload.js';
import { Inbox } from './inbox.js';
import { Ingestor } from './ingest.js';
import { registerLeaderMetrics } from './metrics.js';
import { ParsePool } from './parse-pool.js';
import { ReplicaRegistry, type ReplicaRegistryOptions } from './replica-registry.js';
import { SnapshotChecks } from './snapshot-checks.js';
import { SnapshotStore } from './snapshot-store.js';
import { ResumableUploads } from './uploads.js';

export interface Leader {
  readonly app: Koa;
  readonly store: SnapshotStore;
  readonly ingestor: Ingestor;
  readonly replicas: ReplicaRegistry;
  /** Verification of the kept snapshot files (activation, start, background scrub). */
  readonly checks: SnapshotChecks;
  /** The ingest workers. */
  readonly pool: ParsePool;
  readonly uploads: ResumableUploads;
  /** Watches INBOX_DIR; undefined when INBOX_DIR is empty. */
  readonly inbox: Inbox | undefined;
  /** Set `draining` when shutting down: /readyz then answers 503. */
  readonly lifecycle: { draining: boolean };
  /** Stops the inbox, upload sweeps, parse workers, notice retries and DNS refreshes (at shutdown). */
  close(): Promise<void>;
}

/** Builds a leader from its config; `replicaOptions` tune notice retries and DNS (tests). */
export async function createLeader(
  config: LeaderConfig,
  logger: Logger,
  buildTuning: { targetPartitionRows?: number; spillBuckets?: number } = {},
  replicaOptions: ReplicaRegistryOptions = {},
  /** Tests: the clock the inbox times a file's stability with (see Inbox). */
  inboxElapsedMs?: () => number,
): Promise<Leader> {
  const store = await SnapshotStore.open(config.dataDir, logger);
  const checks = new SnapshotChecks(store, logger, {
    scrubBytesPerSecond: config.scrubBytesPerSecond,
    scrubIntervalMs: config.scrubIntervalMs,
    onCurrentCorrupt: (version) => void serial(() => fallBack(version)),
  });
  let storeQueue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = storeQueue.then(fn);
    storeQueue = run.catch(() => undefined);
    return run;
  };
  const prune = () =>
    serial(() => store.prune(config.keepVersions, replicas.versionsInUse())).catch((err) =>
      logger.error({ err }, 'prune failed'),
    );
  // Old versions go only when no replica serves them: prune at each publish, and again whenever a replica moves
  // to another version (a notice answered, a poll reporting it, a replica gone from DNS). Cheap when nothing goes.
  const replicas = new ReplicaRegistry(config.replicas, config.replicaToken, config.pushTimeoutMs, logger, {
    dns: config.replicasDns,
    expiryMs: config.replicaExpiryMs,
    onServedChange: () => void prune(),
    ...replicaOptions,
  });
  const publish = (manifest: SnapshotManifest) => {
    void prune();
    void replicas.notifyAll(manifest);
  };
  const activate = async (version: number) => {
    const manifest = await serial(async () => {
      await checks.require(version);
      return store.activate(version);
    });
    publish(manifest);
    return manifest;
  };
  /**
   * The current version's file is corrupt: the newest kept version that verifies becomes current (and, once
   * running, is published). Availability first: replicas keep a version they can verify, and the next ingest
   * replaces it. Without a good version the corrupt one stays current, its file refused (SNAPSHOT_CORRUPT).
   */
  async function fallBack(corrupt: number, atStart = false): Promise<void> {
    if (store.current()?.version !== corrupt) return;
    const good = await checks.newestGood(corrupt);
    if (good === undefined) {
      logger.error(
        { corrupt },
        "the current version's file is corrupt and no other kept version verifies: replicas keep what they " +
          'serve; ingest a file to replace it',
      );
      return;
    }
    const manifest = await store.activate(good.version);
    logger.error(
      { corrupt, current: good.version },
      "the current version's file is corrupt: fell back to the newest kept version that verifies",
    );
    if (!atStart) publish(manifest);
  }
  // The current version's file is verified before anything is offered; a corrupt one is replaced now.
  const atStart = store.current();
  if (atStart !== undefined && (await checks.verify(atStart.version)).state === 'corrupt') {
    await fallBack(atStart.version, true);
  }
  const pool = new ParsePool(config.ingestWorkers);
  const metrics = createHttpMetrics('leader');
  const ingestMetrics = registerLeaderMetrics(metrics.registry, store, replicas, checks);
  // Files on disk wait for a running ingest: each resumable upload that may exist, plus the inbox's current file.
  const settings = { ...config, maxWaiting: config.maxUploads + 1 };
  const committed = (manifest: SnapshotManifest) => {
    checks.built(manifest.version);
    publish(manifest);
  };
  const ingestor = new Ingestor(store, settings, logger, committed, pool, ingestMetrics, buildTuning);
  // In the background: the leader is ready at once, and its first file finds the ingest path warm.
  if (config.ingestWarmUpRows > 0) void ingestor.warmUp(config.ingestWarmUpRows);
  const uploads = new ResumableUploads(config, ingestor, logger);
  await uploads.start();
  const formsDir = await resetFormsDir(config.uploadDir);
  const inbox =
    config.inboxDir === '' ? undefined : new Inbox(config, ingestor, logger, Date.now, inboxElapsedMs);
  await inbox?.start();
  const lifecycle = { draining: false };
  const app = createLeaderApp({
    config,
    logger,
    store,
    ingestor,
    uploads,
    formsDir,
    replicas,
    checks,
    activate,
    metrics,
    lifecycle,
  });
  replicas.start();
  checks.start();
  const close = async () => {
    await checks.close();
    await inbox?.close();
    uploads.close();
    replicas.close();
    await pool.close();
  };
  return { app, store, ingestor, replicas, checks, pool, uploads, inbox, lifecycle, close };
}
