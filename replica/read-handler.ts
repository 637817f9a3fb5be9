/**
 * The read path, `GET /promotions/{id}`, served by a lean node:http handler in front of the Koa app: the product's
 * hot path must not pay a framework's per-request cost. Every other request falls through to Koa.
 * It reads `index.current` once, so one answer always comes from one version.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError, errorBody } from '../common/errors.js';
import { SNAPSHOT_VERSION_HEADER } from '../common/protocol.js';
import { idProblem } from '../common/record.js';
import type { LiveIndex, LiveVersion } from './live-index.js';

const PREFIX = '/promotions/';
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function sendError(res: ServerResponse, err: AppError, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(errorBody(err));
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': body.length,
    ...headers,
  });
  res.end(body);
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

function serveRead(index: LiveIndex, req: IncomingMessage, res: ServerResponse): void {
  const id = idFromUrl(req.url as string);
  const why = id === undefined ? 'the id is not valid percent-encoding' : idProblem(id);
  if (why !== undefined || id === undefined) {
    sendError(res, new AppError('PROMOTION_BAD_ID', `no promotion can have this id: ${why}`));
    return;
  }
  const live = index.current;
  if (live === undefined) {
    sendError(res, new AppError('REPLICA_NOT_READY', 'this replica has no data loaded yet'), {
      'retry-after': '1',
    });
    return;
  }
  if (req.headers['if-none-match'] === live.etag) {
    res.writeHead(304, { etag: live.etag, [SNAPSHOT_VERSION_HEADER]: live.versionHeader });
    res.end();
    return;
  }
  const answer = live.snapshot.lookup(id);
  if (typeof answer === 'object') {
    // Disk mode: the answer arrives after one or two positional reads.
    answer.then(
      (body) => respond(res, live, id, body),
      () => sendError(res, new AppError('INTERNAL', 'the snapshot could not be read')),
    );
    return;
  }
  respond(res, live, id, answer);
}

function respond(res: ServerResponse, live: LiveVersion, id: string, body: string | undefined): void {
  if (body === undefined) {
    sendError(res, new AppError('PROMOTION_NOT_FOUND', `no promotion with id ${JSON.stringify(id)}`), {
      [SNAPSHOT_VERSION_HEADER]: live.versionHeader,
    });
    return;
  }
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': body.length,
    etag: live.etag,
    [SNAPSHOT_VERSION_HEADER]: live.versionHeader,
  });
  res.end(body);
}

/** A request handler that answers reads itself and passes everything else to `fallback` (the Koa app). */
export function createReadHandler(index: LiveIndex, fallback: Handler): Handler {
  return (req, res) => {
    if (req.method === 'GET' && (req.url as string).startsWith(PREFIX)) {
      serveRead(index, req, res);
      return;
    }
    fallback(req, res);
  };
}
