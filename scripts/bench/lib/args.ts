/** Command-line values of the benchmarks: counts with shorthands, positive numbers; a bad one names its flag. */
import { DEFAULT_SEED } from './data.js';

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

/** Each benchmark's own defaults for the load flags. */
export interface LoadDefaults {
  readonly durationS: number;
  readonly warmupS: number;
  readonly rounds: number;
  readonly ids: number;
}

/**
 * The flags of a wrk load that the GET benchmarks share (batch.ts, disk.ts, get.ts, shard-proxy.ts), for their
 * `parseArgs` options: --connections (50), --duration-s, --warmup-s, --rounds, --ids.
 */
export function loadFlags(d: LoadDefaults) {
  return {
    connections: { type: 'string', default: '50' },
    'duration-s': { type: 'string', default: String(d.durationS) },
    'warmup-s': { type: 'string', default: String(d.warmupS) },
    rounds: { type: 'string', default: String(d.rounds) },
    ids: { type: 'string', default: String(d.ids) },
  } as const;
}

/** The load flags' values, checked (a bad one names its flag). */
export interface LoadFlags {
  readonly connections: number;
  readonly seconds: number;
  readonly warmupS: number;
  readonly rounds: number;
  /** How many ids to sample from the file for the load. */
  readonly idCount: number;
}

/** Parses the values of `loadFlags`. */
export function parseLoadFlags(
  values: Readonly<Record<'connections' | 'duration-s' | 'warmup-s' | 'rounds' | 'ids', string>>,
): LoadFlags {
  return {
    connections: parsePositive('--connections', values.connections),
    seconds: parsePositive('--duration-s', values['duration-s']),
    warmupS: Number(values['warmup-s']),
    rounds: parsePositive('--rounds', values.rounds),
    idCount: parsePositive('--ids', values.ids),
  };
}

/** The data flags of the benchmarks that generate one file: --rows (`rows` by default) and --seed (DEFAULT_SEED). */
export function dataFlags(rows: number) {
  return {
    rows: { type: 'string', default: String(rows) },
    seed: { type: 'string', default: String(DEFAULT_SEED) },
  } as const;
}

/** Parses the values of `dataFlags` (the first count of --rows). */
export function parseDataFlags(values: Readonly<Record<'rows' | 'seed', string>>): {
  readonly rows: number;
  readonly seed: number;
} {
  const [rows] = parseCounts('--rows', values.rows);
  return { rows, seed: Number(values.seed) };
}
