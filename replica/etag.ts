/**
 * Entity tags of read answers and the `If-None-Match` test of RFC 9110 §13.1.2.
 *
 * A tag is derived from the answer's bytes alone, so it is a strong validator (RFC 9110 §8.8.1: equal tags, equal
 * bytes) that stays the same across versions, replicas and restarts for as long as the answer does: a client that
 * revalidates after an ingest gets 304 for every row that did not change. The hash is 64 bits (16 hex digits) from
 * two unrelated 32-bit hashes of the bytes, MurmurHash3 x86_32 (the snapshot's own key hash, key-hash.ts) and
 * FNV-1a: two passes of multiply-xor over a ~90-byte body, about a fifth of what a node:crypto sha1 digest costs per
 * read here (a native call and a Buffer each); scripts/bench/get.ts measures the read path with it. A tag only needs to tell two answers for the same URL apart, not to resist a
 * forger: a client that already has the bytes gains nothing by making a collision, and 64 bits make an accidental
 * one (2^-64 per change of a row) negligible.
 *
 * Pure functions; safe to call from anywhere.
 */
import { keyHash1 } from '../common/snapshot/key-hash.js';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hex32(h: number): string {
  return HEX[h >>> 24] + HEX[(h >>> 16) & 0xff] + HEX[(h >>> 8) & 0xff] + HEX[h & 0xff];
}

/** FNV-1a, 32 bits, over one byte per char. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * The strong entity tag (with its quotes) of an answer whose bytes are `body` as latin1, one char per byte (read
 * answers are ASCII JSON; a binary body is given as `buffer.toString('latin1')`).
 */
export function bodyTag(body: string): string {
  return `"${hex32(keyHash1(body))}${hex32(fnv1a(body))}"`;
}

/**
 * Whether `If-None-Match: header` names the representation tagged `etag` (RFC 9110 §13.1.2): `*` matches any
 * current representation; otherwise the field is a comma-separated list of entity tags, each compared with the
 * weak comparison (a `W/` prefix on either side is ignored, the quoted parts must be equal). A member that is not
 * an entity tag never matches (and does not stop the others from matching), so a malformed field is a plain read.
 * `etag` is undefined when there is no current representation (a 404): then nothing matches, not even `*`.
 */
export function ifNoneMatchMatches(header: string, etag: string | undefined): boolean {
  if (etag === undefined) return false;
  if (header === etag) return true; // the one form nearly every revalidation sends
  const tag = etag.startsWith('W/') ? etag.slice(2) : etag;
  const n = header.length;
  let i = 0;
  for (;;) {
    while (i < n && (header.charCodeAt(i) === 0x20 || header.charCodeAt(i) === 0x09 || header[i] === ','))
      i++;
    if (i >= n) return false;
    if (header[i] === '*') {
      // `*` is only valid alone; as a list member it is taken the same way, as "any".
      return true;
    }
    if (header.startsWith('W/', i)) i += 2;
    if (header[i] === '"') {
      const close = header.indexOf('"', i + 1);
      if (close === -1) return false;
      if (close + 1 - i === tag.length && header.startsWith(tag, i)) return true;
      i = close + 1;
    }
    // Skip to the next member (whatever is left of a malformed one).
    while (i < n && header[i] !== ',') i++;
  }
}
