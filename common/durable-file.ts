/**
 * Durable small-file writes both roles use for their pointers and manifests (CURRENT, SERVING, vN.json):
 * a temporary name, fsync, rename, fsync of the directory. A reader sees the old content or the new, never half,
 * and after a crash the file is one or the other.
 */
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';

/** fsync of a file or directory by path (a directory's fsync makes a rename in it durable). */
export async function fsyncPath(path: string): Promise<void> {
  const h = await open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Replaces `dir/name` with `data` atomically and durably. */
export async function writeFileAtomic(dir: string, name: string, data: string): Promise<void> {
  const tmp = join(dir, `.${name}.tmp`);
  const h = await open(tmp, 'w');
  try {
    await h.writeFile(data);
    await h.sync();
  } finally {
    await h.close();
  }
  await rename(tmp, join(dir, name));
  await fsyncPath(dir);
}
