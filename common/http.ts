/**
 * HTTP plumbing both roles share: the one middleware that maps errors to answers, bearer-token checks, request
 * ids and logging, and a server that listens and shuts down gracefully.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type Koa from 'koa';
import { DEFAULTS } from './config.js';
import { AppError, errorBody, storageErrorOf } from './errors.js';
import type { Logger } from './logger.js';

/**
 * The rest of a refused request's body read and thrown away (when its Content-Length says it is no larger) so that
 * its keep-alive connection stays usable; a larger or unknown one closes the connection after the answer.
 */
export const DRAIN_MAX_BYTES = 1024 * 1024;

/**
 * An error answer sent before the request's body has all arrived (an upload refused on its first bytes): HTTP/1.1
 * lets the server answer early, but the bytes still coming belong to that request. A small rest is read and
 * dropped, so the connection can carry the next request; a large or chunked one, or one whose request stream is
 * already destroyed, gets `Connection: close` (and is dropped as it comes until node:http closes the connection
 * after the answer). Left unread, it kept the connection stuck behind the old body, and the client's next request
 * on it ended in ECONNRESET.
 */
function settleUnreadBody(ctx: Koa.Context): void {
  const req = ctx.req;
  if (req.complete) return;
  const length = Number(req.headers['content-length']);
  // A request stream already destroyed (a parse pipeline that failed) takes no more bytes: only closing helps.
  if (req.destroyed || !(length <= DRAIN_MAX_BYTES)) ctx.set('Connection', 'close');
  if (!req.destroyed) req.resume();
}

/** Maps thrown errors to `{"error": CODE, "message": ...}`; an unexpected error is a logged, generic 500. */
export function errorMiddleware(logger: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new AppError('REQUEST_NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      if (clientWentAway(ctx)) {
        // A cut upload or a closed tab: nobody gets this answer, and it is no failure of ours (no 5xx, no alert).
        logger.info(
          {
            requestId: ctx.state.requestId,
            method: ctx.method,
            path: ctx.path,
            receivedBytes: (ctx.req.socket as Socket | null)?.bytesRead,
            code: (err as { code?: string }).code,
          },
          'client went away before its answer',
        );
        return;
      }
      // A full or forbidden disk that no route named: still a 507 an operator can act on, not a bare 500.
      const known = err instanceof AppError ? err : storageErrorOf(err);
      if (known === undefined || known.status >= 500) {
        logger.error(
          { err, requestId: ctx.state.requestId, method: ctx.method, path: ctx.path },
          'request failed',
        );
      }
      const answer = known ?? new AppError('INTERNAL', `internal error; request id ${ctx.state.requestId}`);
      ctx.status = answer.status;
      ctx.body = errorBody(answer);
      settleUnreadBody(ctx);
    }
  };
}

/**
 * The status logged and counted for a request whose client went away before its answer was sent: nginx's "client
 * closed request". Never sent (there is nobody to send it to); Koa would refuse it as a status anyway.
 */
export const CLIENT_CLOSED_STATUS = 499;

/** True when the connection closed before the answer was complete: a client that went away mid-request. */
export function clientWentAway(ctx: Koa.Context): boolean {
  if (ctx.res.writableFinished) return false;
  // The response's socket: the request's is let go when we destroy a request ourselves (an oversized body), while
  // the answer can still be sent.
  const socket = (ctx.res.socket ?? ctx.req.socket) as Socket | null;
  return socket === null || socket.destroyed;
}

/** What a body parser (koa-body, and co-body and raw-body under it) throws: http-errors' fields, or zlib's. */
interface BodyParserError {
  readonly message: string;
  readonly name?: string;
  readonly status?: number;
  readonly type?: string;
  readonly code?: string;
  readonly errno?: number;
  readonly limit?: number;
}

/**
 * The AppError that tells a client why its body was refused, for what a body parser throws (koa-body's `onError`):
 * 413 REQUEST_TOO_LARGE past the route's limit, 400 REQUEST_BAD_JSON for JSON that does not parse or holds a
 * prototype key, 400 REQUEST_BAD_ENCODING for a body that does not decompress, 415 REQUEST_UNSUPPORTED_ENCODING,
 * and 400 REQUEST_BAD for the client's other mistakes. Unmapped, each was a 500 INTERNAL, which callers such as the
 * leader retry as a server failure. Anything else (a failure of ours) is returned unchanged: a logged 500.
 */
