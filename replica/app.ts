/**
 * The replica's HTTP surface: the read path (answered by the raw fast path of `read-server.ts`, or by a lean
 * node:http handler) in front of a Koa app that serves everything else (health, readiness, metrics, the leader's
 * notices). Built only from its dependencies; `listenReplica` puts it on a port.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import Router from '@koa/router';
import Koa from 'koa';
import { koaBody } from 'koa-body';
import type { ReplicaConfig } from '../common/config.js';
import { AppError, errorBody } from '../common/errors.js';
import {
  bodyParseError,
  listen,
  type RunningServer,
  requestLogMiddleware,
  requireBearer,
  type ServerLimits,
  useErrorHandling,
} from '../common/http.js';
import type { Logger } from '../common/logger.js';
import { createHttpMetrics, metricsMiddleware, metricsRoute } from '../common/metrics.js';
import { OPENAPI_PATH, openApiRoute } from '../common/openapi.js';
import { parseManifest } from '../common/protocol.js';
import { formatShard } from '../common/snapshot/shard.js';
import type { LiveIndex } from './live-index.js';
import { registerReplicaMetrics } from './metrics.js';
import { REPLICA_OPENAPI } from './openapi.js';
import { createReadHandler } from './read-handler.js';
import { ReadPath } from './read-path.js';
import { installFastReads } from './read-server.js';
import type { Syncer } from './sync.js';

export interface ReplicaDeps {
  readonly config: Pick<
    ReplicaConfig,
    'replicaToken' | 'maxInFlight' | 'maxQueue' | 'maxBatchIds' | 'readMaxAgeS'
  > &
    Partial<Pick<ReplicaConfig, 'shard'>>;
  readonly logger: Logger;
  readonly index: LiveIndex;
  readonly syncer: Syncer;
  /** Set when SIGTERM starts a graceful shutdown: /readyz answers 503 so the load balancer stops sending reads. */
  readonly lifecycle?: { draining: boolean };
}

export interface ReplicaApp {
  readonly koa: Koa;
  /** The node:http request handler: reads first, Koa for the rest. */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** The read path, shared by the fast path and `handler`. */
  readonly reads: ReadPath;
}

export function createReplicaApp(deps: ReplicaDeps): ReplicaApp {
  const { config, logger, index, syncer } = deps;
  const koa = new Koa();
  const router = new Router();
  const metrics = createHttpMetrics('replica');
  registerReplicaMetrics(metrics.registry, index, syncer);

  router.get('/metrics', metricsRoute(metrics.registry));
  router.get(OPENAPI_PATH, openApiRoute(REPLICA_OPENAPI));

  router.get('/healthz', (ctx) => {
    // Liveness never depends on data: a replica loading a large version is alive.
    ctx.body = { status: 'ok' };
  });

  // Probes ask every few seconds, and "not yet" is an answer, not a failure: each probe is logged at debug, a
  // change of readiness once at info.
  let readiness: string | undefined;
  const notReady = (ctx: Koa.Context, reason: string, details?: Record<string, unknown>) => {
    if (readiness !== reason) logger.info({ ready: false, reason }, 'readiness changed');
    readiness = reason;
    ctx.status = 503;
    ctx.body = errorBody(new AppError('REPLICA_NOT_READY', reason, details));
  };
  router.get('/readyz', (ctx) => {
    if (deps.lifecycle?.draining) return notReady(ctx, 'shutting down');
    const live = index.current;
    if (live === undefined) {
      return notReady(ctx, 'no verified version is loaded yet', { sync: syncer.status });
    }
    if (readiness !== 'ready')
      logger.info({ ready: true, version: live.manifest.version }, 'readiness changed');
    readiness = 'ready';
    const shard = config.shard ?? null;
    ctx.body = {
      status: 'ready',
      version: live.manifest.version,
      rows: live.snapshot.heldRows,
      mode: live.snapshot.mode,
      shard: shard === null ? null : { index: shard.index, count: shard.count },
      loadedAt: live.loadedAt.toISOString(),
      // Ready either way (an older version beats no answer), but say so: the leader sees it too.
      behind: syncer.behind,
      wantedVersion: syncer.status.wantedVersion,
      sync: syncer.status,
    };
  });

  router.post(
    '/internal/snapshots',
    requireBearer(config.replicaToken),
    koaBody({
      json: true,
      jsonLimit: '16kb',
      text: false,
      urlencoded: false,
      multipart: false,
      // A bad body is the sender's mistake (400/413/415 with a named code), not a 500 the leader would retry.
      onError: (err) => {
        throw bodyParseError(err);
      },
    }),
    async (ctx) => {
      const manifest = parseManifest(ctx.request.body);
      if (typeof manifest === 'string') throw new AppError('REQUEST_BAD', manifest);
      await syncer.follow(manifest);
      const live = index.current;
      ctx.body = {
        version: live?.manifest.version ?? null,
        checksum: live?.manifest.checksum ?? null,
        shard: config.shard == null ? null : formatShard(config.shard),
      };
    },
  );

  koa.use(requestLogMiddleware(logger));
  koa.use(metricsMiddleware(metrics));
  useErrorHandling(koa, logger);
  koa.use(router.routes());
  koa.use(router.allowedMethods());
  const reads = new ReadPath(index, {
    maxInFlight: config.maxInFlight,
    maxQueue: config.maxQueue,
    shard: config.shard ?? null,
    maxBatchIds: config.maxBatchIds,
    maxAgeS: config.readMaxAgeS,
    metrics,
    logger,
  });
  syncer.readsReceived = () => reads.received;
  return { koa, handler: createReadHandler(reads, koa.callback()), reads };
}

/** Listens with the app: the raw fast path takes reads first, node:http (and Koa) the rest. */
export function listenReplica(
  app: ReplicaApp,
  host: string,
  port: number,
  limits: ServerLimits,
): Promise<RunningServer> {
  return listen(app.handler, host, port, limits, (server) => installFastReads(server, app.reads, limits));
}
