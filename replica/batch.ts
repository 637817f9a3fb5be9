/**
 * Batch lookups (docs/decisions/005-batch-lookups.md): the ids of `GET /promotions?id=A&id=B` or of `POST
 * /promotions:batchGet` with `{"ids": [...]}`, the choice of JSON or MessagePack by `Accept`, the lookups, and the
 * answer:
 *
 *   {"promotions": [found, in request order], "notFound": [ids], "invalid": [{"id", "reason"}]}
 *
 * An id asked for twice is answered once, where it was first asked. An id that no promotion can have (empty, too
 * long, a comma, not printable ASCII, bad percent-encoding) is listed in `invalid` with the reason, and the rest of
 * the batch is answered. The body carries no version (that is the `X-Snapshot-Version` header), so its entity tag
 * changes only when one of its rows does. In MessagePack the price is a string holding the JSON number's text
 * (`"60.683466"`): MessagePack has no decimal type, and a float64 would round long prices and drop trailing zeros.
 *
 * Pure functions (the Packr below is only used for encoding, whose state it resets per call); safe to call from
 * anywhere on the event loop.
 */
import { Packr } from 'msgpackr';
import { AppError } from '../common/errors.js';
import { promotionText } from '../common/promotion-body.js';
import { idProblem } from '../common/record.js';
import type { LoadedSnapshot } from '../common/snapshot/loaded-snapshot.js';

/** How a batch answer is encoded: JSON, or MessagePack under the media type the client named. */
export type BatchFormat = 'json' | 'msgpack' | 'vnd.msgpack';

/** The media type of each format's answer. */
export const BATCH_MEDIA_TYPES: Readonly<Record<BatchFormat, string>> = {
  json: 'application/json',
  msgpack: 'application/msgpack',
  'vnd.msgpack': 'application/vnd.msgpack',
};

/** An id no promotion can have, and why. */
export interface InvalidId {
  readonly id: string;
  readonly reason: string;
}

/** The ids of a batch request, sorted out. */
export interface BatchIds {
  /** Ids as sent, duplicates and invalid ones included. */
  readonly asked: number;
  /** Distinct valid ids, in the order they were first asked for. */
  readonly valid: readonly string[];
  /** Distinct invalid ids, in request order. */
  readonly invalid: readonly InvalidId[];
}

const BAD_ENCODING = 'the id is not valid percent-encoding';

/** Dedupes and checks `ids` (undefined: an id whose percent-encoding was broken, shown as `raw[i]`). */
function sortOut(ids: readonly (string | undefined)[], raw: readonly string[]): BatchIds {
  const seen = new Set<string>();
  const valid: string[] = [];
  const invalid: InvalidId[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    const shown = id ?? raw[i];
    if (seen.has(shown)) continue;
    seen.add(shown);
    const why = id === undefined ? BAD_ENCODING : idProblem(id);
    if (why === undefined) valid.push(shown);
    else invalid.push({ id: shown, reason: why });
  }
  return { asked: ids.length, valid, invalid };
}

function tooMany(count: string, max: number): AppError {
  return new AppError(
    'BATCH_TOO_MANY_IDS',
    `a batch may ask for at most ${max} ids (MAX_BATCH_IDS), this one asks for ${count}; split it into several`,
  );
}

/**
 * The ids of `GET /promotions?<query>` (`query` without the `?`): `id=A&id=B...`, form-encoded (`+` is a space,
 * so an id with a `+` is sent as `%2B`, as URLSearchParams does). Any other parameter, or no id, is a REQUEST_BAD.
 */
export function idsFromQuery(query: string, max: number): BatchIds | AppError {
  const raw: string[] = [];
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (name !== 'id') {
      return new AppError(
        'REQUEST_BAD',
        `unknown query parameter "${name.slice(0, 40)}": ask for promotions as ?id=A&id=B`,
      );
    }
    raw.push(eq === -1 ? '' : part.slice(eq + 1));
    if (raw.length > max) return tooMany(`more than ${max}`, max);
  }
  if (raw.length === 0) {
    return new AppError(
      'REQUEST_BAD',
      'GET /promotions needs the ids to look up, as ?id=A&id=B (there is no listing of all promotions)',
    );
  }
  const ids = raw.map((r) => {
    const plus = r.includes('+') ? r.replaceAll('+', ' ') : r;
    if (!plus.includes('%')) return plus;
    try {
      return decodeURIComponent(plus);
    } catch {
      return undefined;
    }
  });
  return sortOut(ids, raw);
}

/** Largest POST body accepted for `max` ids: each id at most 128 characters, all escaped, plus room for spacing. */
export function maxBatchBodyBytes(max: number): number {
  return 1024 + max * (2 * 128 + 16);
}