export function bodyParseError(thrown: unknown): unknown {
  const err = thrown as BodyParserError;
  if (typeof err !== 'object' || err === null) return thrown;
  if (err.status === 413) {
    const limit = typeof err.limit === 'number' ? ` (${err.limit} bytes)` : '';
    return new AppError('REQUEST_TOO_LARGE', `the body is larger than this route takes${limit}`);
  }
  if (err.status === 415) return new AppError('REQUEST_UNSUPPORTED_ENCODING', err.message);
  // co-body marks every failure of its JSON step 400; @hapi/bourne refuses __proto__ and constructor.prototype.
  if (err.status === 400 && (err.name === 'SyntaxError' || err.name === 'RangeError')) {
    return new AppError(
      'REQUEST_BAD_JSON',
      `the body is not a JSON object or array we accept: ${err.message}`,
    );
  }
  if (
    typeof err.errno === 'number' &&
    typeof err.code === 'string' &&
    (err.code.startsWith('Z_') ||
      err.code.startsWith('ERR__ERROR_FORMAT') ||
      err.code.startsWith('ERR_BROTLI'))
  ) {
    return new AppError(
      'REQUEST_BAD_ENCODING',
      `the body does not decode as its Content-Encoding says: ${err.message}`,
    );
  }
  if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
    return new AppError('REQUEST_BAD', `the body could not be read: ${err.message}`);
  }
  return thrown;
}

/** Errors of a client that went away (a cut upload, a reset): part of normal life, not a failure of ours. */
export function isClientGone(err: { code?: string; message?: string }): boolean {
  return (
    err.code === 'ECONNRESET' ||
    err.code === 'EPIPE' ||
    err.code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    err.code?.startsWith('HPE_') === true ||
    err.message === 'aborted'
  );
}

/**
 * Logs what Koa reports outside a request's answer (a request stream that errors, a socket cut mid-body) with our
 * logger instead of Koa's default printing to stderr: a client that went away at info level, the rest as errors.
 */
export function logAppErrors(app: Koa, logger: Logger): void {
  app.on('error', (err: Error & { code?: string }) => {
    if (isClientGone(err)) logger.info({ code: err.code, message: err.message }, 'client went away');
    else logger.error({ err }, 'request stream failed');
  });
}

/**
 * The one error path of both roles' Koa apps: what Koa reports outside an answer goes to our logger
 * (`logAppErrors`, never Koa's default printing to stderr), and what a route throws becomes an answer
 * (`errorMiddleware`). Call it after the request log and metrics middleware, before the routes.
 */
export function useErrorHandling(app: Koa, logger: Logger): void {
  logAppErrors(app, logger);
  app.use(errorMiddleware(logger));
}

/**
 * The status sent: Koa's, or the raw response's when a route answered by itself (`ctx.respond = false`);
 * CLIENT_CLOSED_STATUS when the client went away first.
 */
export function answeredStatus(ctx: Koa.Context): number {
  if (clientWentAway(ctx)) return CLIENT_CLOSED_STATUS;
  return ctx.respond === false ? ctx.res.statusCode : ctx.status;
}

/** Liveness and readiness probes: asked every few seconds by the platform, logged at debug, not info. */
const PROBE_PATHS = new Set(['/healthz', '/readyz']);

/**
 * Takes the request id from `X-Request-Id` or makes one, echoes it, and logs one line per request (at debug for
 * the probes of PROBE_PATHS, whose answers, 503 "not ready yet" included, are not news).
 */
