/**
 * File I/O that finishes what it starts: a FileHandle write or read may move fewer bytes than asked.
 *
 * Concurrency: stateless; calls on the same handle must not overlap the same bytes.
 */
import type { FileHandle } from 'node:fs/promises';

/** Largest single read: a larger buffer is filled in several reads, so one read never holds a pool thread long. */
const MAX_READ_BYTES = 4 * 1024 * 1024;

/**
 * Writes all of `bytes` at `position`, looping over short writes; `null` writes at the file's current position (its
 * end, for a file opened for appending).
 */
export async function writeFully(handle: FileHandle, bytes: Buffer, position: number | null): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const at = position === null ? null : position + done;
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, at);
    done += bytesWritten;
  }
}

/**
 * Fills `buf` from `position`, looping over short reads. Returns the bytes read: fewer than `buf.length` only when
 * the file ends first (the caller says what that means).
 */
export async function readFully(handle: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const n = Math.min(MAX_READ_BYTES, buf.length - done);
    const { bytesRead } = await handle.read(buf, done, n, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}
