/**
 * Disk mode's positional reads, done off the event loop by a few worker threads (read-worker.ts) that each own a
 * channel of shared memory (read-channel.ts). Every read asked for during one turn of the event loop goes to an
 * idle worker as one batch, in one hand-off (a store and an Atomics.notify); the worker reads synchronously and
 * wakes the main thread, which awaits it with Atomics.waitAsync. So a lookup pays a copy of its record and a share of
 * one wake-up, instead of one or two trips through libuv's thread pool; and a read that waits for the disk blocks
 * its worker only (decision 007).
 *
 * A worker that dies (an uncaught error, `terminate`) fails the reads of its batch (the read path answers 500) and
 * is replaced by a new one at the next batch.
 *
 * Concurrency: everything here runs on the main thread. `read` may be called at any time; its callback runs once,
 * on the main thread, with a view of the record that is valid only during the call. The caller keeps every file
 * descriptor it passes open until the callback of its last read has run. Reads waiting for a worker are bounded by
 * the callers (the read path's MAX_IN_FLIGHT).
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { Worker } from 'node:worker_threads';
import {
  CTL,
  newChannel,
  OUT_BYTES,
  REQ,
  REQ_FIELDS,
  RES,
  RES_FIELDS,
  RESULT_ERROR,
  type ReadChannel,
} from './read-channel.js';

/**
 * The answer to one read: `length` bytes of record at `out[at, at + length)` (RESULT_MISS: the probe found no slot
 * with that fingerprint), the slot of the probe window that matched (-1 for a record read), or the error.
 */
export type ReadDone = (
  length: number,
  slot: number,
  out: Buffer,
  at: number,
  err: Error | undefined,
) => void;

interface Request {
  readonly fd: number;
  readonly position: number;
  readonly length: number;
  readonly h1: number;
  readonly recordsAt: number;
  readonly end: number;
  readonly done: ReadDone;
}

/** One worker and its channel; `batch` is the batch it holds, if any. */
interface Lane {
  readonly worker: Worker;
  /** Settles once the worker waits for batches (or has died trying). */
  readonly online: Promise<void>;
  readonly ch: ReadChannel;
  seq: number;
  batch: Request[] | undefined;
  dead: boolean;
}

/** Atomics.waitAsync (Node 16+; TypeScript's ES2022 library does not declare it). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      index: number,
      value: number,
    ):
      | { async: false; value: 'not-equal' | 'timed-out' }
      | { async: true; value: Promise<'ok' | 'timed-out'> };
  }
).waitAsync;

/** Requests a batch may hold. */
const BATCH_CAPACITY = 512;

/**
 * The worker script: read-worker beside this module, with this module's own extension (.js when built), loaded
 * by whatever loads this module (a loader for the sources must then apply to worker threads too).
 */