export function requestLogMiddleware(logger: Logger): Koa.Middleware {
  return async (ctx, next) => {
    const given = ctx.get('x-request-id');
    const requestId = given !== '' && given.length <= 128 ? given : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      const line = { requestId, method: ctx.method, path: ctx.path, status: answeredStatus(ctx), ms };
      if (PROBE_PATHS.has(ctx.path)) logger.debug(line, 'request');
      else logger.info(line, 'request');
    }
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * `Bearer` then one or more spaces, then the token: the scheme name is case-insensitive (RFC 9110 §11.1), so
 * `bearer TOKEN` and `BEARER TOKEN` are the same credentials.
 */
const BEARER = /^bearer +/i;

/** True when the request carries `Authorization: Bearer <one of tokens>`, compared in constant time. */
export function hasBearer(header: string | undefined, tokens: readonly string[]): boolean {
  const scheme = header === undefined ? null : BEARER.exec(header);
  if (header === undefined || scheme === null) return false;
  const given = digest(header.slice(scheme[0].length));
  let ok = false;
  for (const t of tokens) ok = timingSafeEqual(given, digest(t)) || ok;
  return ok;
}

/** Refuses a request without one of `tokens` as its bearer token (401). */
export function requireBearer(...tokens: string[]): Koa.Middleware {
  return async (ctx, next) => {
    const header = ctx.get('authorization') || undefined;
    if (!hasBearer(header, tokens)) {
      // RFC 6750 §3.1: a token that was sent and refused is `invalid_token`; no token at all gets the bare challenge.
      ctx.set('WWW-Authenticate', header === undefined ? 'Bearer' : 'Bearer error="invalid_token"');
      throw new AppError(
        'AUTH_REQUIRED',
        header === undefined
          ? 'this route needs an Authorization: Bearer token'
          : 'token not accepted: the Authorization header does not carry a bearer token this route takes',
      );
    }
    await next();
  };
}

/** A listening server and the way to stop it. */
export interface RunningServer {
  readonly server: Server;
  readonly port: number;
  /** Base URL on the address the server listens on. */
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish for up to `timeoutMs`, then closes what is left. */
  close(timeoutMs?: number): Promise<void>;
  /** Destroys every connection at once (a crash, in tests). */
  closeAllConnections(): void;
}

/**
 * Connections that a server handles in front of node:http (the replica's raw read path), so that closing the
 * server reaches them too.
 */
export interface FrontConnections {
  /** Closes connections with nothing in progress; from now on the others close after their current answer. */
  closeIdle(): void;
  /** Destroys every connection. */
  closeAll(): void;
}

/** Limits that protect a server from slow and oversized clients (DEFAULTS in config.ts). */
export interface ServerLimits {
  readonly maxHeaderBytes: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  /** Connections held at once; past it new ones are closed at once (MAX_CONNECTIONS). None when undefined. */
  readonly maxConnections?: number;
}

/** Sockets whose request body has arrived and whose answer is being worked on (an ingest): not idle. */
const working = new WeakSet<Socket>();

/**
 * Exempts this request from IDLE_TIMEOUT_MS once its body has arrived, until its answer is sent: an ingest of a
 * large file can take minutes after the last byte with nothing moving on the connection. Before that, a body that
 * stalls is cut as usual.
 */
export function keepOpenAfterBody(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  const start = () => working.add(socket);
  if (req.readableEnded) start();
  else req.once('end', start);
  res.once('close', () => {
    req.off('end', start);
    working.delete(socket);
  });
}

/**
 * Listens with a request handler (a Koa callback, or a lean handler in front of one). `front`, when given, puts its
 * own connection handling in front of node:http before the server listens (the replica's fast read path).
 */
export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  host: string,
  port: number,
  limits: ServerLimits = DEFAULTS,
  front?: (server: Server) => FrontConnections,
): Promise<RunningServer> {
  const server = createServer(
    {
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // A slow client must send its whole head in time (slowloris); the body is bounded by the idle timeout instead
      // of a total time, since a 100 GB upload takes as long as it takes.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: 0,
      connectionsCheckingInterval: Math.max(10, Math.min(30_000, Math.floor(limits.headersTimeoutMs / 2))),
    },
    handler,
  );
  server.timeout = limits.idleTimeoutMs;
  // net.Server closes a connection past the cap before any listener sees it, the fast path's included.
  if (limits.maxConnections !== undefined) server.maxConnections = limits.maxConnections;
  // With a listener Node no longer destroys timed-out sockets itself: this one spares those working on an answer.
  server.on('timeout', (socket: Socket) => {
    if (!working.has(socket)) socket.destroy();
  });
  const extra = front?.(server);
  const closeAll = () => {
    server.closeAllConnections();
    extra?.closeAll();
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    port: actual,
    url: `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${actual}`,
    close: (timeoutMs = 10_000) =>
      new Promise<void>((resolve) => {
        const closeIdle = () => {
          server.closeIdleConnections();
          extra?.closeIdle();
        };
        const timer = setTimeout(closeAll, timeoutMs);
        // Keep-alive connections become idle as their last response ends: close them as they do.
        const sweep = setInterval(closeIdle, 50);
        server.close(() => {
          clearTimeout(timer);
          clearInterval(sweep);
          resolve();
        });
        closeIdle();
      }),
    closeAllConnections: closeAll,
  };
}
