/**
 * Fakes of the replica's read dependencies: snapshots that answer from a Map at once (memory mode) or when the
 * test releases them (disk mode), and a read server built the way the replica builds its own, on either transport.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listen, type RunningServer, type ServerLimits } from '../../../common/http.js';
import type { Logger } from '../../../common/logger.js';
import { createHttpMetrics, type HttpMetrics } from '../../../common/metrics.js';
import type { SnapshotManifest } from '../../../common/protocol.js';
import type { LoadedSnapshot } from '../../../common/snapshot/loaded-snapshot.js';
import { LiveIndex } from '../../../replica/live-index.js';
import { createReadHandler } from '../../../replica/read-handler.js';
import { ReadPath } from '../../../replica/read-path.js';
import { installFastReads } from '../../../replica/read-server.js';
import type { ClockTimer, ServerClock } from '../../../replica/server-clock.js';
import { onCleanup, quietLogger } from '../../helpers.js';

export const MANIFEST: SnapshotManifest = {
  version: 7,
  snapshotId: 'ab'.repeat(16),
  checksum: 'cd'.repeat(32),
  rows: 1,
  duplicates: 0,
  badRows: 0,
  bytes: 1,
  sourceSha256: 'ef'.repeat(32),
  createdAt: new Date(0).toISOString(),
};

/** The body a fake snapshot answers for `id`. */
export function bodyOf(id: string): string {
  return `{"id":${JSON.stringify(id)},"price":1.5,"expiration_date":"2018-01-01 00:00:00"}`;
}

/** A memory-mode snapshot holding `ids`: lookups answer at once. */
export function memorySnapshot(ids: readonly string[]): LoadedSnapshot {
  const rows = new Set(ids);
  return {
    header: {} as LoadedSnapshot['header'],
    mode: 'memory',
    residentBytes: 0,
    heldRows: rows.size,
    lookup: (id) => (rows.has(id) ? bodyOf(id) : undefined),
    close: async () => undefined,
  };
}

/** A disk-mode-like snapshot (every id present) whose lookups wait until the test releases them. */
export function heldSnapshot(): { snapshot: LoadedSnapshot; release: () => void; started: () => number } {
  const waiting: (() => void)[] = [];
  let started = 0;
  let released = false;
  return {
    snapshot: {
      header: {} as LoadedSnapshot['header'],
      mode: 'disk',
      residentBytes: 0,
      heldRows: 0,
      lookup: (id) => {
        started++;
        return released ? Promise.resolve(bodyOf(id)) : new Promise((r) => waiting.push(() => r(bodyOf(id))));
      },
      close: async () => undefined,
    },
    release: () => {
      released = true;
      for (const w of waiting.splice(0)) w();
    },
    started: () => started,
  };
}

/**
 * A clock for the fast path's timeouts that only the test moves: a timeout happens at the millisecond `advance` reaches,
 * on any machine. Timers run within `advance`, one-shot ones in the order they are due; the periodic
 * ones (the fast path's sweep) run once at the time reached, as if their period had just come round.
 */
export class ManualClock implements ServerClock {
  /** Far from 0, which the fast path reads as "not set". */
  private t = 1_000_000;
  private readonly oneShots = new Set<{ due: number; fn: () => void }>();
  private readonly periodic = new Set<() => void>();

  readonly now = (): number => this.t;

  every(_ms: number, fn: () => void): ClockTimer {
    const entry = () => fn();
    this.periodic.add(entry);
    return { cancel: () => this.periodic.delete(entry) };
  }

  after(ms: number, fn: () => void): ClockTimer {
    const entry = { due: this.t + ms, fn };
    this.oneShots.add(entry);
    return { cancel: () => this.oneShots.delete(entry) };
  }

  /** Moves the clock `ms` on, running the timers due by then. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new Error('a clock does not go back');
    const to = this.t + ms;
    for (;;) {
      let next: { due: number; fn: () => void } | undefined;
      for (const e of this.oneShots) if (e.due <= to && (next === undefined || e.due < next.due)) next = e;
      if (next === undefined) break;
      this.oneShots.delete(next);
      this.t = Math.max(this.t, next.due);
      next.fn();
    }
    this.t = to;
    for (const fn of [...this.periodic]) fn();
  }
}

/** Everything else, as Koa would: an answer that names the request, so tests see who answered. */
function fallback(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  // A HEAD answer says content-length 0, so that raw clients that do not know the method read it right.
  const body = req.method === 'HEAD' ? '' : `fallback ${req.method} ${req.url} HTTP/${req.httpVersion}`;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

export const TEST_LIMITS: ServerLimits = {
  maxHeaderBytes: 4096,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5000,
};

export interface ReadServerOptions {
  /** `fast`: the raw fast path in front of node:http, as the replica listens; `node`: node:http alone. */
  readonly transport: 'fast' | 'node';
  readonly limits?: Partial<ServerLimits>;
  readonly maxInFlight?: number;
  readonly maxQueue?: number;
  readonly maxBatchIds?: number;
  readonly maxAgeS?: number | null;
  readonly logger?: Logger;
  /** The fast path's clock for its timeouts (the process's own when not given). */
  readonly clock?: ServerClock;
}

/** A read server for `snapshot` on an ephemeral loopback port, stopped by cleanup(). */
export async function readServer(
  snapshot: LoadedSnapshot | undefined,
  options: ReadServerOptions,
): Promise<{ server: RunningServer; metrics: HttpMetrics; index: LiveIndex }> {
  const index = new LiveIndex();
  if (snapshot !== undefined) index.swap(snapshot, MANIFEST);
  const metrics = createHttpMetrics('replica');
  const reads = new ReadPath(index, {
    maxInFlight: options.maxInFlight ?? 1024,
    maxQueue: options.maxQueue ?? 256,
    maxBatchIds: options.maxBatchIds,
    maxAgeS: options.maxAgeS,
    metrics,
    logger: options.logger ?? quietLogger(),
  });
  const limits = { ...TEST_LIMITS, ...options.limits };
  const server = await listen(
    createReadHandler(reads, fallback),
    '127.0.0.1',
    0,
    limits,
    options.transport === 'fast' ? (s) => installFastReads(s, reads, limits, options.clock) : undefined,
  );
  onCleanup(() => server.close(100));
  return { server, metrics, index };
}
