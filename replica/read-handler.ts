/**
 * The read path on node:http: a request handler that answers `GET /promotions/{id}` through the ReadPath and
 * passes everything else to `fallback` (the Koa app). Nearly every read is answered by the raw fast path of
 * `read-server.ts` before node:http sees it; this handler serves reads on connections that node:http took over
 * (a client that mixed a read with another route on one keep-alive connection, an HTTP/1.0 client, ...), and the
 * servers of tests that use node:http alone.
 *
 * Concurrency: one handler per server, on the event loop.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { READ_PREFIX, type ReadPath, readAnswerHeaders } from './read-path.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** If-None-Match and X-Request-Id from rawHeaders: touching `req.headers` would build the whole headers object. */
function header(req: IncomingMessage, lowerName: string): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    if (k.length === lowerName.length && k.toLowerCase() === lowerName) return raw[i + 1];
  }
  return undefined;
}

/** A request handler that answers reads itself and passes everything else to `fallback` (the Koa app). */
export function createReadHandler(reads: ReadPath, fallback: Handler): Handler {
  return (req, res) => {
    const url = req.url as string;
    if (req.method !== 'GET' || !url.startsWith(READ_PREFIX)) {
      fallback(req, res);
      return;
    }
    reads.read(
      url,
      header(req, 'if-none-match'),
      header(req, 'x-request-id')?.slice(0, 128),
      (status, body, live, rid) => {
        res.writeHead(status, readAnswerHeaders(status, body, live, rid));
        res.end(status === 304 ? undefined : body);
      },
    );
  };
}
