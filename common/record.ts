/**
 * The promotion record and the validation of one CSV row (docs/design.md §2); promotion-body.ts renders it for HTTP.
 * Pure functions, safe to call from anywhere.
 */
import { clockSeconds, daysInMonth } from './calendar.js';

/** A validated promotion, in the form the snapshot stores. */
export interface Promotion {
  /** The lookup key, exactly as the file gives it (case-sensitive). */
  readonly id: string;
  /** The price as a JSON number literal with every digit the file gave (never rounded). */
  readonly price: string;
  /** The expiration's clock time (offset and zone dropped) in seconds since 0000-01-01 00:00:00. */
  readonly expiresAt: number;
}

/** Which part of a row a bad row is about. */
export type RowColumn = 'row' | 'id' | 'price' | 'expiration_date';

/** A row that failed validation, with its 1-based line number in the file. */
export interface BadRow {
  readonly line: number;
  readonly column: RowColumn;
  /** The offending value, cut to VALUE_PREVIEW_CHARS characters. */
  readonly value: string;
  readonly reason: string;
}

export const MAX_ID_LENGTH = 128;
export const MAX_PRICE_LENGTH = 64;
export const COLUMN_COUNT = 3;
export const HEADER_FIELDS = ['id', 'price', 'expiration_date'] as const;
const VALUE_PREVIEW_CHARS = 80;

function bad(line: number, column: RowColumn, value: string, reason: string): BadRow {
  return {
    line,
    column,
    value: value.length > VALUE_PREVIEW_CHARS ? value.slice(0, VALUE_PREVIEW_CHARS) : value,
    reason,
  };
}

/** True for a BadRow result of parseFields/parseRow. */
export function isBadRow(r: Promotion | BadRow): r is BadRow {
  return (r as BadRow).reason !== undefined;
}

/** Why `id` can never be a promotion id, or undefined when it can. Used by the leader and by the replica's 400. */
export function idProblem(id: string): string | undefined {
  if (id.length === 0) return 'id is empty';
  if (id.length > MAX_ID_LENGTH)
    return `id is ${id.length} characters long, at most ${MAX_ID_LENGTH} are allowed`;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return `id has a character that is not printable ASCII at position ${i + 1}`;
    if (c === 0x2c) return `id has a comma at position ${i + 1}`;
  }
  return undefined;
}

const PRICE_RE = /^([+-]?)(\d*)(?:\.(\d*))?((?:[eE][+-]?\d+)?)$/;

/**
 * The price as a JSON number literal keeping every digit given, or undefined when `text` is not a finite decimal.
 * `+1.50` becomes `1.50`, `.5` becomes `0.5`, `007` becomes `7`; `1e400` (infinite as a double) is refused.
 */
export function canonicalPrice(text: string): string | undefined {
  if (text.length === 0 || text.length > MAX_PRICE_LENGTH) return undefined;
  return isPlainDecimal(text) ? text : canonicalPriceGeneral(text);
}

/** The general route of canonicalPrice (exported so a test can prove the hot path agrees with it). */
export function canonicalPriceGeneral(text: string): string | undefined {
  if (text.length === 0 || text.length > MAX_PRICE_LENGTH) return undefined;
  const m = PRICE_RE.exec(text);
  if (m === null) return undefined;
  const [, sign, intDigits, fracDigits, exponent] = m;
  if (intDigits === '' && (fracDigits === undefined || fracDigits === '')) return undefined;
  if (!Number.isFinite(Number(text))) return undefined;
  const int = intDigits.replace(/^0+(?=\d)/, '') || '0';
  const frac = fracDigits ? `.${fracDigits}` : '';
  return `${sign === '-' ? '-' : ''}${int}${frac}${exponent}`;
}

/**
 * True for the common shape that is already a canonical JSON number: `-?(0|[1-9][0-9]*)(.[0-9]+)?`, at most
 * MAX_PRICE_LENGTH characters (so always finite). A hot-path shortcut: anything else takes the general route.
 */
function isPlainDecimal(t: string): boolean {
  const n = t.length;
  let i = t.charCodeAt(0) === 45 ? 1 : 0;
  const first = i;
  while (i < n) {
    const c = t.charCodeAt(i);
    if (c < 48 || c > 57) break;
    i++;
  }
  const intLen = i - first;
  if (intLen === 0 || (intLen > 1 && t.charCodeAt(first) === 48)) return false;
  if (i === n) return true;
  if (t.charCodeAt(i) !== 46 || i + 1 === n) return false;
  for (i++; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

// Go's default time format: "2006-01-02 15:04:05.999999999 -0700 MST"; fraction, offset and zone are optional.
const DATE_RE =
  /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?: ([+-])(\d{2})(\d{2})(?: (?:[A-Za-z]{1,10}|[+-]\d{2,4}))?)?$/;

/** Seconds since 0000-01-01 00:00:00 of the date's own clock time, or a reason it is not a date. */
export function parseExpiration(text: string): number | string {
  const fast = parsePlainExpiration(text);
  return fast >= 0 ? fast : parseExpirationGeneral(text);
}

/** The general route of parseExpiration (exported so a test can prove the hot path agrees with it). */
export function parseExpirationGeneral(text: string): number | string {
  const m = DATE_RE.exec(text);
  if (m === null)
    return 'expected YYYY-MM-DD HH:MM:SS, optionally followed by an offset like +0200 and a zone name';
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  const h = Number(m[4]);
  const mi = Number(m[5]);
  const s = Number(m[6]);
  if (mo < 1 || mo > 12) return `month ${m[2]} does not exist`;
  const dim = daysInMonth(y, mo);
  if (d < 1 || d > dim) return `day ${m[3]} does not exist in ${m[1]}-${m[2]}`;
  if (h > 23 || mi > 59 || s > 59) return `time ${m[4]}:${m[5]}:${m[6]} does not exist`;
  if (m[7] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) {
    return `offset ${m[7]}${m[8]}${m[9]} does not exist`;
  }
  return clockSeconds(y, mo, d, h, mi, s);
}

/** Room for the longest text of the plain shape (zone name up to 10 letters). */
const MAX_PLAIN_DATE = 36;
const dateBytes = new Uint8Array(MAX_PLAIN_DATE);

/**
 * plainExpirationBytes of a string: its characters copied as bytes, or -1 for a text that cannot have the plain
 * shape (too long, or not ASCII). One fast path for both routes; the general route gives every other answer.
 */
function parsePlainExpiration(t: string): number {
  const n = t.length;
  if (n > MAX_PLAIN_DATE) return -1;
  for (let i = 0; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c > 0x7e) return -1;
    dateBytes[i] = c;
  }
  return plainExpirationBytes(dateBytes, 0, n);
}

