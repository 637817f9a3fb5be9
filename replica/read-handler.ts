/**
 * The read path on node:http: a request handler that answers the read routes through the ReadPath and passes
 * everything else to `fallback` (the Koa app). Nearly every single read is answered by the raw fast path of
 * `read-server.ts` before node:http sees it; this handler serves batches (`GET /promotions?id=...`, `POST
 * /promotions:batchGet`), methods a read route does not allow (405 with `Allow`), writes sent to a replica by mistake
 * (404 saying they go to the leader), reads on connections that node:http took over (a client that mixed a read
 * with another route on one keep-alive connection, an HTTP/1.0 client, ...), and the servers of tests that use
 * node:http alone.
 *
 * Concurrency: one handler per server, on the event loop.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError } from '../common/errors.js';
import { idsFromBody, idsFromQuery, maxBatchBodyBytes, negotiateBatchFormat } from './batch.js';
import { type FullReply, READ_PREFIX, type ReadPath } from './read-path.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The path of batch lookups by query. */
export const BATCH_GET_PATH = '/promotions';
/** The path of batch lookups by body (AIP-231's custom-method form: it cannot be the path of an id). */
export const BATCH_POST_PATH = '/promotions:batchGet';

/** The routes this handler (and the fast path, for single reads) answers, in OpenAPI's path form. */
export const READ_ROUTES: readonly { readonly method: string; readonly path: string }[] = [
  { method: 'GET', path: '/promotions/{id}' },
  { method: 'HEAD', path: '/promotions/{id}' },
  { method: 'GET', path: BATCH_GET_PATH },
  { method: 'HEAD', path: BATCH_GET_PATH },
  { method: 'POST', path: BATCH_POST_PATH },
  // Writes sent to a replica: answered 404 with a pointer to the leader.
  { method: 'PUT', path: BATCH_GET_PATH },
  { method: 'POST', path: BATCH_GET_PATH },
];

/** A header from rawHeaders: touching `req.headers` would build the whole headers object. */
function header(req: IncomingMessage, lowerName: string): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    if (k.length === lowerName.length && k.toLowerCase() === lowerName) return raw[i + 1];
  }
  return undefined;
}

function fullReply(res: ServerResponse): FullReply {
  return (status, headers, body) => {
    res.writeHead(status, headers);
    res.end(status === 304 ? undefined : body);
  };
}

function notAllowed(method: string, path: string, allow: string): AppError {
  return new AppError(
    'REQUEST_METHOD_NOT_ALLOWED',
    `${method} is not allowed on ${path}; it answers ${allow}`,
  );
}

/** Reads a JSON body of at most `limit` bytes, or says why not (415, 413). */
function readJsonBody(req: IncomingMessage, limit: number, done: (body: string | AppError) => void): void {
  const type = header(req, 'content-type')?.split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    done(
      new AppError(
        'REQUEST_UNSUPPORTED_TYPE',
        `the body must be application/json ({"ids": [...]}), got ${type === undefined ? 'no Content-Type' : type}`,
      ),
    );
    return;
  }
  const encoding = header(req, 'content-encoding')?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
    req.resume();
    done(
      new AppError(
        'REQUEST_UNSUPPORTED_ENCODING',
        `the body must not be compressed (Content-Encoding ${encoding.slice(0, 40)}): a batch body is small`,
      ),
    );
    return;
  }
  const tooLarge = () =>
    new AppError('REQUEST_TOO_LARGE', `a batch body may have at most ${limit} bytes; split the batch`);
  if (Number(header(req, 'content-length') ?? 0) > limit) {
    done(tooLarge());
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      if (!over) {
        over = true;
        chunks.length = 0;
        done(tooLarge());
      }
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (!over) done(Buffer.concat(chunks).toString('utf8'));
  });
}

