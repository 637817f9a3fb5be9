/** Damages snapshot files on disk the way a failing disk does, for tests of what notices it. */
import { open } from 'node:fs/promises';
import { HEADER_BYTES } from '../../../../common/snapshot/format.js';

/** Flips every bit of one byte of `path` (by default one in the first partition's body); twice undoes it. */
export async function rot(path: string, at = HEADER_BYTES + 7): Promise<void> {
  const h = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await h.read(b, 0, 1, at);
    b[0] ^= 0xff;
    await h.write(b, 0, 1, at);
  } finally {
    await h.close();
  }
}
