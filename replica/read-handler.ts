/**
 * The read path, `GET /promotions/{id}`, served by a lean node:http handler in front of the Koa app: the product's
 * hot path must not pay a framework's per-request cost. Every other request falls through to Koa.
 *
 * Each read takes `index.current` once, so one answer always comes from one version. Overload protection: at most
 * `maxInFlight` reads wait on an asynchronous lookup (disk mode; a memory-mode read is answered within the handler
 * call, so the event loop itself is its queue); up to `maxQueue` more wait their turn; beyond that a read is refused
 * at once with 503 and `Retry-After`. Counts and durations go to plain-number metric cells; reads are logged at
 * debug level only (see README).
 *
 * Concurrency: one handler per server, on the event loop; the counters are plain fields.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError, errorBody } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { CountCell, HttpMetrics } from '../common/metrics.js';
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
  ifNoneMatch?: string;
  /** The client's X-Request-Id, echoed on the answer and in the debug log line. */
  requestId?: string;
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

/**
 * If-None-Match and X-Request-Id, read from rawHeaders in one pass: touching `req.headers` makes Node build the
 * whole headers object, which costs the hot path about a microsecond.
 */
function readHeaders(p: Pending): void {
  const raw = p.req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    if (k.length === 13 && k.toLowerCase() === 'if-none-match') p.ifNoneMatch = raw[i + 1];
    else if (k.length === 12 && k.toLowerCase() === 'x-request-id') p.requestId = raw[i + 1].slice(0, 128);
  }
}

/** A request handler that answers reads itself and passes everything else to `fallback` (the Koa app). */
export function createReadHandler(index: LiveIndex, fallback: Handler, options: ReadPathOptions): Handler {
  const { metrics, logger } = options;
  const duration = metrics.duration.cell(ROUTE);
  const cells = new Map<number, CountCell>();
  const countOf = (status: number) => {
    let c = cells.get(status);
    if (c === undefined) {
      c = metrics.requests.cell(ROUTE, 'GET', status);
      cells.set(status, c);
    }
    return c;
  };
  const ok = countOf(200);
  const notFound = countOf(404);
  const queue: Pending[] = [];
  // Reads waiting on an asynchronous lookup (disk mode); memory-mode reads finish within the handler call.
  let inFlight = 0;
  const debug = logger.isLevelEnabled('debug');

  const finish = (p: Pending, status: number, cell: CountCell) => {
    cell.value++;
    duration.observe((performance.now() - p.start) / 1000);
    if (debug) logger.debug({ requestId: p.requestId, path: p.req.url, status }, 'read');
  };

  const sendError = (p: Pending, err: AppError, headers: Record<string, string> = {}) => {
    const body = JSON.stringify(errorBody(err));
    p.res.writeHead(err.status, {
      'content-type': 'application/json',
      'content-length': body.length,
      ...headers,
    });
    p.res.end(body);
    finish(p, err.status, countOf(err.status));
  };

  const respond = (p: Pending, live: LiveVersion, id: string, body: string | undefined) => {
    if (body === undefined) {
      // Built by hand, not through AppError: a miss is a normal answer on the hot path.
      const miss = `{"error":"PROMOTION_NOT_FOUND","message":${JSON.stringify(`no promotion with id ${id}`)}}`;
      p.res.writeHead(404, [
        'content-type',
        'application/json',
        'content-length',
        String(miss.length),
        SNAPSHOT_VERSION_HEADER,
        live.versionHeader,
      ]);
      p.res.end(miss);
      finish(p, 404, notFound);
      return;
    }
    p.res.writeHead(200, [
      'content-type',
      'application/json',
      'content-length',
      String(body.length),
      'etag',
      live.etag,
      SNAPSHOT_VERSION_HEADER,
      live.versionHeader,
    ]);
    p.res.end(body);
    finish(p, 200, ok);
  };

  const release = () => {
    inFlight--;
    metrics.inFlight.dec();
    const next = queue.shift();
    if (next !== undefined) serve(next);
  };

  const serve = (p: Pending): void => {
    readHeaders(p);
    // At debug level every read is logged, so it gets an id when the client sent none.
    if (p.requestId === undefined && debug) p.requestId = randomUUID();
    if (p.requestId !== undefined) p.res.setHeader('x-request-id', p.requestId);
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
    if (p.ifNoneMatch === live.etag) {
      p.res.writeHead(304, { etag: live.etag, [SNAPSHOT_VERSION_HEADER]: live.versionHeader });
      p.res.end();
      finish(p, 304, countOf(304));
      return;
    }
    const answer = live.snapshot.lookup(id);
    if (typeof answer !== 'object') {
      respond(p, live, id, answer);
      return;
    }
    // Disk mode: the answer arrives after one or two positional reads; the read holds a slot until then.
    inFlight++;
    metrics.inFlight.inc();
    answer.then(
      (body) => {
        release();
        respond(p, live, id, body);
      },
      (err) => {
        release();
        logger.error({ err, path: p.req.url }, 'read failed');
        sendError(p, new AppError('INTERNAL', 'the snapshot could not be read'));
      },
    );
  };

  return (req, res) => {
    if (req.method !== 'GET' || !(req.url as string).startsWith(PREFIX)) {
      fallback(req, res);
      return;
    }
    const p: Pending = { req, res, start: performance.now() };
    if (inFlight < options.maxInFlight) {
      serve(p);
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
