/**
 * The read path, `GET /promotions/{id}`, served by a lean node:http handler in front of the Koa app: the product's
 * hot path must not pay a framework's per-request cost. Every other request falls through to Koa.
 *
 * Each read takes `index.current` once, so one answer always comes from one version. Overload protection: at most
 * `maxInFlight` reads are being answered (a read counts until its response is flushed or its connection closes);
 * up to `maxQueue` more wait their turn; beyond that a read is refused at once with 503 and `Retry-After`.
 * Metrics are recorded through pre-bound label children; reads are logged at debug level only (see README).
 *
 * Concurrency: one handler per server, on the event loop; the counters are plain fields.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Counter, Histogram } from 'prom-client';
import { AppError, errorBody } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { HttpMetrics } from '../common/metrics.js';
import { SNAPSHOT_VERSION_HEADER } from '../common/protocol.js';
import { idProblem } from '../common/record.js';
import type { LiveIndex, LiveVersion } from './live-index.js';

const PREFIX = '/promotions/';
const ROUTE = '/promotions/:id';
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ReadPathOptions {
  /** Reads answered at once before new ones queue. */
  readonly maxInFlight: number;
  /** Reads that may wait for a slot; past this, 503. */
  readonly maxQueue: number;
  readonly metrics: HttpMetrics;
  readonly logger: Logger;
}

interface Pending {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly start: number;
}

function idFromUrl(url: string): string | undefined {
  const q = url.indexOf('?');
  const raw = q === -1 ? url.slice(PREFIX.length) : url.slice(PREFIX.length, q);
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** A request handler that answers reads itself and passes everything else to `fallback` (the Koa app). */
export function createReadHandler(index: LiveIndex, fallback: Handler, options: ReadPathOptions): Handler {
  const { metrics, logger } = options;
  const duration: Histogram<'route'> = metrics.duration;
  const observe = duration.labels(ROUTE);
  const byStatus = new Map<number, ReturnType<Counter<'route' | 'method' | 'status'>['labels']>>();
  for (const s of [200, 304, 400, 404, 500, 503])
    byStatus.set(s, metrics.requests.labels(ROUTE, 'GET', String(s)));
  const queue: Pending[] = [];
  let inFlight = 0;
  const debug = logger.isLevelEnabled('debug');

  const count = (status: number, start: number) => {
    (byStatus.get(status) ?? metrics.requests.labels(ROUTE, 'GET', String(status))).inc();
    observe.observe((performance.now() - start) / 1000);
  };

  const send = (p: Pending, status: number, body: string, headers: Record<string, string | number>) => {
    p.res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': body.length,
      ...headers,
    });
    p.res.end(body);
    count(status, p.start);
    if (debug) logger.debug({ requestId: p.req.headers['x-request-id'], path: p.req.url, status }, 'read');
  };

  const sendError = (p: Pending, err: AppError, headers: Record<string, string> = {}) =>
    send(p, err.status, JSON.stringify(errorBody(err)), headers);

  const respond = (p: Pending, live: LiveVersion, id: string, body: string | undefined) => {
    if (body === undefined) {
      sendError(p, new AppError('PROMOTION_NOT_FOUND', `no promotion with id ${JSON.stringify(id)}`), {
        [SNAPSHOT_VERSION_HEADER]: live.versionHeader,
      });
      return;
    }
    send(p, 200, body, { etag: live.etag, [SNAPSHOT_VERSION_HEADER]: live.versionHeader });
  };

  const serve = (p: Pending) => {
    const id = idFromUrl(p.req.url as string);
    const why = id === undefined ? 'the id is not valid percent-encoding' : idProblem(id);
    if (why !== undefined || id === undefined) {
      sendError(p, new AppError('PROMOTION_BAD_ID', `no promotion can have this id: ${why}`));
      return;
    }
    const live = index.current;
    if (live === undefined) {
      sendError(p, new AppError('REPLICA_NOT_READY', 'this replica has no data loaded yet'), {
        'retry-after': '1',
      });
      return;
    }
    if (p.req.headers['if-none-match'] === live.etag) {
      p.res.writeHead(304, { etag: live.etag, [SNAPSHOT_VERSION_HEADER]: live.versionHeader });
      p.res.end();
      count(304, p.start);
      return;
    }
    const answer = live.snapshot.lookup(id);
    if (typeof answer === 'object') {
      // Disk mode: the answer arrives after one or two positional reads.
      answer.then(
        (body) => respond(p, live, id, body),
        (err) => {
          logger.error({ err, path: p.req.url }, 'read failed');
          sendError(p, new AppError('INTERNAL', 'the snapshot could not be read'));
        },
      );
      return;
    }
    respond(p, live, id, answer);
  };

  const admit = (p: Pending) => {
    if (p.res.destroyed) {
      // The client left while the read waited in the queue: nothing to answer, give the slot on.
      const next = queue.shift();
      if (next !== undefined) admit(next);
      return;
    }
    inFlight++;
    metrics.inFlight.inc();
    p.res.once('close', () => {
      inFlight--;
      metrics.inFlight.dec();
      const next = queue.shift();
      if (next !== undefined) admit(next);
    });
    serve(p);
  };

  return (req, res) => {
    if (req.method !== 'GET' || !(req.url as string).startsWith(PREFIX)) {
      fallback(req, res);
      return;
    }
    const p: Pending = { req, res, start: performance.now() };
    if (inFlight < options.maxInFlight) {
      admit(p);
    } else if (queue.length < options.maxQueue) {
      queue.push(p);
    } else {
      metrics.shed.inc();
      sendError(p, new AppError('REPLICA_OVERLOADED', 'too many requests in progress; retry shortly'), {
        'retry-after': '1',
      });
    }
  };
}
