/**
 * Spilling: when rows outgrow the memory budget, the builder appends them to run files, one per hash range, and
 * reads each run back whole (or in chunks, to split a run that is still too large).
 *
 * Concurrency: one caller per Spill; a returned promise (a write) must settle before the next append. Writes to one
 * run go one after another; runs write in parallel, at most MAX_PENDING_WRITES at once.
 */

import { randomBytes } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { readFully, writeFully } from '../../common/file-io.js';
import { recordLength } from '../../common/snapshot/record-codec.js';
import { ROW_PREFIX } from './row-encoding.js';
import { GROUP_BITS, type RowGroups } from './row-groups.js';

/** Bytes read from a run file at a time. */
const READ_BYTES = 1 << 20;
const RUN_BUFFER_BYTES = 64 * 1024;
/** Spill writes allowed in flight before `append` makes its caller wait. */
const MAX_PENDING_WRITES = 16;

/** Encoded rows for one hash range, spilled to a file through a small buffer; writes run one after another. */
export class Run {
  private handle: FileHandle | undefined;
  private buf = Buffer.allocUnsafe(RUN_BUFFER_BYTES);
  private pos = 0;
  private tail: Promise<void> = Promise.resolve();
  bytes = 0;
  count = 0;
  constructor(readonly path: string) {}

  /** Copies one row in; returns the write to wait for when the buffer filled. */
  append(src: Buffer, off: number, len: number): Promise<void> | undefined {
    const p = this.pos + len > this.buf.length ? this.flush() : undefined;
    // A row is a few dozen bytes: a plain loop beats Buffer.copy's per-call cost.
    const buf = this.buf;
    const at = this.pos;
    for (let k = 0; k < len; k++) buf[at + k] = src[off + k];
    this.pos += len;
    this.count++;
    return p;
  }

  /** Copies `count` whole rows, `src[start, end)`, in; returns the write to wait for when the buffer filled. */
  appendSlice(src: Buffer, start: number, end: number, count: number): Promise<void> | undefined {
    const len = end - start;
    this.count += count;
    if (len > RUN_BUFFER_BYTES) {
      // Larger than the buffer: written as it is, after what is buffered (the rows are not changed afterwards).
      this.flush();
      return this.write(src.subarray(start, end));
    }
    const p = this.pos + len > this.buf.length ? this.flush() : undefined;
    src.copy(this.buf, this.pos, start, end);
    this.pos += len;
    return p;
  }

  flush(): Promise<void> {
    if (this.pos === 0) return this.tail;
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(RUN_BUFFER_BYTES);
    this.pos = 0;
    return this.write(out);
  }

  private write(out: Buffer): Promise<void> {
    const at = this.bytes;
    this.bytes += out.length;
    this.tail = this.tail.then(async () => {
      this.handle ??= await open(this.path, 'w');
      await writeFully(this.handle, out, at);
    });
    return this.tail;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle?.close();
    this.handle = undefined;
  }
}

/** A set of runs splitting one hash range by the next `bits` bits of h1, after the first `depth` bits. */
export class Spill {
  readonly runs: Run[];
  private pending: Promise<void>[] = [];
  constructor(
    dir: string,
    readonly depth: number,
    readonly bits: number,
  ) {
    this.runs = Array.from(
      { length: 2 ** bits },
      (_, i) => new Run(join(dir, `run-${depth}-${i}-${randomBytes(4).toString('hex')}`)),
    );
  }

  private bucketOf(h1: number): number {
    return this.bits === 0 ? 0 : ((h1 << this.depth) >>> 0) >>> (32 - this.bits);
  }

  /** Appends one row; returns a promise when too many writes are in flight (bounded memory). */
  append(src: Buffer, off: number, len: number): Promise<void> | undefined {
    const w = this.runs[this.bucketOf(src.readUInt32LE(off))].append(src, off, len);
    if (w === undefined) return undefined;
    this.pending.push(w);
    return this.pending.length < MAX_PENDING_WRITES ? undefined : this.drain();
  }

  /** Appends every row of a grouped buffer (groupRows), one copy per run, or row by row when groups do not fit. */
  async appendGrouped(buf: Buffer, groups: RowGroups | undefined): Promise<void> {
    if (groups === undefined || this.depth !== 0 || this.bits > GROUP_BITS) return this.appendRows(buf);
    const shift = GROUP_BITS - this.bits;
    for (let b = 0; b < this.runs.length; b++) {
      const g0 = b << shift;
      const g1 = (b + 1) << shift;
      const start = groups.bytes[g0];
      const end = groups.bytes[g1];
      if (end === start) continue;
      const w = this.runs[b].appendSlice(buf, start, end, groups.rows[g1] - groups.rows[g0]);
      if (w === undefined) continue;
      this.pending.push(w);
      if (this.pending.length >= MAX_PENDING_WRITES) await this.drain();
    }
  }

  /** Appends every row of a buffer of whole rows. */
  async appendRows(buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const len = ROW_PREFIX + recordLength(buf, off + ROW_PREFIX);
      const w = this.append(buf, off, len);
      if (w !== undefined) await w;
      off += len;
    }
  }

  async drain(): Promise<void> {
    const p = this.pending;
    this.pending = [];
    await Promise.all(p);
  }

  async close(): Promise<void> {
    await this.drain();
    await Promise.all(this.runs.map((r) => r.close()));
  }
}

/** Reads a run file whole (it fits the memory budget): its rows in one buffer, and how many. */
export async function loadRun(run: Run): Promise<{ rows: Buffer; count: number }> {
  if (run.count === 0) return { rows: Buffer.allocUnsafeSlow(0), count: 0 };
  const h = await open(run.path, 'r');
  try {
    // Its own ArrayBuffer: the rows may move to a worker thread.
    const buf = Buffer.allocUnsafeSlow(run.bytes);
    if ((await readFully(h, buf, 0)) < buf.length)
      throw new Error(`run file ${run.path} is shorter than written`);
    return { rows: buf, count: run.count };
  } finally {
    await h.close();
  }
}

/** Streams a run file in chunks of whole rows (for splitting a run larger than memory). */
export async function* runChunks(run: Run): AsyncGenerator<Buffer> {
  const h = await open(run.path, 'r');
  try {
    let carry = Buffer.alloc(0);
    let position = 0;
    while (position < run.bytes) {
      const buf = Buffer.allocUnsafe(READ_BYTES);
      const { bytesRead } = await h.read(buf, 0, READ_BYTES, position);
      if (bytesRead === 0) throw new Error(`run file ${run.path} is shorter than written`);
      position += bytesRead;
      const data = carry.length
        ? Buffer.concat([carry, buf.subarray(0, bytesRead)])
        : buf.subarray(0, bytesRead);
      let whole = 0;
      while (whole + ROW_PREFIX < data.length) {
        const len = ROW_PREFIX + recordLength(data, whole + ROW_PREFIX);
        if (whole + len > data.length) break;
        whole += len;
      }
      yield data.subarray(0, whole);
      carry = Buffer.from(data.subarray(whole));
    }
  } finally {
    await h.close();
  }
}
