/**
 * The leader's HTTP API (docs/design.md §4): ingest, versions, rollback, replica status, and the file replicas pull.
 * Built only from its dependencies; `main.ts` reads config and listens.
 */
import { createReadStream } from 'node:fs';
import Router from '@koa/router';
import Koa from 'koa';
import type { LeaderConfig } from '../common/config.js';
import { AppError } from '../common/errors.js';
import {
  hasBearer,
  keepOpenAfterBody,
  requestLogMiddleware,
  requireBearer,
  useErrorHandling,
} from '../common/http.js';
import type { Logger } from '../common/logger.js';
import { type HttpMetrics, metricsMiddleware, metricsRoute } from '../common/metrics.js';
import { OPENAPI_PATH, openApiRoute } from '../common/openapi.js';
import { parseReplicaError, REPLICA_HEADERS, type SnapshotManifest } from '../common/protocol.js';
import { formUploadRoute } from './form-upload.js';
import type { Ingestor } from './ingest.js';
import { LEADER_OPENAPI } from './openapi.js';
import type { ReplicaRegistry } from './replica-registry.js';
import { replicaUrlFromPoll } from './replica-url.js';
import { shardCoverage } from './shard-coverage.js';
import type { SnapshotChecks } from './snapshot-checks.js';
import type { SnapshotStore } from './snapshot-store.js';
import { type ResumableUploads, UPLOADS_PATH } from './uploads.js';

export interface LeaderDeps {
  readonly config: LeaderConfig;
  readonly logger: Logger;
  readonly store: SnapshotStore;
  readonly ingestor: Ingestor;
  /** tus uploads under /uploads. */
  readonly uploads: ResumableUploads;
  /** Where form uploads are written before their ingest. */
  readonly formsDir: string;
  readonly replicas: ReplicaRegistry;
  /** What the last verification of each kept version found. */
  readonly checks: SnapshotChecks;
  /** Makes a kept version current (rollback or forward) and publishes it; serialized with pruning. */
  readonly activate: (version: number) => Promise<SnapshotManifest>;
  readonly metrics: HttpMetrics;
  /** Set when SIGTERM starts a graceful shutdown: /readyz answers 503. */
  readonly lifecycle: { draining: boolean };
}

/** Read size when streaming a snapshot file to a replica. */
const FILE_CHUNK_BYTES = 1 << 20;

function versionParam(raw: string | undefined): number {
  if (raw === undefined || !/^\d{1,9}$/.test(raw)) {
    throw new AppError('REQUEST_BAD', `"${raw}" is not a version number`);
  }
  return Number(raw);
}

/** A positive whole number from an untrusted poll header (a version, an interval), else null. */
function versionHeader(raw: string): number | null {
  return /^[1-9]\d{0,9}$/.test(raw) && Number(raw) <= Number.MAX_SAFE_INTEGER ? Number(raw) : null;
}