/** The ids of `POST /promotions:batchGet`, from its JSON body `{"ids": ["A", "B", ...]}`. */
export function idsFromBody(body: string, max: number): BatchIds | AppError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (err) {
    return new AppError('REQUEST_BAD_JSON', `the body is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return new AppError('REQUEST_BAD', 'the body must be a JSON object {"ids": ["A", "B", ...]}');
  }
  for (const key of Object.keys(parsed)) {
    if (key !== 'ids')
      return new AppError('REQUEST_BAD', `unknown field "${key.slice(0, 40)}": send {"ids": [...]}`);
  }
  const ids = (parsed as { ids?: unknown }).ids;
  if (!Array.isArray(ids)) {
    return new AppError(
      'REQUEST_BAD',
      'the body needs "ids", an array of id strings: {"ids": ["A", "B", ...]}',
    );
  }
  if (ids.length === 0) return new AppError('REQUEST_BAD', '"ids" is empty: give at least one id');
  if (ids.length > max) return tooMany(String(ids.length), max);
  for (let i = 0; i < ids.length; i++) {
    if (typeof ids[i] !== 'string') {
      return new AppError(
        'REQUEST_BAD',
        `ids[${i}] is ${JSON.stringify(ids[i])?.slice(0, 40)}, expected a string`,
      );
    }
  }
  return sortOut(ids as string[], ids as string[]);
}

const FORMAT_OF: Readonly<Record<string, BatchFormat>> = {
  'application/json': 'json',
  'application/msgpack': 'msgpack',
  'application/vnd.msgpack': 'vnd.msgpack',
  'application/x-msgpack': 'msgpack',
};

/**
 * The format an `Accept` header prefers (RFC 9110 §12.5.1): each candidate gets the q of the most specific range
 * that matches it (`type/subtype` over `type/*` over `*\/*`); the highest q above 0 wins, JSON on a tie. No header
 * is JSON; undefined when the client accepts none of them (406).
 */
export function negotiateBatchFormat(accept: string | undefined): BatchFormat | undefined {
  if (accept === undefined || accept.trim() === '') return 'json';
  const best = new Map<BatchFormat, { q: number; specificity: number }>();
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    for (const p of params) {
      if (p.startsWith('q=')) q = Number(p.slice(2));
    }
    if (!Number.isFinite(q) || q < 0 || q > 1) q = 0;
    const [main, sub] = type.split('/');
    for (const [media, format] of Object.entries(FORMAT_OF)) {
      const specificity =
        type === media ? 3 : main === 'application' && sub === '*' ? 2 : type === '*/*' ? 1 : 0;
      if (specificity === 0) continue;
      const seen = best.get(format);
      if (seen === undefined || specificity > seen.specificity) best.set(format, { q, specificity });
    }
  }
  let chosen: BatchFormat | undefined;
  let chosenQ = 0;
  for (const format of ['json', 'msgpack', 'vnd.msgpack'] as const) {
    const q = best.get(format)?.q ?? 0;
    if (q > chosenQ) {
      chosen = format;
      chosenQ = q;
    }
  }
  return chosen;
}

/**
 * The answers for `ids` in `snapshot`, in order: at once in memory mode, or once every lookup is done when the
 * snapshot reads from disk (all issued together: they run in parallel on libuv's pool).
 */
export function lookupAll(
  snapshot: LoadedSnapshot,
  ids: readonly string[],
): (string | undefined)[] | Promise<(string | undefined)[]> {
  const bodies: (string | undefined)[] = new Array(ids.length);
  let waits: Promise<void>[] | undefined;
  for (let i = 0; i < ids.length; i++) {
    const answer = snapshot.lookup(ids[i]);
    if (typeof answer === 'object') {
      waits ??= [];
      waits.push(
        answer.then((body) => {
          bodies[i] = body;
        }),
      );
    } else {
      bodies[i] = answer;
    }
  }
  return waits === undefined ? bodies : Promise.all(waits).then(() => bodies);
}

/**
 * JSON.stringify with every character past ASCII escaped, so that the body is ASCII (one byte per char: its length
 * is its content-length, and its entity tag hashes its bytes). Only an invalid id can hold such a character.
 */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

// Plain MessagePack maps (no msgpackr record extension), so that any MessagePack library decodes the answer.
const packr = new Packr({ useRecords: false });

/** The batch answer's body (a string for JSON, bytes for MessagePack) and its media type. */
export function renderBatch(
  format: BatchFormat,
  ids: BatchIds,
  bodies: readonly (string | undefined)[],
): { body: string | Buffer; contentType: string } {
  const found: string[] = [];
  const notFound: string[] = [];
  for (let i = 0; i < bodies.length; i++) {
    const b = bodies[i];
    if (b === undefined) notFound.push(ids.valid[i]);
    else found.push(b);
  }
  const contentType = BATCH_MEDIA_TYPES[format];
  if (format === 'json') {
    // The lookups' bodies are already the promotions' JSON: joined, not parsed and stringified again.
    const invalid = ids.invalid.length === 0 ? '[]' : asciiJson(ids.invalid);
    const body = `{"promotions":[${found.join(',')}],"notFound":${JSON.stringify(notFound)},"invalid":${invalid}}`;
    return { body, contentType };
  }
  const body = packr.pack({ promotions: found.map(promotionText), notFound, invalid: ids.invalid });
  return { body, contentType };
}