function digitAt(b: Uint8Array, i: number): number {
  const d = b[i] - 48;
  return d >= 0 && d <= 9 ? d : -1e6;
}

/**
 * The hot-path shape `YYYY-MM-DD HH:MM:SS` optionally followed by ` +HHMM` and ` ZONE` (letters), read from the
 * ASCII bytes `b[at, at + n)` without making a string: seconds since 0000-01-01, or -1 when the text has another
 * shape or an impossible value (the general route then gives the answer or the reason). parseExpiration uses it
 * too; a property test proves it agrees with parseExpirationGeneral.
 */
export function plainExpirationBytes(b: Uint8Array, at: number, n: number): number {
  if (n < 19 || b[at + 4] !== 45 || b[at + 7] !== 45 || b[at + 10] !== 32) return -1;
  if (b[at + 13] !== 58 || b[at + 16] !== 58) return -1;
  if (n > 19) {
    const sign = b[at + 20];
    if (n < 25 || b[at + 19] !== 32 || (sign !== 43 && sign !== 45)) return -1;
    const oh = digitAt(b, at + 21) * 10 + digitAt(b, at + 22);
    const om = digitAt(b, at + 23) * 10 + digitAt(b, at + 24);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return -1;
    if (n > 25) {
      if (b[at + 25] !== 32 || n > 36) return -1;
      for (let i = at + 26; i < at + n; i++) {
        const c = b[i] | 0x20;
        if (c < 97 || c > 122) return -1;
      }
      if (n === 26) return -1;
    }
  }
  const y = digitAt(b, at) * 1000 + digitAt(b, at + 1) * 100 + digitAt(b, at + 2) * 10 + digitAt(b, at + 3);
  const mo = digitAt(b, at + 5) * 10 + digitAt(b, at + 6);
  const d = digitAt(b, at + 8) * 10 + digitAt(b, at + 9);
  const h = digitAt(b, at + 11) * 10 + digitAt(b, at + 12);
  const mi = digitAt(b, at + 14) * 10 + digitAt(b, at + 15);
  const s = digitAt(b, at + 17) * 10 + digitAt(b, at + 18);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59)
    return -1;
  if (d > daysInMonth(y, mo)) return -1;
  return clockSeconds(y, mo, d, h, mi, s);
}

/** Validates one row's three fields; `line` is the 1-based line number in the file. */
export function parseFields(id: string, price: string, expiration: string, line: number): Promotion | BadRow {
  const idWhy = idProblem(id);
  if (idWhy !== undefined) return bad(line, 'id', id, idWhy);
  const canonical = canonicalPrice(price);
  if (canonical === undefined) {
    return bad(
      line,
      'price',
      price,
      `price "${price.slice(0, VALUE_PREVIEW_CHARS)}" is not a finite decimal number`,
    );
  }
  const expiresAt = parseExpiration(expiration);
  if (typeof expiresAt === 'string') return bad(line, 'expiration_date', expiration, expiresAt);
  return { id, price: canonical, expiresAt };
}

/** The likely cause of a wrong column count, when the line shows one: lines run together, another separator. */
function likelyCause(text: string): string {
  if (text.includes('\r')) return ' (a CR not followed by LF joins lines here: do lines end with CR alone?)';
  if (!text.includes(',') && text.includes(';')) return ' (separated by semicolons? use commas)';
  if (!text.includes(',') && text.includes('\t')) return ' (separated by tabs? use commas)';
  return '';
}

/** Validates one row given as its list of fields. */
export function parseRow(fields: readonly string[], line: number): Promotion | BadRow {
  if (fields.length !== COLUMN_COUNT) {
    const text = fields.join(',');
    return bad(
      line,
      'row',
      text,
      `expected ${COLUMN_COUNT} columns (id,price,expiration_date), found ${fields.length}${likelyCause(text)}`,
    );
  }
  return parseFields(fields[0], fields[1], fields[2], line);
}

/** True for the optional header line `id,price,expiration_date`. */
export function isHeader(fields: readonly string[]): boolean {
  return (
    fields.length === 3 && fields[0] === 'id' && fields[1] === 'price' && fields[2] === 'expiration_date'
  );
}
