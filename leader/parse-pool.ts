/**
 * A fixed pool of ingest workers (worker_threads) so that CSV parsing and validation, and then the building of
 * snapshot partitions, use every core while the main thread streams bytes and writes. With zero workers, the same
 * work runs inline.
 *
 * A worker that dies (an uncaught error, out of memory, terminated) fails the jobs it held with
 * INGEST_WORKER_FAILED, so the ingest that sent them ends (and releases the ingest lock) instead of waiting
 * forever; the live version is untouched since only a finished ingest commits. The dead worker leaves the pool and
 * a fresh one is started for the next job.
 *
 * Concurrency: the caller bounds how many blocks are in flight (csv-reader.ts keeps a short FIFO); the pool only
 * spreads them over its workers. `close` ends the workers; a pool is used by one ingest at a time.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AppError } from '../common/errors.js';
import { type ParsedBlock, parseBlock } from './parse-chunk.js';
import type { WorkerRequest } from './parse-worker.js';
import { type BuiltRange, buildRange } from './snapshot-build/partition-build.js';

interface Pending {
  resolve: (r: ParsedBlock | BuiltRange) => void;
  reject: (e: Error) => void;
  readonly slot: Slot;
}

/** One worker and the jobs it holds. */
interface Slot {
  readonly worker: Worker;
  readonly jobs: Set<number>;
  /** The error the worker reported before it exited, if any. */
  error: Error | undefined;
}

type Reply = { id: number; result: ParsedBlock | BuiltRange } | { id: number; error: string };

/** `b` alone on its own ArrayBuffer, so that transferring it detaches nothing else (copied when shared). */
function owned(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) return b;
  const copy = Buffer.allocUnsafeSlow(b.length);
  b.copy(copy);
  return copy;
}

/**
 * The worker script: parse-worker beside this module, with this module's own extension (.js when built), loaded
 * by whatever loads this module (a loader for the sources must then apply to worker threads too).
 */
