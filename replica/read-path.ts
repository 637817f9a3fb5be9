/**
 * The read path, `GET /promotions/{id}`, apart from how its bytes travel: admission (overload protection), the id,
 * the lookup, caching headers, metrics and the debug log line. Two transports feed it: the raw HTTP/1.1 fast path
 * (`read-server.ts`), which answers nearly every read, and the node:http handler (`read-handler.ts`) for reads on
 * connections that node:http serves.
 *
 * Each read takes `index.current` once, so one answer always comes from one version. Overload protection: at most
 * `maxInFlight` reads wait on an asynchronous lookup (disk mode; a memory-mode read is answered within the `read`
 * call, so the event loop itself is its queue); up to `maxQueue` more wait their turn; beyond that a read is refused
 * at once with 503 and `Retry-After`.
 *
 * Concurrency: one ReadPath per server, on the event loop; its counters are plain fields.
 */
import { randomUUID } from 'node:crypto';
import { AppError, errorBody } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { CountCell, HttpMetrics } from '../common/metrics.js';
import { SNAPSHOT_VERSION_HEADER } from '../common/protocol.js';
import { idProblem } from '../common/record.js';
import { formatShard, type Shard, shardOfId } from '../common/snapshot/shard.js';
import type { LiveIndex, LiveVersion } from './live-index.js';

/** Paths of reads start with this; the id follows, percent-encoded, up to an optional query. */
export const READ_PREFIX = '/promotions/';
const ROUTE = '/promotions/:id';

export interface ReadPathOptions {
  /** Reads answered at once before new ones queue. */
  readonly maxInFlight: number;
  /** Reads that may wait for a slot; past this, 503. */
  readonly maxQueue: number;
  readonly metrics: HttpMetrics;
  readonly logger: Logger;
  /** SHARD: the shard this replica serves; ids of other shards are answered 421. Absent: every id. */
  readonly shard?: Shard | null;
}

/**
 * Receives a read's answer, exactly once: the status, the JSON body ('' for 304), the version it came from (none
 * before the first version loads, or for a refused id) and the request id to echo. It may be called before `read`
 * returns (memory mode) or later (disk mode, or a read that waited in the queue).
 */
export type ReadReply = (
  status: number,
  body: string,
  live: LiveVersion | undefined,
  requestId: string | undefined,
) => void;

/** A read waiting in the overload queue. */
interface Queued {
  readonly url: string;
  readonly ifNoneMatch: string | undefined;
  readonly requestId: string | undefined;
  readonly reply: ReadReply;
  readonly start: number;
}

function idFromUrl(url: string): string | undefined {
  const q = url.indexOf('?');
  const raw = q === -1 ? url.slice(READ_PREFIX.length) : url.slice(READ_PREFIX.length, q);
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** The headers of a read's answer, as a flat name/value list (node:http's raw header form). */
export function readAnswerHeaders(
  status: number,
  body: string,
  live: LiveVersion | undefined,
  requestId: string | undefined,
): string[] {
  const headers =
    status === 304
      ? []
      : ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))];
  if (live !== undefined) {
    if (status === 200 || status === 304) headers.push('etag', live.etag);
    headers.push(SNAPSHOT_VERSION_HEADER, live.versionHeader);
  }
  if (status === 503) headers.push('retry-after', '1');
  if (requestId !== undefined) headers.push('x-request-id', requestId);
  return headers;
}

export class ReadPath {
  /** Reads received so far (a snapshot pull rests between chunks only while this moves). */
  received = 0;
  private readonly queue: Queued[] = [];
  /** Reads waiting on an asynchronous lookup (disk mode); memory-mode reads finish within `read`. */
  private inFlight = 0;
  private readonly debug: boolean;
  private readonly cells = new Map<number, CountCell>();
  private readonly ok: CountCell;
  private readonly duration;
  private readonly notReadyBody = JSON.stringify(
    errorBody(new AppError('REPLICA_NOT_READY', 'this replica has no data loaded yet')),
  );
  private readonly overloadedBody = JSON.stringify(
    errorBody(new AppError('REPLICA_OVERLOADED', 'too many requests in progress; retry shortly')),
  );

  constructor(
    private readonly index: LiveIndex,
    private readonly options: ReadPathOptions,
  ) {
    this.debug = options.logger.isLevelEnabled('debug');
    this.duration = options.metrics.duration.cell(ROUTE);
    this.ok = this.countOf(200);
  }

