/**
 * The router's shard function, run by nginx's JavaScript module (njs) through `js_set` (k8s/router/nginx.conf).
 * A read `/promotions/{id}` goes to shard `k` of `S = 2^bits`, where `k` is the top `bits` bits of the id's h1:
 * MurmurHash3 x86_32 with seed 0 of the id's bytes, exactly as common/snapshot/key-hash.ts computes it
 * (common/snapshot/FORMAT.md "Keys and hashes"). The id is taken from the raw request URI the way the replica takes
 * it (replica/read-path.ts): everything after `/promotions/` up to an optional `?`, percent-decoded when it holds a
 * `%`. test/unit/k8s/router-shard.test.ts runs this file, in njs and in node, against key-hash.ts.
 *
 * Written for njs 0.7 (Debian 12's and the official nginx image's njs are both at least that): plain functions,
 * `Math.imul` and `>>>` for 32-bit arithmetic, one default export (njs modules export only a default object).
 * Batches: `GET /promotions?id=...` goes to the shard its ids share (`mixed` when they do not: the router answers
 * 421); `POST /promotions:batchGet` to the shard the client names in `X-Promotions-Shard` (docs/operating.md).
 * A URI that holds no valid id goes to shard 0, whose replica answers it (400 PROMOTION_BAD_ID or 404): the router
 * never judges ids itself. The hash of an id with characters past 0xFF differs from the replica's, which refuses
 * such ids anyway.
 */

const READ_PREFIX = '/promotions/';
const BATCH_PATH = '/promotions';
const BATCH_POST_PATH = '/promotions:batchGet';

/** MurmurHash3 x86_32 of `id`'s character codes (printable ASCII: one byte each), seed 0, unsigned. */
function keyHash1(id) {
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
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The id of a raw request URI, as the replica reads it; undefined when it is not a read or not valid encoding. */
function idFromUri(uri) {
  if (uri.slice(0, READ_PREFIX.length) !== READ_PREFIX) return undefined;
  const q = uri.indexOf('?');
  const raw = q === -1 ? uri.slice(READ_PREFIX.length) : uri.slice(READ_PREFIX.length, q);
  if (raw.indexOf('%') === -1) return raw;
  try {
    return decodeURIComponent(raw);
  } catch (_e) {
    return undefined;
  }
}

/** The shard (0 .. 2^bits - 1) of a raw request URI; 0 when it holds no valid id. */
function shardOfUri(uri, bits) {
  checkBits(bits);
  const id = idFromUri(uri);
  if (id === undefined || bits === 0) return 0;
  return keyHash1(id) >>> (32 - bits);
}

/** True for an id the replica could hold: 1 to 128 printable ASCII characters (common/record.ts has the full rule). */
function plausible(id) {
  if (id.length === 0 || id.length > 128) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * The ids of a batch query `id=A&id=B...` read as the replica reads them (replica/batch.ts: form-encoded, `+` is a
 * space); undefined when the replica would refuse the query as a whole (another parameter, no id). Ids it would
 * refuse one by one (bad encoding, not printable) are left out: they belong to no shard.
 */
function batchIds(query) {
  const ids = [];
  let any = false;
  const parts = query.split('&');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (name !== 'id') return undefined;
    any = true;
    let id = eq === -1 ? '' : part.slice(eq + 1);
    if (id.indexOf('+') !== -1) id = id.split('+').join(' ');
    if (id.indexOf('%') !== -1) {
      try {
        id = decodeURIComponent(id);
      } catch (_e) {
        continue;
      }
    }
    if (plausible(id)) ids.push(id);
  }
  return any ? ids : undefined;
}

function checkBits(bits) {
  if (!(bits >= 0 && bits <= 16 && Math.floor(bits) === bits)) {
    throw new Error(`shard bits must be a whole number from 0 to 16, got ${bits}`);
  }
}

/**
 * The shard of a batch `GET /promotions?id=A&id=B...` (`query` after the `?`): the shard its ids share, `mixed` when
 * they are in several (the client's to split, one batch per shard), 0 when the replica will refuse it anyway.
 */
function shardOfBatch(query, bits) {
  checkBits(bits);
  const ids = batchIds(query);
  if (ids === undefined || ids.length === 0 || bits === 0) return '0';
  const k = keyHash1(ids[0]) >>> (32 - bits);
  for (let i = 1; i < ids.length; i++) {
    if (keyHash1(ids[i]) >>> (32 - bits) !== k) return 'mixed';
  }
  return String(k);
}

/**
 * The shard a client names for `POST /promotions:batchGet` in `X-Promotions-Shard` (the router does not read
 * bodies): `k` when it is a shard of 2^bits, `unsaid` otherwise. A wrong one reaches a replica that answers 421.
 */
function shardOfHint(value, bits) {
  checkBits(bits);
  if (typeof value !== 'string' || !/^[0-9]{1,5}$/.test(value)) return 'unsaid';
  const k = Number(value);
  return k < 2 ** bits ? String(k) : 'unsaid';
}

/**
 * For `js_set $promotions_shard shard.shard;`: the shard of this request, from `$request_uri` (the bytes the replica
 * will receive) and `$promotions_shard_bits` (set once, beside the upstreams, in shards.conf). A single read gives
 * its id's shard; a batch, its ids' shard or `mixed`; a POST batch, the client's `X-Promotions-Shard` or `unsaid`.
 */
function shard(r) {
  const uri = r.variables.request_uri;
  // Only the access log asks for a request nginx refused before reading its URI (bad percent-encoding, ...).
  if (uri === undefined) return '-';
  const bits = Number(r.variables.promotions_shard_bits);
  const q = uri.indexOf('?');
  const path = q === -1 ? uri : uri.slice(0, q);
  if (path === BATCH_PATH) return shardOfBatch(q === -1 ? '' : uri.slice(q + 1), bits);
  if (path === BATCH_POST_PATH) return shardOfHint(r.headersIn['X-Promotions-Shard'], bits);
  return String(shardOfUri(uri, bits));
}

export default { shard, shardOfUri, shardOfBatch, shardOfHint, idFromUri, batchIds, keyHash1 };
