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
 * Concurrency: one handler per server, on the event loop; the counters are plain fields, and what readHeaders
 * finds is kept in module fields that `serve` reads before it returns or awaits anything.
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

/** A read waiting in the overload queue. */
interface Queued {
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

/** What readHeaders found for the read being served (set and read synchronously, one read at a time). */
let ifNoneMatch: string | undefined;
/** The client's X-Request-Id, echoed on the answer and in the debug log line. */
let requestId: string | undefined;

/**
 * If-None-Match and X-Request-Id, read from rawHeaders in one pass: touching `req.headers` makes Node build the
 * whole headers object, which costs the hot path about a microsecond.
 */
function readHeaders(req: IncomingMessage): void {
  ifNoneMatch = undefined;
  requestId = undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    if (k.length === 13 && k.toLowerCase() === 'if-none-match') ifNoneMatch = raw[i + 1];
    else if (k.length === 12 && k.toLowerCase() === 'x-request-id') requestId = raw[i + 1].slice(0, 128);
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
  const queue: Queued[] = [];
  // Reads waiting on an asynchronous lookup (disk mode); memory-mode reads finish within the handler call.
  let inFlight = 0;
  const debug = logger.isLevelEnabled('debug');
  // Raw header arrays of 200 answers by body length, for one version at a time: Node reads them and keeps no
  // reference, so one array serves every answer of that length.
  let headersOf: LiveVersion | undefined;
  let okHeaders: string[][] = [];

  const finish = (
    req: IncomingMessage,
    start: number,
    status: number,
    cell: CountCell,
    rid: string | undefined,
  ) => {
    cell.value++;
    duration.observe((performance.now() - start) / 1000);
    if (debug) logger.debug({ requestId: rid, path: req.url, status }, 'read');
  };

  const sendError = (
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    rid: string | undefined,
    err: AppError,
    headers: Record<string, string> = {},
  ) => {
    const body = JSON.stringify(errorBody(err));
    res.writeHead(err.status, {
      'content-type': 'application/json',
      'content-length': body.length,
      ...headers,
    });
    res.end(body);
    finish(req, start, err.status, countOf(err.status), rid);
  };

  const respond = (
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    rid: string | undefined,
    live: LiveVersion,
    id: string,
    body: string | undefined,
  ) => {
    if (body === undefined) {
      // Built by hand, not through AppError: a miss is a normal answer on the hot path.
      const miss = `{"error":"PROMOTION_NOT_FOUND","message":${JSON.stringify(`no promotion with id ${id}`)}}`;
      res.writeHead(404, [
        'content-type',
        'application/json',
        'content-length',
        String(miss.length),
        SNAPSHOT_VERSION_HEADER,
        live.versionHeader,
      ]);
      res.end(miss);
      finish(req, start, 404, notFound, rid);
      return;
    }
    if (live !== headersOf) {
      headersOf = live;
      okHeaders = [];
    }
    let headers = okHeaders[body.length];
    if (headers === undefined) {
      headers = [
        'content-type',
        'application/json',
        'content-length',
        String(body.length),
        'etag',
        live.etag,
        SNAPSHOT_VERSION_HEADER,
        live.versionHeader,
      ];
      okHeaders[body.length] = headers;
    }
    res.writeHead(200, headers);
    res.end(body);
    finish(req, start, 200, ok, rid);
  };

  const release = () => {
    inFlight--;
    metrics.inFlight.dec();
    const next = queue.shift();
    if (next !== undefined) serve(next.req, next.res, next.start);
  };

  const serve = (req: IncomingMessage, res: ServerResponse, start: number): void => {
    readHeaders(req);
    // At debug level every read is logged, so it gets an id when the client sent none.
    if (requestId === undefined && debug) requestId = randomUUID();
    const rid = requestId;
    if (rid !== undefined) res.setHeader('x-request-id', rid);
    const id = idFromUrl(req.url as string);
    const why = id === undefined ? 'the id is not valid percent-encoding' : idProblem(id);
    if (why !== undefined || id === undefined) {
      sendError(
        req,
        res,
        start,
        rid,
        new AppError('PROMOTION_BAD_ID', `no promotion can have this id: ${why}`),
      );
      return;
    }
    const live = index.current;
    if (live === undefined) {
      sendError(
        req,
        res,
        start,
        rid,
        new AppError('REPLICA_NOT_READY', 'this replica has no data loaded yet'),
        {
          'retry-after': '1',
        },
      );
      return;
    }
    if (ifNoneMatch === live.etag) {
      res.writeHead(304, { etag: live.etag, [SNAPSHOT_VERSION_HEADER]: live.versionHeader });
      res.end();
      finish(req, start, 304, countOf(304), rid);
      return;
    }
    const answer = live.snapshot.lookup(id);
    if (typeof answer !== 'object') {
      respond(req, res, start, rid, live, id, answer);
      return;
    }
    // Disk mode: the answer arrives after one or two positional reads; the read holds a slot until then.
    inFlight++;
    metrics.inFlight.inc();
    answer.then(
      (body) => {
        release();
        respond(req, res, start, rid, live, id, body);
      },
      (err) => {
        release();
        logger.error({ err, path: req.url }, 'read failed');
        sendError(req, res, start, rid, new AppError('INTERNAL', 'the snapshot could not be read'));
      },
    );
  };

  return (req, res) => {
    if (req.method !== 'GET' || !(req.url as string).startsWith(PREFIX)) {
      fallback(req, res);
      return;
    }
    const start = performance.now();
    if (inFlight < options.maxInFlight) {
      serve(req, res, start);
    } else if (queue.length < options.maxQueue) {
      queue.push({ req, res, start });
    } else {
      metrics.shed.inc();
      sendError(
        req,
        res,
        start,
        undefined,
        new AppError('REPLICA_OVERLOADED', 'too many requests in progress; retry shortly'),
        { 'retry-after': '1' },
      );
    }
  };
}
