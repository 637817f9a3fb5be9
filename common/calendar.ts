/**
 * Proleptic Gregorian calendar arithmetic for the expiration's clock time, counted in seconds since
 * 0000-01-01 00:00:00 (the form the record stores: the offset and zone are dropped, see record.ts).
 * Pure functions, safe to call from anywhere.
 */

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days from 0000-01-01 to 1970-01-01. */
export const DAYS_0000_TO_1970 = 719528;

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** Days in month `m` (1-12) of year `y`. */
export function daysInMonth(y: number, m: number): number {
  return m === 2 && isLeap(y) ? 29 : DAYS_IN_MONTH[m - 1];
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** Seconds since 0000-01-01 00:00:00 of a valid date and time (the caller checked the fields). */
export function clockSeconds(y: number, mo: number, d: number, h: number, mi: number, s: number): number {
  return (daysFromCivil(y, mo, d) + DAYS_0000_TO_1970) * 86400 + h * 3600 + mi * 60 + s;
}