const WORKER_URL = new URL(`./parse-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** Rows in each worker's warm-up block: enough calls for V8 to compile the hot functions, a few ms of work. */
const WARM_UP_ROWS = 4096;

/** A block of valid CSV lines shaped like a partner's file (UUID-like ids, decimal prices, Go-style dates). */
function warmUpCsv(): Buffer {
  const lines = ['id,price,expiration_date'];
  for (let i = 0; i < WARM_UP_ROWS; i++) {
    const hex = i.toString(16).padStart(12, '0');
    lines.push(`d018ef0b-dbd9-48f1-ac1a-${hex},${i}.683466,2018-08-04 05:32:31 +0200 CEST`);
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

export class ParsePool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private turn = 0;
  private closing = false;
  /** Workers that finished their warm-up (tests). */
  warmed = 0;
  /** Workers that died while the pool was open (metrics, tests). */
  deaths = 0;
  /**
   * Tests only: the next job posted tells its worker to exit before it answers, so that a test sees a worker die
   * while it holds a job every time (killing it from outside races the worker finishing the job).
   */
  exitOnNextJob = false;

  /** `size` workers, started on the first parse (a leader that never ingests starts none). */
  constructor(readonly size: number) {}

  /** Parses one block; `bytes` is transferred to a worker (the caller must not touch it afterwards). */
  parse(bytes: Buffer, checkHeader: boolean, reportLimit: number): Promise<ParsedBlock> {
    if (this.size === 0) return Promise.resolve(parseBlock(bytes, checkHeader, reportLimit));
    const b = owned(bytes);
    return this.send(
      { kind: 'parse', id: this.nextId++, bytes: b, checkHeader, reportLimit },
      b,
    ) as Promise<ParsedBlock>;
  }

  /** Builds a range of snapshot partitions (a RangeBuilder); `rows` is transferred like `parse`'s bytes. */
  build(
    rows: Buffer,
    rowCount: number,
    first: number,
    count: number,
    partitionBits: number,
  ): Promise<BuiltRange> {
    if (this.size === 0) return Promise.resolve(buildRange([rows], rowCount, first, count, partitionBits));
    const b = owned(rows);
    const req: WorkerRequest = {
      kind: 'build',
      id: this.nextId++,
      rows: b,
      rowCount,
      first,
      count,
      partitionBits,
    };
    return this.send(req, b) as Promise<BuiltRange>;
  }

  /**
   * Starts every worker and runs a small parse and build through each, so that their modules are loaded and their
   * hot code compiled before the first file arrives: otherwise a leader's first ingest pays for it (1.49 s against
   * 0.44 s warm for 200K rows, issue 13). Resolves once every worker has answered; never rejects (a worker that
   * dies here is replaced like any other).
   */
  async warm(): Promise<void> {
    if (this.size === 0) return;
    this.fill();
    await Promise.all(
      this.slots.map(async (slot) => {
        const csv = owned(warmUpCsv());
        const parsed = (await this.sendTo(
          slot,
          { kind: 'parse', id: this.nextId++, bytes: csv, checkHeader: true, reportLimit: 1 },
          csv,
        )) as ParsedBlock;
        const rows = owned(parsed.encoded);
        const built = (await this.sendTo(
          slot,
          {
            kind: 'build',
            id: this.nextId++,
            rows,
            rowCount: parsed.rows,
            first: 0,
            count: 1,
            partitionBits: 0,
          },
          rows,
        )) as BuiltRange;
        if (built.parts.length === 1) this.warmed++;
      }),
    ).catch(() => undefined);
  }

  /** Starts workers up to `size`. */
  private fill(): void {
    while (this.slots.length < this.size) this.slots.push(this.startWorker());
  }

  private send(req: WorkerRequest, transfer: Buffer): Promise<ParsedBlock | BuiltRange> {
    this.fill();
    return this.sendTo(this.slots[this.turn++ % this.slots.length], req, transfer);
  }

  private sendTo(slot: Slot, request: WorkerRequest, transfer: Buffer): Promise<ParsedBlock | BuiltRange> {
    const req: WorkerRequest = this.exitOnNextJob ? { ...request, exitNow: true } : request;
    this.exitOnNextJob = false;
    const job = new Promise<ParsedBlock | BuiltRange>((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject, slot });
      slot.jobs.add(req.id);
      slot.worker.postMessage(req, [transfer.buffer as ArrayBuffer]);
    });
    // The caller keeps several jobs in flight and awaits them in order; when a worker dies, the jobs behind the
    // one that failed the ingest reject too, unawaited: that must not count as an unhandled rejection (which would
    // end the process). The caller still sees each rejection it awaits.
    job.catch(() => undefined);
    return job;
  }

  private startWorker(): Slot {
    const worker = new Worker(WORKER_URL);
    const slot: Slot = { worker, jobs: new Set(), error: undefined };
    worker.unref();
    worker.on('message', (reply: Reply) => this.settle(reply));
    worker.on('error', (err) => {
      slot.error = err;
    });
    worker.on('exit', (code) => this.died(slot, code));
    return slot;
  }

  /** A worker exited: its jobs fail with INGEST_WORKER_FAILED and it leaves the pool (see the module comment). */
  private died(slot: Slot, code: number): void {
    const at = this.slots.indexOf(slot);
    if (at !== -1) this.slots.splice(at, 1);
    if (this.closing) return;
    this.deaths++;
    const why = slot.error === undefined ? `exit code ${code}` : slot.error.message;
    const err = new AppError(
      'INGEST_WORKER_FAILED',
      `an ingest worker stopped (${why}) while it held part of this file; nothing was changed, the live version ` +
        'still serves: send the file again (a file that stops workers each time may need more memory)',
    );
    for (const id of slot.jobs) {
      this.pending.get(id)?.reject(err);
      this.pending.delete(id);
    }
    slot.jobs.clear();
  }

  private settle(reply: Reply): void {
    const p = this.pending.get(reply.id);
    if (p === undefined) return;
    this.pending.delete(reply.id);
    p.slot.jobs.delete(reply.id);
    if ('error' in reply) {
      p.reject(new Error(`parse worker failed: ${reply.error}`));
      return;
    }
    const r = reply.result;
    if ('encoded' in r) {
      // Structured clone turns the Buffer into a plain Uint8Array; view it as a Buffer again.
      const e = r.encoded as Uint8Array;
      p.resolve({ ...r, encoded: Buffer.from(e.buffer, e.byteOffset, e.byteLength) });
      return;
    }
    p.resolve(r);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
