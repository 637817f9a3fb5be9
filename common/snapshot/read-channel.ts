/**
 * The shared memory between the main thread and one disk-read worker (read-pool.ts, read-worker.ts): a batch of
 * positional-read requests in, the record bytes out, and the control words both sides wait on. One batch is in a
 * channel at a time; the main thread writes it only while the worker is idle, the worker writes the answers only
 * while it holds the batch, and each side publishes its part by an Atomics store before it notifies the other.
 *
 * A request is one of two reads of a snapshot file, given by its file descriptor:
 * - a record read (`h1` < 0): `length` bytes at `position`, the record whose slot the caller already knows;
 * - a probe (`h1` >= 0): `length` bytes of slots at `position` (FORMAT.md, "Lookup"), scanned for the first slot
 *   whose fingerprint is `h1` before an empty one; then the record that slot points to (`recordsAt` + its offset,
 *   at most MAX_RECORD_BYTES, never past `end`), in a second read.
 * The answer is the record's bytes (RESULT_MISS when the probe met an empty slot or the window's end) and, for a
 * probe, which slot of the window matched, so that the caller, which compares the ids, can go on after it.
 */
import { MAX_RECORD_BYTES } from './record-codec.js';

/** Control words (Int32 indexes). */
export const CTL = {
  /** Bumped by the main thread when it hands a batch over. */
  requestSeq: 0,
  /** Set to requestSeq by the worker when the batch's answers are written. */
  doneSeq: 1,
  /** Requests in the batch. */
  count: 2,
  /** Positional reads the worker made for the batch (metrics: reads per lookup). */
  reads: 3,
} as const;
const CTL_WORDS = 4;

/** Float64 fields of one request. */
export const REQ = { fd: 0, position: 1, length: 2, h1: 3, recordsAt: 4, end: 5 } as const;
export const REQ_FIELDS = 6;

/** Int32 fields of one answer: the record's length (or a RESULT_ code), the slot that matched, an errno. */
export const RES = { length: 0, slot: 1, errno: 2 } as const;
export const RES_FIELDS = 3;
export const RESULT_MISS = -1;
export const RESULT_ERROR = -2;

/** Room for one answer's record bytes. */
export const OUT_BYTES = MAX_RECORD_BYTES;

/** The views of one channel's SharedArrayBuffers; built alike on both sides from the same buffers. */
export interface ReadChannel {
  readonly capacity: number;
  readonly ctl: Int32Array;
  readonly requests: Float64Array;
  readonly results: Int32Array;
  readonly out: Buffer;
  /** The buffers themselves, to hand to a worker. */
  readonly shared: {
    ctl: SharedArrayBuffer;
    requests: SharedArrayBuffer;
    results: SharedArrayBuffer;
    out: SharedArrayBuffer;
  };
}

/** Views over buffers made by `newChannel` (the worker builds its own from `shared`). */
export function channelViews(shared: ReadChannel['shared'], capacity: number): ReadChannel {
  return {
    capacity,
    ctl: new Int32Array(shared.ctl),
    requests: new Float64Array(shared.requests),
    results: new Int32Array(shared.results),
    out: Buffer.from(shared.out),
    shared,
  };
}

/** A fresh channel for batches of at most `capacity` requests. */
export function newChannel(capacity: number): ReadChannel {
  return channelViews(
    {
      ctl: new SharedArrayBuffer(CTL_WORDS * 4),
      requests: new SharedArrayBuffer(capacity * REQ_FIELDS * 8),
      results: new SharedArrayBuffer(capacity * RES_FIELDS * 4),
      out: new SharedArrayBuffer(capacity * OUT_BYTES),
    },
    capacity,
  );
}