const WORKER_URL = new URL(`./read-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** Counters over every pool of this process (the replica's metrics read them). */
export const readPoolStats = {
  /** Reads answered (probes and record reads). */
  requests: 0,
  /** Positional reads the workers made for them. */
  preads: 0,
  /** Batches handed to workers. */
  batches: 0,
  /** Workers that died and were replaced. */
  restarts: 0,
};

export class DiskReadPool {
  private readonly lanes: Lane[] = [];
  private pending: Request[] = [];
  private scheduled = false;
  private closed = false;
  /** Reads answered (probes and record reads). */
  requests = 0;
  /** Positional reads the workers made for them. */
  preads = 0;
  /** Batches handed to workers. */
  batches = 0;
  /** Workers that died and were replaced. */
  restarts = 0;

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new Error('a read pool needs at least one worker');
  }

  /**
   * Reads a record: `length` bytes at `position` of `fd` (h1 < 0), or first the probe window of `length` bytes at
   * `position`, scanned for fingerprint `h1`, then the record it points to (recordsAt + offset, before `end`).
   */
  read(
    fd: number,
    position: number,
    length: number,
    h1: number,
    recordsAt: number,
    end: number,
    done: ReadDone,
  ): void {
    if (this.closed) {
      done(RESULT_ERROR, -1, Buffer.alloc(0), 0, new Error('the disk read pool is closed'));
      return;
    }
    this.pending.push({ fd, position, length, h1, recordsAt, end, done });
    if (!this.scheduled) {
      this.scheduled = true;
      // After this turn's I/O callbacks: every read they asked for goes in one batch.
      setImmediate(this.flush);
    }
  }

  /**
   * Starts the workers now, so that the first reads do not wait for a thread to boot; resolves once every worker
   * runs (or has died trying: its reads then go to its replacement).
   */
  async start(): Promise<void> {
    while (!this.closed && this.lanes.length < this.size) this.startLane();
    await Promise.all(this.lanes.map((l) => l.online));
  }

  /** The workers' threads, for tests that kill one. */
  get threads(): readonly Worker[] {
    return this.lanes.map((l) => l.worker);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    while (this.pending.length > 0) {
      const lane = this.idleLane();
      if (lane === undefined) return;
      this.dispatch(lane);
    }
  };

  private idleLane(): Lane | undefined {
    for (const l of this.lanes) if (l.batch === undefined && !l.dead) return l;
    if (this.lanes.length < this.size) return this.startLane();
    return undefined;
  }

  private startLane(): Lane {
    const ch = newChannel(BATCH_CAPACITY);
    const worker = new Worker(WORKER_URL, { workerData: { shared: ch.shared, capacity: ch.capacity } });
    const online = new Promise<void>((resolve) => {
      worker.once('message', () => {
        // Ready and idle, it waits in Atomics.wait and keeps nothing alive: the process may exit around it.
        if (lane.batch === undefined) worker.unref();
        resolve();
      });
      worker.once('exit', () => resolve());
    });
    const lane: Lane = { worker, online, ch, seq: 0, batch: undefined, dead: false };
    let failure: Error | undefined;
    worker.on('error', (err) => {
      failure = err;
    });
    worker.on('exit', (code) =>
      this.lost(lane, failure ?? new Error(`disk read worker exited with ${code}`)),
    );
    this.lanes.push(lane);
    return lane;
  }

  private dispatch(lane: Lane): void {
    const n = Math.min(BATCH_CAPACITY, this.pending.length);
    const batch = n === this.pending.length ? this.pending : this.pending.slice(0, n);
    this.pending = n === this.pending.length ? [] : this.pending.slice(n);
    const q = lane.ch.requests;
    for (let i = 0; i < n; i++) {
      const r = batch[i];
      const o = i * REQ_FIELDS;
      q[o + REQ.fd] = r.fd;
      q[o + REQ.position] = r.position;
      q[o + REQ.length] = r.length;
      q[o + REQ.h1] = r.h1;
      q[o + REQ.recordsAt] = r.recordsAt;
      q[o + REQ.end] = r.end;
    }
    lane.batch = batch;
    // A batch in flight keeps the process alive (an idle worker does not): Atomics.waitAsync alone does not.
    lane.worker.ref();
    const seq = ++lane.seq;
    const ctl = lane.ch.ctl;
    Atomics.store(ctl, CTL.count, n);
    Atomics.store(ctl, CTL.requestSeq, seq);
    Atomics.notify(ctl, CTL.requestSeq);
    this.batches++;
    readPoolStats.batches++;
    const wait = waitAsync(ctl, CTL.doneSeq, seq - 1);
    if (wait.async) void wait.value.then(() => this.complete(lane, seq));
    else queueMicrotask(() => this.complete(lane, seq));
  }

  private complete(lane: Lane, seq: number): void {
    const batch = lane.batch;
    if (lane.dead || batch === undefined || lane.seq !== seq) return;
    const ctl = lane.ch.ctl;
    if (Atomics.load(ctl, CTL.doneSeq) !== seq) {
      // Woken without the answer (not expected from the worker): wait again.
      const wait = waitAsync(ctl, CTL.doneSeq, seq - 1);
      if (wait.async) void wait.value.then(() => this.complete(lane, seq));
      else queueMicrotask(() => this.complete(lane, seq));
      return;
    }
    lane.batch = undefined;
    lane.worker.unref();
    const preads = Atomics.load(ctl, CTL.reads);
    this.requests += batch.length;
    this.preads += preads;
    readPoolStats.requests += batch.length;
    readPoolStats.preads += preads;
    const res = lane.ch.results;
    const out = lane.ch.out;
    for (let i = 0; i < batch.length; i++) {
      const o = i * RES_FIELDS;
      const length = res[o + RES.length];
      if (length === RESULT_ERROR) {
        const errno = res[o + RES.errno];
        const name = errno < 0 ? getSystemErrorName(errno) : 'an unknown error';
        batch[i].done(length, -1, out, 0, new Error(`a positional read of the snapshot failed: ${name}`));
      } else {
        batch[i].done(length, res[o + RES.slot], out, i * OUT_BYTES, undefined);
      }
    }
    if (this.pending.length > 0) this.flush();
  }

  /** A worker died: fail the reads it held and drop it; the next batch starts a new one. */
  private lost(lane: Lane, err: Error): void {
    if (lane.dead) return;
    lane.dead = true;
    const i = this.lanes.indexOf(lane);
    if (i !== -1) this.lanes.splice(i, 1);
    if (!this.closed) {
      this.restarts++;
      readPoolStats.restarts++;
    }
    const batch = lane.batch;
    lane.batch = undefined;
    // Releases the Atomics.waitAsync of the batch, which then finds the lane dead.
    Atomics.notify(lane.ch.ctl, CTL.doneSeq);
    if (batch !== undefined) {
      for (const r of batch) r.done(RESULT_ERROR, -1, lane.ch.out, 0, err);
    }
    if (this.pending.length > 0 && !this.scheduled && !this.closed) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Ends the workers (tests); reads still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = this.pending;
    this.pending = [];
    for (const r of pending)
      r.done(RESULT_ERROR, -1, Buffer.alloc(0), 0, new Error('the disk read pool is closed'));
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
  }
}

const shared = new Map<number, DiskReadPool>();

/**
 * The process's pool of `workers` workers, started on first use. One replica process serves one version at a time
 * (two during a swap); every disk-mode version shares the pool, each with its own file descriptor.
 */
export function sharedReadPool(workers: number): DiskReadPool {
  let pool = shared.get(workers);
  if (pool === undefined) {
    pool = new DiskReadPool(workers);
    shared.set(workers, pool);
  }
  return pool;
}
