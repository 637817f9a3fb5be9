/**
 * The data the benchmarks read: generated CSVs cached under data/bench/ (gitignored), read once to warm the page
 * cache, and samples of their ids.
 *
 * Concurrency: one benchmark per process; a CSV is generated under a temporary name and renamed, so a file with the
 * final name is always complete even when two benchmarks race for it.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { generateFile } from '../../generate.js';
import { ROOT } from '../../lib/processes.js';
import { log } from './report.js';
import { onCleanup } from './run.js';

/** Where generated CSVs are cached (gitignored through data/). */
export const BENCH_DATA_DIR = join(ROOT, 'data', 'bench');
/** The seed of every generated benchmark file unless `--seed` says otherwise. */
export const DEFAULT_SEED = 42;
const MiB = 1024 * 1024;

/**
 * The path of a generated CSV of `rows` rows (no duplicates) for `seed`, generating it once under data/bench/.
 * The file is written under a temporary name and renamed, so a file with the final name is always complete.
 */
export async function ensureCsv(rows: number, seed = DEFAULT_SEED): Promise<string> {
  await mkdir(BENCH_DATA_DIR, { recursive: true });
  const path = join(BENCH_DATA_DIR, `promotions-${rows}-seed${seed}.csv`);
  try {
    if ((await stat(path)).size > 0) return path;
  } catch {
    // Not generated yet.
  }
  const tmp = `${path}.tmp-${process.pid}`;
  onCleanup(() => rm(tmp, { force: true }));
  const t0 = performance.now();
  log(`generating ${rows} rows (seed ${seed}) into ${path} ...`);
  await generateFile(tmp, { rows, seed });
  await rename(tmp, path);
  log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return path;
}

/** Reads a file through once so that every contender in a comparison reads it from the page cache. */
export async function warmFile(path: string): Promise<void> {
  for await (const _ of createReadStream(path, { highWaterMark: 4 * MiB })) {
    // Only the reading matters.
  }
}

/**
 * Every `step`-th id of a generated CSV (ids are random UUIDs, so an even spacing is a random sample over the
 * whole key space), at most `count` of them.
 */
export async function sampleIds(csvPath: string, count: number, totalRows: number): Promise<string[]> {
  const step = Math.max(1, Math.floor(totalRows / count));
  const ids: string[] = [];
  let line = 0;
  const rl = createInterface({
    input: createReadStream(csvPath, { encoding: 'latin1' }),
    crlfDelay: Infinity,
  });
  for await (const text of rl) {
    if (line++ % step === 0) {
      ids.push(text.slice(0, text.indexOf(',')));
      if (ids.length >= count) {
        rl.close();
        break;
      }
    }
  }
  return ids;
}

/** The size of a file in bytes. */
export async function fileBytes(path: string): Promise<number> {
  const h = await open(path, 'r');
  try {
    return (await h.stat()).size;
  } finally {
    await h.close();
  }
}
