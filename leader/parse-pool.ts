/**
 * A fixed pool of ingest workers (worker_threads) so that CSV parsing and validation, and then the building of
 * snapshot partitions, use every core while the main thread streams bytes and writes. With zero workers, the same
 * work runs inline.
 *
 * Concurrency: the caller bounds how many blocks are in flight (csv-reader.ts keeps a short FIFO); the pool only
 * spreads them over idle workers. `close` ends the workers; a pool is used by one ingest at a time.
 */
import { Worker } from 'node:worker_threads';
import { type BuiltRange, buildRange } from '../common/snapshot/writer.js';
import { type ParsedBlock, parseBlock } from './parse-chunk.js';
import type { WorkerRequest } from './parse-worker.js';

interface Pending {
  resolve: (r: ParsedBlock | BuiltRange) => void;
  reject: (e: Error) => void;
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
 * The worker script. Built, it is parse-worker.js beside this module. Run from source under tsx, a worker does not
 * inherit tsx's loader on Node 20, so a small bootstrap registers tsx in the worker before importing the .ts file.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./parse-worker.js', import.meta.url));
  const url = new URL('./parse-worker.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}); });`;
  return new Worker(boot, { eval: true });
}

export class ParsePool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private turn = 0;

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

  private send(req: WorkerRequest, transfer: Buffer): Promise<ParsedBlock | BuiltRange> {
    while (this.workers.length < this.size) {
      const w = startWorker();
      w.unref();
      w.on('message', (reply: Reply) => this.settle(reply));
      w.on('error', (err) => this.failAll(err));
      this.workers.push(w);
    }
    const worker = this.workers[this.turn++ % this.workers.length];
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      worker.postMessage(req, [transfer.buffer as ArrayBuffer]);
    });
  }

  private settle(reply: Reply): void {
    const p = this.pending.get(reply.id);
    if (p === undefined) return;
    this.pending.delete(reply.id);
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

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
