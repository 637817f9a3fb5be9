/**
 * Positional file I/O that finishes what it starts: a FileHandle write or read may move fewer bytes than asked.
 *
 * Concurrency: stateless; calls on the same handle must not overlap the same bytes.
 */
import type { FileHandle } from 'node:fs/promises';

/** Writes all of `bytes` at `position`, looping over short writes. */
export async function writeFully(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
