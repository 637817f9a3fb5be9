/**
 * The row format the snapshot builder keeps rows in, in memory and in run files: h1 u32, h2 u32 (the key hashes,
 * little-endian), then the record as FORMAT.md encodes it. The parse workers encode straight into it so that the
 * builder takes their output whole.
 *
 * Pure and synchronous; safe on any thread.
 */
import type { Promotion } from '../../common/record.js';
import { keyHash1, keyHash1Bytes, slotHash } from '../../common/snapshot/key-hash.js';
import {
  encodeRecord,
  encodeUuidRecordBytes,
  MAX_RECORD_BYTES,
  recordLength,
} from '../../common/snapshot/record-codec.js';

/** A row in memory or in a run file: h1 u32, h2 u32, then the record. */
export const ROW_PREFIX = 8;
/** Room one encoded row may need. */
export const MAX_ROW_BYTES = ROW_PREFIX + MAX_RECORD_BYTES;

/**
 * Encodes one row as the builder keeps it (h1, h2, record) at `off`; returns its length. Parsing workers call this
 * so that the builder takes their output whole (`addEncoded`).
 */
export function encodeRow(p: Promotion, buf: Buffer, off: number): number {
  writeHashes(buf, off, keyHash1(p.id));
  return encodeRecord(p, buf, off + ROW_PREFIX) - off;
}

/**
 * encodeRow for a row given as ASCII bytes whose id (36 bytes at `idAt`) is a canonical UUID and whose price is
 * already canonical (see encodeUuidRecordBytes). Returns the row's length, or -1 when the id is not a canonical
 * UUID. The parse workers' fast path: no strings are made.
 */
export const encodeUuidRowBytes: typeof encodeUuidRecordBytes = (
  src,
  idAt,
  priceAt,
  priceLen,
  expiresAt,
  buf,
  off,
) => {
  const end = encodeUuidRecordBytes(src, idAt, priceAt, priceLen, expiresAt, buf, off + ROW_PREFIX);
  if (end < 0) return -1;
  writeHashes(buf, off, keyHash1Bytes(src, idAt, 36));
  return end - off;
};

/** The row prefix: h1 and h2 (slotHash of h1), u32 little-endian, at `off`. */
function writeHashes(buf: Uint8Array, off: number, h1: number): void {
  const h2 = slotHash(h1);
  buf[off] = h1 & 0xff;
  buf[off + 1] = (h1 >>> 8) & 0xff;
  buf[off + 2] = (h1 >>> 16) & 0xff;
  buf[off + 3] = h1 >>> 24;
  buf[off + 4] = h2 & 0xff;
  buf[off + 5] = (h2 >>> 8) & 0xff;
  buf[off + 6] = (h2 >>> 16) & 0xff;
  buf[off + 7] = h2 >>> 24;
}

/** Calls `fn` with the offset and length of each whole row of `buf`, in order. */
export function forEachRow(buf: Buffer, fn: (off: number, len: number) => unknown): void {
  let off = 0;
  while (off < buf.length) {
    const len = ROW_PREFIX + recordLength(buf, off + ROW_PREFIX);
    fn(off, len);
    off += len;
  }
}
