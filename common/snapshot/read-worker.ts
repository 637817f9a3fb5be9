/**
 * A disk-read worker (read-pool.ts): waits on its channel (read-channel.ts), serves each batch with synchronous
 * positional reads (`fs.readSync`, about a microsecond from the page cache), then wakes the main thread. A read
 * that has to wait for the disk blocks this thread only, never the event loop that serves requests.
 *
 * Concurrency: one batch at a time, handed over by the main thread; the file descriptors belong to the main thread,
 * which closes one only after every lookup that uses it has been answered.
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { EMPTY_SLOT, SLOT_BYTES } from './format.js';
// The whole vocabulary of the channel's layout is used here, so it is read through one namespace.
import * as channel from './read-channel.js';

const { shared, capacity } = workerData as { shared: channel.ReadChannel['shared']; capacity: number };
const ch = channel.channelViews(shared, capacity);
let probe = Buffer.allocUnsafe(4096);
let reads = 0;

function preadFully(fd: number, buf: Buffer, off: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    reads++;
    const n = readSync(fd, buf, off + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function serve(i: number): void {
  const q = i * channel.REQ_FIELDS;
  const r = i * channel.RES_FIELDS;
  const fd = ch.requests[q + channel.REQ.fd];
  const h1 = ch.requests[q + channel.REQ.h1];
  let position = ch.requests[q + channel.REQ.position];
  let length = ch.requests[q + channel.REQ.length];
  ch.results[r + channel.RES.slot] = -1;
  if (h1 >= 0) {
    if (probe.length < length) probe = Buffer.allocUnsafe(length);
    const got = preadFully(fd, probe, 0, length, position);
    let found = -1;
    for (let s = 0; s + SLOT_BYTES <= got; s += SLOT_BYTES) {
      const off = probe.readUInt32LE(s + 4);
      if (off === EMPTY_SLOT) break;
      if (probe.readUInt32LE(s) === h1) {
        found = s / SLOT_BYTES;
        position = ch.requests[q + channel.REQ.recordsAt] + off;
        break;
      }
    }
    if (found === -1) {
      ch.results[r + channel.RES.length] = channel.RESULT_MISS;
      return;
    }
    ch.results[r + channel.RES.slot] = found;
    length = Math.max(0, Math.min(channel.OUT_BYTES, ch.requests[q + channel.REQ.end] - position));
  }
  ch.results[r + channel.RES.length] = preadFully(fd, ch.out, i * channel.OUT_BYTES, length, position);
}

// Tells the pool that this thread runs and waits for batches (read-pool.ts `start`).
parentPort?.postMessage('ready');

for (let seen = 0; ; ) {
  Atomics.wait(ch.ctl, channel.CTL.requestSeq, seen);
  seen = Atomics.load(ch.ctl, channel.CTL.requestSeq);
  const count = Atomics.load(ch.ctl, channel.CTL.count);
  reads = 0;
  for (let i = 0; i < count; i++) {
    try {
      serve(i);
    } catch (err) {
      // A failed read fails its lookup alone (the main thread answers 500); the worker goes on.
      ch.results[i * channel.RES_FIELDS + channel.RES.length] = channel.RESULT_ERROR;
      ch.results[i * channel.RES_FIELDS + channel.RES.errno] = Number(
        (err as NodeJS.ErrnoException).errno ?? 0,
      );
    }
  }
  Atomics.store(ch.ctl, channel.CTL.reads, reads);
  Atomics.store(ch.ctl, channel.CTL.doneSeq, seen);
  Atomics.notify(ch.ctl, channel.CTL.doneSeq);
}
