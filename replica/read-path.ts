/**
 * The read path, apart from how its bytes travel: admission (overload protection), ids, lookups, entity tags and
 * `If-None-Match`, caching headers, metrics and the debug log line, for single reads (`GET`/`HEAD
 * /promotions/{id}`) and batch lookups (batch.ts). Two transports feed it: the raw HTTP/1.1 fast path
 * (`read-server.ts`), which answers nearly every single read, and the node:http handler (`read-handler.ts`) for
 * batches, refusals and reads on connections that node:http serves.
 *
 * Each request takes `index.current` once, so one answer always comes from one version. Overload protection counts
 * lookups that wait on the disk (disk mode; in memory mode a request is answered within its call, so the event loop
 * itself is its queue): a single read weighs 1, a batch its number of distinct valid ids. A request starts when its
 * weight fits under `maxInFlight` (or nothing is in flight, so that a batch larger than the limit still runs, alone);
 * otherwise up to `maxQueue` requests wait their turn in arrival order; beyond that one is refused at once with 503
 * and `Retry-After`.
 *
 * Concurrency: one ReadPath per server (and per metrics registry), on the event loop; its counters are plain fields.
 */
import { randomUUID } from 'node:crypto';
import { Histogram } from 'prom-client';
import { AppError, errorBody } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type CountCell, type HttpMetrics, METRIC_PREFIX } from '../common/metrics.js';
import { SNAPSHOT_VERSION_HEADER } from '../common/protocol.js';
import { idProblem } from '../common/record.js';
import { formatShard, type Shard, shardOfId } from '../common/snapshot/shard.js';
import { type BatchFormat, type BatchIds, lookupAll, renderBatch } from './batch.js';
import { bodyTag, ifNoneMatchMatches } from './etag.js';
import type { LiveIndex, LiveVersion } from './live-index.js';

/** Paths of single reads start with this; the id follows, percent-encoded, up to an optional query. */
export const READ_PREFIX = '/promotions/';
const ROUTE = '/promotions/:id';

export interface ReadPathOptions {
  /** Lookups that may wait on the disk at once before new requests queue. */
  readonly maxInFlight: number;
  /** Requests that may wait for room; past this, 503. */
  readonly maxQueue: number;
  /** READ_MAX_AGE_S: `Cache-Control: max-age` of read answers; null sends none. */
  readonly maxAgeS?: number | null;
  /** MAX_BATCH_IDS: most ids one batch may ask for. */
  readonly maxBatchIds?: number;
  readonly metrics: HttpMetrics;
  readonly logger: Logger;
  /** SHARD: the shard this replica serves; ids of other shards are answered 421. Absent: every id. */
  readonly shard?: Shard | null;
}

/** Methods of a single read; a HEAD answer is the GET answer's status and headers, and the transport drops the body. */
export type ReadMethod = 'GET' | 'HEAD';

/**
 * Receives a single read's answer, exactly once: the status, the JSON body ('' for 304), the version it came from
 * (none before the first version loads, or for a refused id), the request id to echo and the answer's entity tag
 * (200 and 304 only). It may be called before `read` returns (memory mode) or later (disk mode, or a read that
 * waited in the queue).
 */
export type ReadReply = (
  status: number,
  body: string,
  live: LiveVersion | undefined,
  requestId: string | undefined,
  etag: string | undefined,
) => void;

/** Receives a batch's (or a refusal's) answer, exactly once: status, headers as a flat name/value list, body. */
export type FullReply = (status: number, headers: string[], body: string | Buffer) => void;

/** A batch lookup, as the transport parsed it (batch.ts). */
export interface BatchCall {
  /** The route label for metrics: `/promotions` (GET, HEAD) or `/promotions:batchGet` (POST). */
  readonly route: string;
  readonly method: 'GET' | 'HEAD' | 'POST';
  readonly ids: BatchIds;
  readonly format: BatchFormat;
  readonly ifNoneMatch: string | undefined;
  readonly requestId: string | undefined;
}