/** Parses `Range: bytes=a-b` for a file of `size` bytes; undefined means the whole file. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | undefined {
  if (header === undefined || header === '') return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) {
    throw new AppError('REQUEST_BAD', `range ${header} is outside the file of ${size} bytes`);
  }
  return { start, end };
}

export function createLeaderApp(deps: LeaderDeps): Koa {
  const { config, store, ingestor, replicas, checks, logger, activate, metrics } = deps;
  const app = new Koa();
  app.proxy = false;
  const router = new Router();
  const writeAuth = requireBearer(config.leaderToken);
  // Reads that are internal (replica addresses and errors, kept versions, the files): either token. What stays
  // open and why is in the README ("Who may read what").
  const readAuth = requireBearer(config.replicaToken, config.leaderToken);
  /** Registration refusals already logged, so that a replica polling every few seconds logs once (bounded). */
  const refusedUrls = new Set<string>();

  router.get('/metrics', metricsRoute(metrics.registry));
  router.get(OPENAPI_PATH, openApiRoute(LEADER_OPENAPI));
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  // Ready even when the current version's file is corrupt with nothing to fall back to: an ingest is the remedy,
  // and it needs the leader reachable; `verification` says so.
  router.get('/readyz', (ctx) => {
    const version = store.current()?.version ?? null;
    const verification = version === null ? null : checks.of(version).state;
    if (deps.lifecycle.draining) {
      ctx.status = 503;
      ctx.body = { status: 'draining', version, verification };
      return;
    }
    ctx.body = { status: 'ready', version, verification };
  });

  router.put('/promotions', writeAuth, async (ctx) => {
    keepOpenAfterBody(ctx.req, ctx.res);
    const length = Number(ctx.get('content-length') || Number.NaN);
    if (length > config.maxUploadBytes) {
      throw new AppError(
        'REQUEST_TOO_LARGE',
        `the file is larger than MAX_UPLOAD_BYTES (${config.maxUploadBytes} bytes)`,
      );
    }
    const report = await ingestor.ingest(ctx.req, {
      force: ctx.query.force === 'true' || ctx.query.force === '1',
      sizeHintBytes: Number.isFinite(length) ? length : undefined,
      source: 'PUT /promotions',
    });
    ctx.status = 201;
    ctx.body = report;
  });

  router.post('/promotions', writeAuth, formUploadRoute(config, deps.formsDir, ingestor));

  // Resumable uploads: @tus/server answers on the raw request and response; Koa checks the token first. OPTIONS
  // (tus capabilities, CORS preflight) changes nothing and carries no token in browsers.
  const tus: Koa.Middleware = async (ctx) => {
    // A PATCH, or a POST carrying the whole file (creation-with-upload), may complete the upload and wait for its
    // ingest. Both restart the idle expiry, which counts from the last byte: say when it ends at the earliest (tus
    // expiration extension).
    if (ctx.method === 'PATCH' || ctx.method === 'POST') {
      keepOpenAfterBody(ctx.req, ctx.res);
      ctx.set('Upload-Expires', deps.uploads.expiresAt().toUTCString());
    }
    ctx.respond = false;
    const handled = deps.uploads.server.handle(ctx.req, ctx.res);
    // A client that goes away mid-PATCH leaves the library's answer waiting on a closed socket forever: the
    // request ends when the connection does (the bytes that arrived are kept; HEAD tells the client to resume).
    const closed = new Promise<void>((resolve) => ctx.res.once('close', resolve));
    await Promise.race([handled.catch(() => undefined), closed]);
  };
  // tus needs no GET: the library would serve an upload's bytes back, which nobody should fetch from here.
  const paths = [UPLOADS_PATH, `${UPLOADS_PATH}/:id`];
  router.options(paths, tus);
  router.post(UPLOADS_PATH, writeAuth, tus);
  router.head(paths[1], writeAuth, tus);
  router.patch(paths[1], writeAuth, tus);
  router.delete(paths[1], writeAuth, tus);

  router.get('/snapshots', readAuth, (ctx) => {
    const current = store.current()?.version ?? null;
    ctx.body = {
      current,
      versions: store
        .list()
        .map((m) => ({ ...m, current: m.version === current, verification: checks.of(m.version) })),
    };
  });

  router.get('/snapshots/current', (ctx) => {
    // A replica's poll registers it, so the leader can notify replicas whose addresses it was not given.
    const url = ctx.get(REPLICA_HEADERS.url);
    if (url !== '' && hasBearer(ctx.get('authorization') || undefined, [config.replicaToken])) {
      const address = replicaUrlFromPoll(url, ctx.req.socket.remoteAddress, config.replicaUrlHosts);
      if ('url' in address) {
        replicas.seen(address.url, versionHeader(ctx.get(REPLICA_HEADERS.version)), {
          wantedVersion: versionHeader(ctx.get(REPLICA_HEADERS.wanted)),
          error: parseReplicaError(ctx.get(REPLICA_HEADERS.error)) ?? null,
          syncIntervalMs: versionHeader(ctx.get(REPLICA_HEADERS.syncInterval)),
          shard: ctx.get(REPLICA_HEADERS.shard) || null,
        });
      } else if (!refusedUrls.has(url)) {
        if (refusedUrls.size >= 1000) refusedUrls.clear();
        refusedUrls.add(url);
        logger.warn(
          { replicaUrl: url.slice(0, 300), poller: ctx.req.socket.remoteAddress, reason: address.refused },
          'a polling replica gave an address it may not register; it gets no notices (it still catches up by polling)',
        );
      }
    }
    const current = store.current();
    if (current === undefined) throw new AppError('SNAPSHOT_NOT_FOUND', 'no version has been ingested yet');
    ctx.body = current;
  });

  router.get('/snapshots/:version', readAuth, (ctx) => {
    const version = versionParam(ctx.params.version);
    const m = store.get(version);
    if (m === undefined) throw new AppError('SNAPSHOT_NOT_FOUND', `version ${version} is not kept here`);
    ctx.body = { ...m, current: m.version === store.current()?.version, verification: checks.of(version) };
  });

  router.get('/snapshots/:version/file', readAuth, (ctx) => {
    const version = versionParam(ctx.params.version);
    const m = store.get(version);
    if (m === undefined) throw new AppError('SNAPSHOT_NOT_FOUND', `version ${version} is not kept here`);
    // A replica would refuse these bytes after pulling them all; say so before sending any.
    checks.refuseIfCorrupt(version);
    let range: { start: number; end: number } | undefined;
    try {
      range = parseRange(ctx.get('range') || undefined, m.bytes);
    } catch (err) {
      ctx.status = 416;
      ctx.set('Content-Range', `bytes */${m.bytes}`);
      ctx.body = { error: 'REQUEST_BAD', message: (err as Error).message };
      return;
    }
    ctx.set('Accept-Ranges', 'bytes');
    ctx.set('ETag', `"${m.checksum}"`);
    ctx.type = 'application/octet-stream';
    // 1 MiB reads instead of the 64 KiB default: about twice the throughput to a replica, most of a new
    // version's time to live (docs/design.md §6: under 2 s on every replica).
    if (range === undefined) {
      ctx.length = m.bytes;
      ctx.body = createReadStream(store.filePath(version), { highWaterMark: FILE_CHUNK_BYTES });
      return;
    }
    ctx.status = 206;
    ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${m.bytes}`);
    ctx.length = range.end - range.start + 1;
    ctx.body = createReadStream(store.filePath(version), {
      start: range.start,
      end: range.end,
      highWaterMark: FILE_CHUNK_BYTES,
    });
  });

  router.post('/snapshots/:version/activate', writeAuth, async (ctx) => {
    const version = versionParam(ctx.params.version);
    if (ingestor.busy) throw new AppError('INGEST_BUSY', 'an ingest is running; activate when it ends');
    const manifest = await activate(version);
    logger.info({ version }, 'activated a kept version');
    ctx.body = { ...manifest, current: true };
  });

  router.get('/replicas', readAuth, (ctx) => {
    const current = store.current()?.version;
    ctx.body = {
      current: current ?? null,
      replicas: replicas.list(current),
      // Live means every shard of a layout has a replica serving the version (shard-coverage.ts).
      shards: shardCoverage(replicas.served(), current),
    };
  });

  app.use(requestLogMiddleware(logger));
  app.use(metricsMiddleware(metrics));
  useErrorHandling(app, logger);
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
