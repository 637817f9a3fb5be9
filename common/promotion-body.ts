/**
 * The HTTP body of `GET /promotions/{id}`: the JSON text of one promotion, with the expiration as its clock time
 * `YYYY-MM-DD HH:MM:SS`. record-codec.ts composes the same text from a stored record's bytes.
 * Pure functions, safe to call from anywhere.
 */
import { DAYS_0000_TO_1970 } from './calendar.js';

const clockText = Buffer.allocUnsafe(19);

/** `YYYY-MM-DD HH:MM:SS` for seconds since 0000-01-01 00:00:00. */
export function formatExpiration(seconds: number): string {
  writeExpiration(seconds, clockText, 0);
  return clockText.toString('latin1');
}

/** Writes `v` (0-99) as two ASCII digits at `at`. */
function twoDigits(buf: Uint8Array, at: number, v: number): void {
  buf[at] = 48 + Math.floor(v / 10);
  buf[at + 1] = 48 + (v % 10);
}

/**
 * Writes formatExpiration(seconds) as 19 ASCII bytes at `off` (no string is made); returns the offset after them.
 */
export function writeExpiration(seconds: number, buf: Uint8Array, off: number): number {
  const days = Math.floor(seconds / 86400);
  let rest = seconds - days * 86400;
  // H. Hinnant's civil_from_days, inline: no array per call.
  const z = days - DAYS_0000_TO_1970 + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const mi = Math.floor(rest / 60);
  const s = rest - mi * 60;
  buf[off] = 48 + Math.floor(y / 1000);
  buf[off + 1] = 48 + (Math.floor(y / 100) % 10);
  twoDigits(buf, off + 2, y % 100);
  buf[off + 4] = 45;
  twoDigits(buf, off + 5, m);
  buf[off + 7] = 45;
  twoDigits(buf, off + 8, d);
  buf[off + 10] = 32;
  twoDigits(buf, off + 11, h);
  buf[off + 13] = 58;
  twoDigits(buf, off + 14, mi);
  buf[off + 16] = 58;
  twoDigits(buf, off + 17, s);
  return off + 19;
}

const NEEDS_ESCAPE = /["\\]/;

/** True when `id` can go into the JSON body between quotes as it is (no `"` or `\\`; ids are printable ASCII). */
export function isJsonSafeId(id: string): boolean {
  return !NEEDS_ESCAPE.test(id);
}

/** The JSON body of `GET /promotions/{id}`; `price` is already a JSON number literal. */
export function renderPromotion(id: string, price: string, expiresAt: number): string {
  const idJson = NEEDS_ESCAPE.test(id) ? JSON.stringify(id) : `"${id}"`;
  return `{"id":${idJson},"price":${price},"expiration_date":"${formatExpiration(expiresAt)}"}`;
}

/** The three fields of a body `renderPromotion` made, as text: `price` is the JSON number literal as written. */
export interface PromotionText {
  readonly id: string;
  readonly price: string;
  readonly expiration_date: string;
}

const BODY_ID_START = '{"id":'.length;
const BODY_PRICE_KEY = ',"price":';
/** `,"expiration_date":"`, the 19 characters of the date, and `"}`. */
const BODY_DATE_TAIL = ',"expiration_date":"'.length + 19 + 2;

/**
 * The fields of a body made by renderPromotion (a lookup's answer), read by position rather than parsed: the
 * shape is fixed, the date is 19 characters, and `,"price":` cannot occur inside the id's JSON string (a quote in
 * an id is escaped). JSON.parse would turn the price into a double and lose its digits.
 */
export function promotionText(body: string): PromotionText {
  const dateEnd = body.length - 2;
  const priceEnd = body.length - BODY_DATE_TAIL;
  const priceKey = body.indexOf(BODY_PRICE_KEY, BODY_ID_START);
  const idJson = body.slice(BODY_ID_START, priceKey);
  return {
    id: idJson.includes('\\') ? (JSON.parse(idJson) as string) : idJson.slice(1, -1),
    price: body.slice(priceKey + BODY_PRICE_KEY.length, priceEnd),
    expiration_date: body.slice(dateEnd - 19, dateEnd),
  };
}
