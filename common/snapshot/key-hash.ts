/**
 * The two 32-bit hashes of an id that place it in the snapshot: h1 picks the partition (its top bits) and is the
 * slot's fingerprint; h2 picks the home slot inside the partition. Ids are printable ASCII, so a character code is
 * the byte the file holds. The functions are specified in FORMAT.md; changing them is a new major format version.
 */

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** First hash: MurmurHash3 x86_32 of the id's bytes, seed 0. */
export function keyHash1(id: string): number {
  let h = 0;
  const n = id.length;
  const end = n & ~3;
  for (let i = 0; i < end; i += 4) {
    let k =
      id.charCodeAt(i) |
      (id.charCodeAt(i + 1) << 8) |
      (id.charCodeAt(i + 2) << 16) |
      (id.charCodeAt(i + 3) << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = n & 3;
  if (rest > 0) {
    let k = id.charCodeAt(end);
    if (rest > 1) k |= id.charCodeAt(end + 1) << 8;
    if (rest > 2) k |= id.charCodeAt(end + 2) << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  return fmix(h ^ n);
}

/** Second hash: FNV-1a 32 of the id's bytes, finished with MurmurHash3's mixer so that every bit counts. */
export function keyHash2(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  }
  return fmix(h);
}
