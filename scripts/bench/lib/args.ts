/** Command-line values of the benchmarks: counts with shorthands, positive numbers; a bad one names its flag. */

/** Parses `1000000,10000000` (underscores and `1e6`/`10M` shorthands allowed) into whole numbers. */
export function parseCounts(flag: string, text: string): number[] {
  return text.split(',').map((part) => {
    const s = part.trim().replace(/_/g, '');
    const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s);
    const n = m
      ? Number(m[1]) * (m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6)
      : Number(s.length > 0 ? s : Number.NaN);
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new Error(`${flag}: "${part}" is not a positive whole number`);
    return n;
  });
}

/** Parses a positive number flag. */
export function parsePositive(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag}: "${text}" is not a positive number`);
  return n;
}
