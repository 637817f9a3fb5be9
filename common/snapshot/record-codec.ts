/**
 * The bytes of one record inside a partition (FORMAT.md, "Records"), and the lookups that read them in place.
 * A canonical lowercase UUID id is stored as its 16 bytes; any other id as length + ASCII bytes.
 * Pure functions over Buffers; safe to call from anywhere.
 */
import { isJsonSafeId, renderPromotion, writeExpiration } from '../promotion-body.js';
import type { Promotion } from '../record.js';

export const RECORD_KIND_UUID = 0;
export const RECORD_KIND_RAW = 1;
/** Upper bound of an encoded record: kind, id length and 128 id bytes, price length and 64 bytes, 5 date bytes. */
export const MAX_RECORD_BYTES = 1 + 1 + 128 + 1 + 64 + 5;

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = 10 + i;

/** Position in the 36-character form of the first character of each of the 16 bytes. */
const UUID_POS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/**
 * Writes the 16 bytes of the canonical UUID at `src[at, at + 36)` to `dst[off, off + 16)` and returns true; false
 * when the text is not a canonical UUID (the bytes written so far are then garbage). One pass: checks and converts
 * together. The one UUID decoder: the ingest's byte route calls it on the file's bytes, encodeRecord on a string's.
 */
function uuidFromAscii(src: Uint8Array, at: number, dst: Uint8Array, off: number): boolean {
  if (src[at + 8] !== 45 || src[at + 13] !== 45 || src[at + 18] !== 45 || src[at + 23] !== 45) return false;
  for (let i = 0; i < 16; i++) {
    const c = at + UUID_POS[i];
    const hi = src[c];
    const lo = src[c + 1];
    if (hi >= 128 || lo >= 128) return false;
    const h = HEX[hi];
    const l = HEX[lo];
    if (h < 0 || l < 0) return false;
    dst[off + i] = (h << 4) | l;
  }
  return true;
}

const idScratch = new Uint8Array(36);

/** uuidFromAscii of a string id (its characters copied as bytes; a non-ASCII one is no UUID). */
function writeUuid(id: string, buf: Uint8Array, off: number): boolean {
  if (id.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = id.charCodeAt(i);
    if (c >= 128) return false;
    idScratch[i] = c;
  }
  return uuidFromAscii(idScratch, 0, buf, off);
}

/** Writes the record's last field, the expiration's 5 bytes (u40 little-endian), at `at`; returns the end. */
function writeExpiresAt(buf: Uint8Array, at: number, t: number): number {
  const low = t % 4294967296;
  buf[at] = low & 0xff;
  buf[at + 1] = (low >>> 8) & 0xff;
  buf[at + 2] = (low >>> 16) & 0xff;
  buf[at + 3] = low >>> 24;
  buf[at + 4] = Math.floor(t / 4294967296);
  return at + 5;
}

/**
 * The record of a row whose id is a canonical UUID, from the row's ASCII bytes: the id at `src[idAt, idAt + 36)`,
 * the price (already canonical) at `src[priceAt, priceAt + priceLen)`. Writes at `off` and returns the offset after
 * it, or -1 when the id is not a canonical UUID (the bytes written are then garbage). The same bytes as
 * encodeRecord of the decoded row.
 */
export function encodeUuidRecordBytes(
  src: Uint8Array,
  idAt: number,
  priceAt: number,
  priceLen: number,
  expiresAt: number,
  buf: Uint8Array,
  off: number,
): number {
  if (!uuidFromAscii(src, idAt, buf, off + 1)) return -1;
  buf[off] = RECORD_KIND_UUID;
  let at = off + 17;
  buf[at++] = priceLen;
  for (let i = 0; i < priceLen; i++) buf[at + i] = src[priceAt + i];
  return writeExpiresAt(buf, at + priceLen, expiresAt);
}

/** Writes an ASCII string byte by byte (short strings: cheaper than Buffer.write's call). */
function writeAscii(s: string, buf: Buffer, off: number): number {
  for (let i = 0; i < s.length; i++) buf[off + i] = s.charCodeAt(i);
  return off + s.length;
}

/** Writes `p` at `off`; returns the offset after it. The caller leaves MAX_RECORD_BYTES of room. */
export function encodeRecord(p: Promotion, buf: Buffer, off: number): number {
  const id = p.id;
  if (writeUuid(id, buf, off + 1)) {
    buf[off] = RECORD_KIND_UUID;
    off += 17;
  } else {
    buf[off] = RECORD_KIND_RAW;
    buf[off + 1] = id.length;
    off = writeAscii(id, buf, off + 2);
  }
  buf[off] = p.price.length;
  off = writeAscii(p.price, buf, off + 1);
  return writeExpiresAt(buf, off, p.expiresAt);
}