/** A request handler that answers the read routes itself and passes everything else to `fallback` (the Koa app). */
export function createReadHandler(reads: ReadPath, fallback: Handler): Handler {
  const bodyLimit = maxBatchBodyBytes(reads.maxBatchIds);
  return (req, res) => {
    const url = req.url as string;
    const method = req.method as string;
    if (url.startsWith(READ_PREFIX)) {
      if (method === 'GET' || method === 'HEAD') {
        reads.read(
          method,
          url,
          header(req, 'if-none-match'),
          header(req, 'x-request-id')?.slice(0, 128),
          (status, body, live, rid, etag) => {
            res.writeHead(status, reads.answerHeaders(status, body, live, rid, etag));
            res.end(status === 304 ? undefined : body);
          },
        );
        return;
      }
      req.resume();
      const allow = 'GET, HEAD';
      reads.refuse(
        '/promotions/:id',
        method,
        notAllowed(method, '/promotions/{id}', allow),
        rid(req),
        fullReply(res),
        ['allow', allow],
      );
      return;
    }
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === BATCH_GET_PATH) {
      batchByQuery(reads, req, res, method, q === -1 ? '' : url.slice(q + 1));
    } else if (path === BATCH_POST_PATH) {
      if (method !== 'POST') {
        req.resume();
        reads.refuse(BATCH_POST_PATH, method, notAllowed(method, path, 'POST'), rid(req), fullReply(res), [
          'allow',
          'POST',
        ]);
        return;
      }
      const format = negotiate(reads, req, res, BATCH_POST_PATH);
      if (format === undefined) return;
      readJsonBody(req, bodyLimit, (body) => {
        const ids = typeof body === 'string' ? idsFromBody(body, reads.maxBatchIds) : body;
        if (ids instanceof AppError) {
          const extra = ids.code === 'REQUEST_TOO_LARGE' ? ['connection', 'close'] : [];
          reads.refuse(BATCH_POST_PATH, method, ids, rid(req), fullReply(res), extra);
          return;
        }
        reads.batch(
          {
            route: BATCH_POST_PATH,
            method: 'POST',
            ids,
            format,
            ifNoneMatch: header(req, 'if-none-match'),
            requestId: rid(req),
          },
          fullReply(res),
        );
      });
    } else {
      fallback(req, res);
    }
  };
}

function rid(req: IncomingMessage): string | undefined {
  return header(req, 'x-request-id')?.slice(0, 128);
}

/** The batch format the request's Accept allows, or undefined after answering 406. */
function negotiate(reads: ReadPath, req: IncomingMessage, res: ServerResponse, route: string) {
  const format = negotiateBatchFormat(header(req, 'accept'));
  if (format === undefined) {
    req.resume();
    const err = new AppError(
      'REQUEST_NOT_ACCEPTABLE',
      'batch answers are application/json or application/msgpack (application/vnd.msgpack); Accept allows neither',
    );
    reads.refuse(route, req.method as string, err, rid(req), fullReply(res));
  }
  return format;
}

function batchByQuery(
  reads: ReadPath,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  query: string,
) {
  if (method === 'PUT' || method === 'POST') {
    req.resume();
    const err = new AppError(
      'REQUEST_NOT_FOUND',
      `this is a replica, which only serves reads: ${method} /promotions (a new file) goes to the leader`,
    );
    reads.refuse(BATCH_GET_PATH, method, err, rid(req), fullReply(res));
    return;
  }
  if (method !== 'GET' && method !== 'HEAD') {
    req.resume();
    reads.refuse(
      BATCH_GET_PATH,
      method,
      notAllowed(method, BATCH_GET_PATH, 'GET, HEAD'),
      rid(req),
      fullReply(res),
      ['allow', 'GET, HEAD'],
    );
    return;
  }
  const format = negotiate(reads, req, res, BATCH_GET_PATH);
  if (format === undefined) return;
  const ids = idsFromQuery(query, reads.maxBatchIds);
  if (ids instanceof AppError) {
    reads.refuse(BATCH_GET_PATH, method, ids, rid(req), fullReply(res));
    return;
  }
  reads.batch(
    {
      route: BATCH_GET_PATH,
      method,
      ids,
      format,
      ifNoneMatch: header(req, 'if-none-match'),
      requestId: rid(req),
    },
    fullReply(res),
  );
}
