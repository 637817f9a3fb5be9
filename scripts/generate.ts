/**
 * Generates a partner-style CSV: `id,price,expiration_date` rows, no header, deterministic for a seed.
 *   node --import tsx scripts/generate.ts --rows 100000 --seed 42 --out data/sample.csv [--duplicates 0.01]
 * Without --out it writes to stdout.
 */
import { createWriteStream, statSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { headerUsage, parseCommandLine } from './lib/cli.js';

export interface GenerateOptions {
  readonly rows: number;
  readonly seed: number;
  /** Fraction of rows that repeat an earlier id (with new values); the last one wins on ingest. */
  readonly duplicates?: number;
}

/** A small, fast, seedable PRNG (mulberry32) giving 32-bit words: the same seed gives the same file everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);
const hex8 = (n: number) => n.toString(16).padStart(8, '0');

/** A version-4 UUID from four random words. */
export function uuid(next: () => number): string {
  const a = hex8(next());
  const b = hex8(((next() & 0xffff0fff) | 0x4000) >>> 0);
  const c = hex8(((next() & 0x3fffffff) | 0x80000000) >>> 0);
  const d = hex8(next());
  return `${a}-${b.slice(0, 4)}-${b.slice(4)}-${c.slice(0, 4)}-${c.slice(4)}${d}`;
}

/** The rows of a generated file, as CSV lines without their line ends. */
export function* generateLines(opts: GenerateOptions): Generator<string> {
  const next = mulberry32(opts.seed);
  const rand = () => next() / 4294967296;
  const recent: string[] = [];
  for (let i = 0; i < opts.rows; i++) {
    let id: string;
    if (opts.duplicates && recent.length > 0 && rand() < opts.duplicates) {
      id = recent[Math.floor(rand() * recent.length)];
    } else {
      id = uuid(next);
      if (recent.length < 1000) recent.push(id);
      else recent[Math.floor(rand() * 1000)] = id;
    }
    const price = (rand() * 100).toFixed(6);
    // Dates in 2018, with the zone of the season as the partner writes them.
    const month = 1 + Math.floor(rand() * 12);
    const day = 1 + Math.floor(rand() * 28);
    const summer = month >= 4 && month <= 10;
    const date = `2018-${pad2(month)}-${pad2(day)} ${pad2(Math.floor(rand() * 24))}:${pad2(Math.floor(rand() * 60))}:${pad2(
      Math.floor(rand() * 60),
    )} ${summer ? '+0200 CEST' : '+0100 CET'}`;
    yield `${id},${price},${date}`;
  }
}

/** Writes a generated file to `out`, honouring backpressure; resolves when it is flushed. */
export async function writeGenerated(out: Writable, opts: GenerateOptions): Promise<void> {
  let batch: string[] = [];
  const flush = async () => {
    const ok = out.write(`${batch.join('\n')}\n`);
    batch = [];
    if (!ok) await new Promise((r) => out.once('drain', r));
  };
  for (const line of generateLines(opts)) {
    batch.push(line);
    if (batch.length === 8192) await flush();
  }
  if (batch.length > 0) await flush();
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

/** Generates a file at `path`. */
export function generateFile(path: string, opts: GenerateOptions): Promise<void> {
  return writeGenerated(createWriteStream(path), opts);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseCommandLine(
    {
      options: {
        rows: { type: 'string', default: '100000' },
        seed: { type: 'string', default: '42' },
        duplicates: { type: 'string', default: '0' },
        out: { type: 'string' },
      },
    },
    headerUsage(import.meta.url),
  );
  const opts = {
    rows: Number(values.rows),
    seed: Number(values.seed),
    duplicates: Number(values.duplicates),
  };
  if (!Number.isSafeInteger(opts.rows) || opts.rows < 0) throw new Error('--rows must be a whole number');
  const started = performance.now();
  await (values.out ? generateFile(values.out, opts) : writeGenerated(process.stdout, opts));
  // On stderr, so that the CSV on stdout stays clean.
  const where = values.out ? `${values.out} (${(statSync(values.out).size / 1e6).toFixed(1)} MB)` : 'stdout';
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`generate: wrote ${opts.rows} rows (seed ${opts.seed}) to ${where} in ${seconds} s\n`);
}