/** Length in bytes of the id part of the record at `off`. */
function idBytes(buf: Buffer, off: number): number {
  return buf[off] === RECORD_KIND_UUID ? 17 : 2 + buf[off + 1];
}

/** Length in bytes of the record at `off`. */
export function recordLength(buf: Buffer, off: number): number {
  const p = off + idBytes(buf, off);
  return p - off + 1 + buf[p] + 5;
}

/** True when the records at a and b have the same id (their id bytes are equal). */
export function sameRecordId(a: Buffer, aOff: number, b: Buffer, bOff: number): boolean {
  const n = idBytes(a, aOff);
  return n === idBytes(b, bOff) && a.compare(b, bOff, bOff + n, aOff, aOff + n) === 0;
}

/** True when the record at `off` has the id `id`. */
export function recordHasId(buf: Buffer, off: number, id: string): boolean {
  if (buf[off] === RECORD_KIND_UUID) {
    if (id.length !== 36) return false;
    for (let i = 0; i < 16; i++) {
      const c = UUID_POS[i];
      const hi = id.charCodeAt(c);
      const lo = id.charCodeAt(c + 1);
      if (hi >= 128 || lo >= 128 || ((HEX[hi] << 4) | HEX[lo]) !== buf[off + 1 + i]) return false;
    }
    // The hex digits matched (a non-hex character never does); the dashes must sit where a canonical UUID has them.
    return (
      id.charCodeAt(8) === 45 &&
      id.charCodeAt(13) === 45 &&
      id.charCodeAt(18) === 45 &&
      id.charCodeAt(23) === 45
    );
  }
  const n = buf[off + 1];
  if (n !== id.length) return false;
  for (let i = 0; i < n; i++) {
    if (buf[off + 2 + i] !== id.charCodeAt(i)) return false;
  }
  return true;
}

function tail(buf: Buffer, off: number): { price: string; expiresAt: number } {
  const p = off + idBytes(buf, off);
  const priceLen = buf[p];
  const d = p + 1 + priceLen;
  return {
    price: buf.toString('latin1', p + 1, d),
    expiresAt: buf.readUInt32LE(d) + buf[d + 4] * 4294967296,
  };
}

const BODY_ID = Buffer.from('{"id":"', 'latin1');
const BODY_PRICE = Buffer.from('","price":', 'latin1');
const BODY_DATE = Buffer.from(',"expiration_date":"', 'latin1');
/** Where renderRecord composes a body: lookups are synchronous, so one buffer per thread serves them all. */
const body = Buffer.allocUnsafe(BODY_ID.length + 128 + BODY_PRICE.length + 64 + BODY_DATE.length + 19 + 2);

function put(src: Uint8Array, dst: Uint8Array, at: number): number {
  for (let i = 0; i < src.length; i++) dst[at + i] = src[i];
  return at + src.length;
}

/**
 * The response body for the record at `off`, whose id the caller has matched against `id`: renderPromotion's
 * exact text, composed in bytes and turned into one flat string (a concatenation of five strings costs the read
 * path about twice as much).
 */
export function renderRecord(buf: Buffer, off: number, id: string): string {
  if (buf[off] !== RECORD_KIND_UUID && !isJsonSafeId(id)) {
    const t = tail(buf, off);
    return renderPromotion(id, t.price, t.expiresAt);
  }
  let at = put(BODY_ID, body, 0);
  for (let i = 0; i < id.length; i++) body[at + i] = id.charCodeAt(i);
  at = put(BODY_PRICE, body, at + id.length);
  const p = off + idBytes(buf, off);
  const priceEnd = p + 1 + buf[p];
  for (let i = p + 1; i < priceEnd; i++) body[at++] = buf[i];
  at = put(BODY_DATE, body, at);
  at = writeExpiration(buf.readUInt32LE(priceEnd) + buf[priceEnd + 4] * 4294967296, body, at);
  body[at] = 34;
  body[at + 1] = 125;
  return body.toString('latin1', 0, at + 2);
}

/** The whole record at `off` (tools and tests; lookups use renderRecord). */
export function decodeRecord(buf: Buffer, off: number): Promotion {
  let id: string;
  if (buf[off] === RECORD_KIND_UUID) {
    const h = buf.toString('hex', off + 1, off + 17);
    id = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  } else {
    id = buf.toString('latin1', off + 2, off + 2 + buf[off + 1]);
  }
  return { id, ...tail(buf, off) };
}
