/**
 * The two 32-bit hashes of an id that place it in the snapshot: h1 picks the partition (its top bits) and is the
 * slot's fingerprint; h2 (from h1) picks the home slot inside the partition. Ids are printable ASCII, so a character code is
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

/** One 4-byte block `k` mixed into the running hash `h` (MurmurHash3 x86_32's body step). */
function block(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** The last 1 to 3 bytes `k` mixed in (the tail step), and the finalisation with the length `n`. */
function finish(h: number, k: number, rest: number, n: number): number {
  if (rest > 0) {
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  return fmix(h ^ n);
}

/**
 * First hash: MurmurHash3 x86_32 of the id's bytes, seed 0. The read path hashes the id of a request as a string;
 * the ingest's byte route hashes it in the file's bytes (keyHash1Bytes): two readers of one hash, which a property
 * test keeps equal.
 */
export function keyHash1(id: string): number {
  let h = 0;
  const n = id.length;
  const end = n & ~3;
  for (let i = 0; i < end; i += 4) {
    h = block(
      h,
      id.charCodeAt(i) |
        (id.charCodeAt(i + 1) << 8) |
        (id.charCodeAt(i + 2) << 16) |
        (id.charCodeAt(i + 3) << 24),
    );
  }
  const rest = n & 3;
  let k = 0;
  if (rest > 0) k = id.charCodeAt(end);
  if (rest > 1) k |= id.charCodeAt(end + 1) << 8;
  if (rest > 2) k |= id.charCodeAt(end + 2) << 16;
  return finish(h, k, rest, n);
}

/** keyHash1 of an ASCII id given as its bytes `buf[off, off + n)`: the same value as keyHash1 of the string. */
export function keyHash1Bytes(buf: Uint8Array, off: number, n: number): number {
  let h = 0;
  const end = off + (n & ~3);
  for (let i = off; i < end; i += 4) {
    h = block(h, buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24));
  }
  const rest = n & 3;
  let k = 0;
  if (rest > 0) k = buf[end];
  if (rest > 1) k |= buf[end + 1] << 8;
  if (rest > 2) k |= buf[end + 2] << 16;
  return finish(h, k, rest, n);
}

/**
 * Second hash, derived from the first: MurmurHash3's fmix32 of (h1 XOR 0x9E3779B9). The partition takes h1's top
 * bits, and this mixes all of h1's bits again, so home slots spread evenly inside a partition; keys with the same
 * h1 share a home slot and are told apart by comparing ids. One pass over the id serves both hashes.
 */
export function slotHash(h1: number): number {
  return fmix((h1 ^ 0x9e3779b9) >>> 0);
}
