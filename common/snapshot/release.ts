/**
 * Frees the memory of ArrayBuffers now, without waiting for the garbage collector. A version's arena (hundreds of
 * MB in memory mode) is external memory: V8 frees it only when a major collection finds it unreachable, and with
 * little JavaScript garbage that collection may not come for many minutes (a replica rolled back from 10M rows to
 * 200K kept ~520 MB for ~7 minutes). Transferring a buffer to a closed MessagePort detaches it (every view of it
 * becomes empty) and drops its backing store with the undelivered message.
 *
 * Concurrency: the caller guarantees that nothing reads these buffers any more (their views read as empty after).
 */
import { MessageChannel } from 'node:worker_threads';

/** Detaches `buffers` and frees their memory; SharedArrayBuffers and already-detached buffers are skipped. */
export function releaseArrayBuffers(buffers: readonly ArrayBufferLike[]): void {
  const owned = buffers.filter((b): b is ArrayBuffer => b instanceof ArrayBuffer && b.byteLength > 0);
  if (owned.length === 0) return;
  const { port1, port2 } = new MessageChannel();
  port2.close();
  port1.postMessage(null, [...new Set(owned)]);
  port1.close();
}