/** A request waiting in the overload queue. */
interface Queued {
  readonly weight: number;
  readonly run: () => void;
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

const JSON_TYPE = 'application/json';
const DEFAULT_MAX_BATCH_IDS = 1000;

export class ReadPath {
  /** Reads received so far (a snapshot pull rests between chunks only while this moves). */
  received = 0;
  private readonly queue: Queued[] = [];
  /** Lookups waiting on the disk (disk mode); memory-mode requests finish within their call. */
  private inFlight = 0;
  private readonly debug: boolean;
  private readonly cacheControl: string | undefined;
  private readonly cells = new Map<string, CountCell>();
  private readonly getCells: CountCell[] = [];
  private readonly headCells: CountCell[] = [];
  private readonly duration;
  private readonly batchIds: Histogram;
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
    const age = options.maxAgeS;
    this.cacheControl = age === undefined || age === null ? undefined : `max-age=${age}`;
    this.batchIds = new Histogram({
      name: `${METRIC_PREFIX}batch_ids`,
      help: 'Ids asked for per batch lookup (as sent, duplicates and invalid ids included)',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 5000, 10000, 100000],
      registers: [options.metrics.registry],
    });
  }

  /**
   * Answers the single read of `url` (a path starting with READ_PREFIX) through `reply`. `ifNoneMatch` and
   * `requestId` are the request's headers of those names, if any.
   */
  read(
    method: ReadMethod,
    url: string,
    ifNoneMatch: string | undefined,
    requestId: string | undefined,
    reply: ReadReply,
  ): void {
    const start = performance.now();
    this.received++;
    if (this.fits(1)) {
      this.serve(method, url, ifNoneMatch, requestId, reply, start);
    } else if (this.queue.length < this.options.maxQueue) {
      this.queue.push({
        weight: 1,
        run: () => this.serve(method, url, ifNoneMatch, requestId, reply, start),
      });
      this.options.metrics.inFlight.inc();
    } else {
      this.options.metrics.shed.inc();
      this.finish(method, url, start, 503, this.overloadedBody, undefined, requestId, undefined, reply);
    }
  }

  /** The headers of a single read's answer, as a flat name/value list (node:http's raw header form). */
  answerHeaders(
    status: number,
    body: string,
    live: LiveVersion | undefined,
    requestId: string | undefined,
    etag: string | undefined,
  ): string[] {
    const headers =
      status === 304 ? [] : ['content-type', JSON_TYPE, 'content-length', String(Buffer.byteLength(body))];
    if (etag !== undefined) headers.push('etag', etag);
    if (this.cacheControl !== undefined && (status === 200 || status === 304))
      headers.push('cache-control', this.cacheControl);
    if (live !== undefined) headers.push(SNAPSHOT_VERSION_HEADER, live.versionHeader);
    if (status === 503) headers.push('retry-after', '1');
    if (requestId !== undefined) headers.push('x-request-id', requestId);
    return headers;
  }

  /** MAX_BATCH_IDS, for the transports that parse batches. */
  get maxBatchIds(): number {
    return this.options.maxBatchIds ?? DEFAULT_MAX_BATCH_IDS;
  }

  /** The `Cache-Control` value of read answers, when READ_MAX_AGE_S is set (the fast path caches its line). */
  get cacheControlValue(): string | undefined {
    return this.cacheControl;
  }

  /**
   * PROMOTION_WRONG_SHARD when this replica serves one shard and `id` belongs to another, else undefined. A
   * mis-routed read must be visible, not a silent 404: this replica does not hold the id's shard.
   */
  private wrongShard(id: string): AppError | undefined {
    const shard = this.options.shard;
    if (shard == null || shard.count <= 1) return undefined;
    const owner = shardOfId(id, shard.bits);
    if (owner === shard.index) return undefined;
    const message = `id ${id} belongs to shard ${owner}/${shard.count}; this replica serves ${formatShard(shard)}`;
    return new AppError('PROMOTION_WRONG_SHARD', message);
  }

  /**
   * Answers a batch lookup through `reply` (batch.ts parsed it). On a sharded replica, a batch holding an id of
   * another shard is answered 421 as a whole: splitting a batch by shard is the client's or the proxy's job.
   */
  batch(call: BatchCall, reply: FullReply): void {
    const start = performance.now();
    this.received++;
    this.batchIds.observe(call.ids.asked);
    for (const id of call.ids.valid) {
      const wrong = this.wrongShard(id);
      if (wrong === undefined) continue;
      const message = `${wrong.message}: split a batch by shard, one batch per shard's replicas`;
      this.refuse(
        call.route,
        call.method,
        new AppError('PROMOTION_WRONG_SHARD', message),
        call.requestId,
        reply,
      );
      return;
    }
    const weight = call.ids.valid.length;
    if (this.fits(weight)) {
      this.serveBatch(call, reply, start);
    } else if (this.queue.length < this.options.maxQueue) {
      this.queue.push({ weight, run: () => this.serveBatch(call, reply, start) });
      this.options.metrics.inFlight.inc();
    } else {
      this.options.metrics.shed.inc();
      this.finishFull(
        call.route,
        call.method,
        start,
        503,
        this.errorAnswer(503, this.overloadedBody),
        reply,
        call.requestId,
      );
    }
  }

  /**
   * Answers a request refused before any lookup (a bad batch, a method a read path does not allow, a write sent to
   * a replica) with `err`'s JSON body, counted under `route`; `extra` headers (`Allow`) are added.
   */
  refuse(
    route: string,
    method: string,
    err: AppError,
    requestId: string | undefined,
    reply: FullReply,
    extra: readonly string[] = [],
  ): void {
    const body = JSON.stringify(errorBody(err));
    this.finishFull(
      route,
      method,
      performance.now(),
      err.status,
      this.errorAnswer(err.status, body, extra),
      reply,
      requestId,
    );
  }

  private fits(weight: number): boolean {
    return (
      this.queue.length === 0 && (this.inFlight === 0 || this.inFlight + weight <= this.options.maxInFlight)
    );
  }

  private countOf(route: string, method: string, status: number): CountCell {
    const key = `${route} ${method} ${status}`;
    let c = this.cells.get(key);
    if (c === undefined) {
      c = this.options.metrics.requests.cell(route, method, status);
      this.cells.set(key, c);
    }
    return c;
  }

  private finish(
    method: ReadMethod,
    url: string,
    start: number,
    status: number,
    body: string,
    live: LiveVersion | undefined,
    requestId: string | undefined,
    etag: string | undefined,
    reply: ReadReply,
  ): void {
    // Cells by method and status, so that no answer of a single read builds a key string (a 304 or a HEAD costs
    // what a 200 does).
    const byStatus = method === 'GET' ? this.getCells : this.headCells;
    let cell = byStatus[status];
    if (cell === undefined) {
      cell = this.countOf(ROUTE, method, status);
      byStatus[status] = cell;
    }
    cell.value++;
    this.duration.observe((performance.now() - start) / 1000);
    if (this.debug) this.options.logger.debug({ requestId, method, path: url, status }, 'read');
    reply(status, body, live, requestId, etag);
  }

  private serve(
    method: ReadMethod,
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
      this.finish(method, url, start, 400, body, undefined, requestId, undefined, reply);
      return;
    }
    const wrongShard = this.wrongShard(id);
    if (wrongShard !== undefined) {
      this.finish(
        method,
        url,
        start,
        421,
        JSON.stringify(errorBody(wrongShard)),
        undefined,
        requestId,
        undefined,
        reply,
      );
      return;
    }
    const live = this.index.current;
    if (live === undefined) {
      this.finish(method, url, start, 503, this.notReadyBody, undefined, requestId, undefined, reply);
      return;
    }
    const answer = live.snapshot.lookup(id);
    if (typeof answer !== 'object') {
      this.answer(method, url, start, live, id, answer, ifNoneMatch, requestId, reply);
      return;
    }
    // Disk mode: the answer arrives after one or two positional reads; the read holds a slot until then.
    this.inFlight++;
    this.options.metrics.inFlight.inc();
    answer.then(
      (body) => {
        this.release(1);
        this.answer(method, url, start, live, id, body, ifNoneMatch, requestId, reply);
      },
      (err) => {
        this.release(1);
        this.options.logger.error({ err, path: url }, 'read failed');
        const body = JSON.stringify(errorBody(new AppError('INTERNAL', 'the snapshot could not be read')));
        this.finish(method, url, start, 500, body, undefined, requestId, undefined, reply);
      },
    );
  }

  private answer(
    method: ReadMethod,
    url: string,
    start: number,
    live: LiveVersion,
    id: string,
    body: string | undefined,
    ifNoneMatch: string | undefined,
    requestId: string | undefined,
    reply: ReadReply,
  ): void {
    if (body !== undefined) {
      const etag = bodyTag(body);
      if (ifNoneMatch !== undefined && ifNoneMatchMatches(ifNoneMatch, etag)) {
        this.finish(method, url, start, 304, '', live, requestId, etag, reply);
      } else {
        this.finish(method, url, start, 200, body, live, requestId, etag, reply);
      }
      return;
    }
    // Built by hand, not through AppError: a miss is a normal answer on the hot path.
    const miss = `{"error":"PROMOTION_NOT_FOUND","message":${JSON.stringify(`no promotion with id ${id}`)}}`;
    this.finish(method, url, start, 404, miss, live, requestId, undefined, reply);
  }

  private serveBatch(call: BatchCall, reply: FullReply, start: number): void {
    const live = this.index.current;
    if (live === undefined) {
      this.finishFull(
        call.route,
        call.method,
        start,
        503,
        this.errorAnswer(503, this.notReadyBody),
        reply,
        call.requestId,
      );
      return;
    }
    const valid = call.ids.valid;
    const bodies = lookupAll(live.snapshot, valid);
    if (!(bodies instanceof Promise)) {
      this.answerBatch(call, live, bodies, reply, start);
      return;
    }
    this.inFlight += valid.length;
    this.options.metrics.inFlight.inc();
    bodies.then(
      (found) => {
        this.release(valid.length);
        this.answerBatch(call, live, found, reply, start);
      },
      (err) => {
        this.release(valid.length);
        this.options.logger.error({ err, path: call.route }, 'batch lookup failed');
        const body = JSON.stringify(errorBody(new AppError('INTERNAL', 'the snapshot could not be read')));
        this.finishFull(
          call.route,
          call.method,
          start,
          500,
          this.errorAnswer(500, body),
          reply,
          call.requestId,
        );
      },
    );
  }

  private answerBatch(
    call: BatchCall,
    live: LiveVersion,
    bodies: readonly (string | undefined)[],
    reply: FullReply,
    start: number,
  ): void {
    const { body, contentType } = renderBatch(call.format, call.ids, bodies);
    const etag = bodyTag(typeof body === 'string' ? body : body.toString('latin1'));
    const cacheable = call.method !== 'POST';
    const matched = call.ifNoneMatch !== undefined && ifNoneMatchMatches(call.ifNoneMatch, etag);
    // RFC 9110 §13.1.2: a match answers 304 to GET and HEAD, 412 to any other method.
    const status = matched ? (cacheable ? 304 : 412) : 200;
    if (status === 412) {
      const err = new AppError(
        'REQUEST_PRECONDITION_FAILED',
        "If-None-Match matches this answer's entity tag",
      );
      this.finishFull(
        call.route,
        call.method,
        start,
        412,
        this.errorAnswer(412, JSON.stringify(errorBody(err))),
        reply,
        call.requestId,
      );
      return;
    }
    const headers =
      status === 304 ? [] : ['content-type', contentType, 'content-length', String(body.length)];
    headers.push('etag', etag, 'vary', 'accept');
    if (cacheable && this.cacheControl !== undefined) headers.push('cache-control', this.cacheControl);
    headers.push(SNAPSHOT_VERSION_HEADER, live.versionHeader);
    this.finishFull(
      call.route,
      call.method,
      start,
      status,
      { headers, body: status === 304 ? '' : body },
      reply,
      call.requestId,
      call.ids.asked,
    );
  }

  /** An error answer's headers and body. */
  private errorAnswer(
    status: number,
    body: string,
    extra: readonly string[] = [],
  ): { headers: string[]; body: string } {
    const headers = ['content-type', JSON_TYPE, 'content-length', String(Buffer.byteLength(body)), ...extra];
    if (status === 503) headers.push('retry-after', '1');
    return { headers, body };
  }

  private finishFull(
    route: string,
    method: string,
    start: number,
    status: number,
    answer: { headers: string[]; body: string | Buffer },
    reply: FullReply,
    requestId: string | undefined,
    ids?: number,
  ): void {
    this.countOf(route, method, status).value++;
    this.options.metrics.duration.cell(route).observe((performance.now() - start) / 1000);
    if (requestId !== undefined) answer.headers.push('x-request-id', requestId);
    if (this.debug) this.options.logger.debug({ requestId, method, path: route, status, ids }, 'read');
    reply(status, answer.headers, answer.body);
  }

  private release(weight: number): void {
    this.inFlight -= weight;
    this.options.metrics.inFlight.dec();
    while (this.queue.length > 0) {
      const next = this.queue[0];
      if (this.inFlight !== 0 && this.inFlight + next.weight > this.options.maxInFlight) return;
      this.queue.shift();
      this.options.metrics.inFlight.dec();
      next.run();
    }
  }
}