  /**
   * Answers the read of `url` (a path starting with READ_PREFIX) through `reply`. `ifNoneMatch` and `requestId` are
   * the request's headers of those names, if any.
   */
  read(url: string, ifNoneMatch: string | undefined, requestId: string | undefined, reply: ReadReply): void {
    const start = performance.now();
    this.received++;
    if (this.inFlight < this.options.maxInFlight) {
      this.serve(url, ifNoneMatch, requestId, reply, start);
    } else if (this.queue.length < this.options.maxQueue) {
      this.queue.push({ url, ifNoneMatch, requestId, reply, start });
      this.options.metrics.inFlight.inc();
    } else {
      this.options.metrics.shed.inc();
      this.finish(url, start, 503, this.overloadedBody, undefined, requestId, reply);
    }
  }

  private countOf(status: number): CountCell {
    let c = this.cells.get(status);
    if (c === undefined) {
      c = this.options.metrics.requests.cell(ROUTE, 'GET', status);
      this.cells.set(status, c);
    }
    return c;
  }

  private finish(
    url: string,
    start: number,
    status: number,
    body: string,
    live: LiveVersion | undefined,
    requestId: string | undefined,
    reply: ReadReply,
  ): void {
    (status === 200 ? this.ok : this.countOf(status)).value++;
    this.duration.observe((performance.now() - start) / 1000);
    if (this.debug) this.options.logger.debug({ requestId, path: url, status }, 'read');
    reply(status, body, live, requestId);
  }

  private serve(
    url: string,
    ifNoneMatch: string | undefined,
    given: string | undefined,
    reply: ReadReply,
    start: number,
  ): void {
    // At debug level every read is logged, so it gets an id when the client sent none.
    const requestId = given === undefined && this.debug ? randomUUID() : given;
    const id = idFromUrl(url);
    const why = id === undefined ? 'the id is not valid percent-encoding' : idProblem(id);
    if (why !== undefined || id === undefined) {
      const body = JSON.stringify(
        errorBody(new AppError('PROMOTION_BAD_ID', `no promotion can have this id: ${why}`)),
      );
      this.finish(url, start, 400, body, undefined, requestId, reply);
      return;
    }
    const shard = this.options.shard;
    if (shard != null && shard.count > 1) {
      const owner = shardOfId(id, shard.bits);
      // A mis-routed read must be visible, not a silent 404: this replica does not hold the id's shard.
      if (owner !== shard.index) {
        const message = `id ${id} belongs to shard ${owner}/${shard.count}; this replica serves ${formatShard(shard)}`;
        const body = JSON.stringify(errorBody(new AppError('PROMOTION_WRONG_SHARD', message)));
        this.finish(url, start, 421, body, undefined, requestId, reply);
        return;
      }
    }
    const live = this.index.current;
    if (live === undefined) {
      this.finish(url, start, 503, this.notReadyBody, undefined, requestId, reply);
      return;
    }
    if (ifNoneMatch === live.etag) {
      this.finish(url, start, 304, '', live, requestId, reply);
      return;
    }
    const answer = live.snapshot.lookup(id);
    if (typeof answer !== 'object') {
      this.answer(url, start, live, id, answer, requestId, reply);
      return;
    }
    // Disk mode: the answer arrives after one or two positional reads; the read holds a slot until then.
    this.inFlight++;
    this.options.metrics.inFlight.inc();
    answer.then(
      (body) => {
        this.release();
        this.answer(url, start, live, id, body, requestId, reply);
      },
      (err) => {
        this.release();
        this.options.logger.error({ err, path: url }, 'read failed');
        const body = JSON.stringify(errorBody(new AppError('INTERNAL', 'the snapshot could not be read')));
        this.finish(url, start, 500, body, undefined, requestId, reply);
      },
    );
  }

  private answer(
    url: string,
    start: number,
    live: LiveVersion,
    id: string,
    body: string | undefined,
    requestId: string | undefined,
    reply: ReadReply,
  ): void {
    if (body !== undefined) {
      this.finish(url, start, 200, body, live, requestId, reply);
      return;
    }
    // Built by hand, not through AppError: a miss is a normal answer on the hot path.
    const miss = `{"error":"PROMOTION_NOT_FOUND","message":${JSON.stringify(`no promotion with id ${id}`)}}`;
    this.finish(url, start, 404, miss, live, requestId, reply);
  }

  private release(): void {
    this.inFlight--;
    this.options.metrics.inFlight.dec();
    const next = this.queue.shift();
    if (next === undefined) return;
    this.options.metrics.inFlight.dec();
    this.serve(next.url, next.ifNoneMatch, next.requestId, next.reply, next.start);
  }
}
