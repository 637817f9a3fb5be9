/**
 * A fixed pool of parse workers (worker_threads) so that CSV parsing and validation use every core while the main
 * thread streams bytes and builds. With zero workers, blocks are parsed inline.
 *
 * Concurrency: the caller bounds how many blocks are in flight (csv-reader.ts keeps a short FIFO); the pool only
 * spreads them over idle workers. `close` ends the workers; a pool is used by one ingest at a time.
 */
import { Worker } from 'node:worker_threads';
import { type ParsedBlock, parseBlock } from './parse-chunk.js';
import type { BlockRequest } from './parse-worker.js';

interface Pending {
  resolve: (b: ParsedBlock) => void;
  reject: (e: Error) => void;
}

type Reply = { id: number; result: ParsedBlock } | { id: number; error: string };

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
    while (this.workers.length < this.size) {
      const w = startWorker();
      w.unref();
      w.on('message', (reply: Reply) => this.settle(reply));
      w.on('error', (err) => this.failAll(err));
      this.workers.push(w);
    }
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length];
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const req: BlockRequest = { id, bytes, checkHeader, reportLimit };
      worker.postMessage(req, [bytes.buffer as ArrayBuffer]);
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
    // Structured clone turns the Buffer into a plain Uint8Array; view it as a Buffer again.
    const e = reply.result.encoded as Uint8Array;
    p.resolve({ ...reply.result, encoded: Buffer.from(e.buffer, e.byteOffset, e.byteLength) });
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
