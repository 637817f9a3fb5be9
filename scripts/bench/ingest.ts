/**
 * Ingest benchmark (docs/design.md §6, "ingest, CSV to current snapshot" and "leader memory while ingesting").
 *   node --import tsx scripts/bench/ingest.ts [--rows 1000000,10000000] [--seed 42] [--sqlite-timeout-s 1800]
 *                                             [--skip-sqlite] [--cpu-prof DIR] [--warmup-rows 10000]
 *                                             [--rounds 3]
 *
 * For each size, in one run and on the same cached file (read once first so all three read from the page cache),
 * `--rounds` rounds of the three in turn; each is judged on its median round by rows/s (the leader's peak RSS is
 * the largest of its rounds):
 *   ours      a fresh leader process, warmed up by one small ingest (`--warmup-rows`, 0 for none); the time from the
 *             start of `PUT /promotions` to its 201, which the leader sends after the version is committed (current);
 *             the leader's peak RSS (VmHWM) afterwards.
 *   csv-parse the same file through csv-parse with its fastest options, counting records, nothing else.
 *   sqlite    `sqlite3 .import` of the same file into a fresh `WITHOUT ROWID` table keyed by id.
 * BUILD_MEMORY_BYTES, when set, is passed to the leader. `--cpu-prof DIR` runs the leader under `--cpu-prof` and
 * prints where its CPU time went.
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { parse } from 'csv-parse';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { ROOT, TS_NODE_ARGS } from '../lib/processes.js';
import { uploadFile } from '../upload.js';
import { parseCounts, parsePositive } from './lib/args.js';
import { printCpuProfile } from './lib/cpu-profile.js';
import { DEFAULT_SEED, ensureCsv, fileBytes, warmFile } from './lib/data.js';
import { procMemory } from './lib/proc.js';
import { log, machineNote, mb, printJson, printTable, round, verdict } from './lib/report.js';
import { lastLines, leaderEnv, spawnListening, TOKENS } from './lib/roles.js';
import { runBench, tempDir } from './lib/run.js';
import { ensureTool, runTool } from './lib/tools.js';

const GOAL_ROWS_PER_S = 1_000_000;
const GOAL_RSS_BYTES = 512 * 1024 * 1024;
const DEFAULT_MAX_UPLOAD_BYTES = 1024 ** 3;
const RSS_SAMPLE_MS = 100;

/** Figures for one file size. */
interface SizeResult {
  rows: number;
  fileBytes: number;
  ours: {
    ms: number;
    rowsPerS: number;
    leaderReportMs: number;
    version: number;
    rowsInVersion: number;
    rssBeforeMb: number;
    peakRssMb: number;
    /** When the largest sampled VmRSS was seen, in seconds from the start of the upload. */
    peakSampledAtS: number;
  };
  csvParse: { ms: number; rowsPerS: number; rows: number };
  sqlite: { ms: number; rowsPerS: number; rows: number } | { skipped: string };
  /** Rows/s of every round, in order. */
  rounds: { ours: number[]; csvParse: number[]; sqlite: number[] };
  ratios: { oursOverSqlite: number | null; oursOverCsvParse: number };
  goals: { rowsPerS: 'PASS' | 'MISS'; fasterThanSqlite: 'PASS' | 'MISS' | 'n/a'; peakRss: 'PASS' | 'MISS' };
}

/**
 * Ingests `csv` through a fresh leader (`node --import tsx leader/main.ts`, with `--cpu-prof` when `cpuProfDir` is
 * given: node refuses that flag in NODE_OPTIONS); returns the end-to-end time and the leader's memory.
 */
async function measureOurs(
  csv: string,
  rows: number,
  bytes: number,
  cpuProfDir: string | undefined,
  warmupCsv: string | undefined,
) {
  const dir = await tempDir('ingest');
  const extra: Record<string, string> = {};
  if (bytes > DEFAULT_MAX_UPLOAD_BYTES) extra.MAX_UPLOAD_BYTES = String(bytes);
  const nodeArgs = cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`];
  const leader = await spawnListening(
    process.execPath,
    [...nodeArgs, ...TS_NODE_ARGS, join(ROOT, 'leader', 'main.ts')],
    leaderEnv(join(dir, 'leader'), extra),
  );
  try {
    if (warmupCsv !== undefined) {
      // A leader runs for days: its first ingest pays for worker start-up and JIT warm-up (about 1 s here), which
      // a small ingest first takes out of the measured one. Its memory is far below the measured ingest's peak.
      const w = await uploadFile(leader.url, TOKENS.leader, warmupCsv);
      if (w.status !== 201) {
        throw new Error(
          `the warm-up ingest was refused (${w.status}): ${JSON.stringify(w.body)}${lastLines(leader.lines)}`,
        );
      }
    }
    const before = await procMemory(leader.pid);
    const t0 = performance.now();
    // VmHWM gives the peak; sampling VmRSS says when in the ingest it happens (streaming or building).
    let sampledPeak = { rssBytes: 0, atMs: 0 };
    const sampler = setInterval(() => {
      procMemory(leader.pid).then(
        (m) => {
          if (m.rssBytes > sampledPeak.rssBytes)
            sampledPeak = { rssBytes: m.rssBytes, atMs: performance.now() - t0 };
        },
        () => undefined,
      );
    }, RSS_SAMPLE_MS);
    let answer: Awaited<ReturnType<typeof uploadFile>>;
    try {
      answer = await uploadFile(leader.url, TOKENS.leader, csv);
    } finally {
      clearInterval(sampler);
    }
    const { status, body } = answer;
    const ms = performance.now() - t0;
    const after = await procMemory(leader.pid);
    if (status !== 201)
      throw new Error(
        `the leader refused the file (${status}): ${JSON.stringify(body)}${lastLines(leader.lines)}`,
      );
    if (body.rows !== rows) log(`  note: the version has ${body.rows} rows, the file ${rows}`);
    return {
      ms: round(ms),
      rowsPerS: round(rows / (ms / 1000)),
      leaderReportMs: Number(body.durationMs),
      version: Number(body.version),
      rowsInVersion: Number(body.rows),
      rssBeforeMb: mb(before.rssBytes),
      peakRssMb: mb(after.hwmBytes),
      peakSampledAtS: round(sampledPeak.atMs / 1000, 1),
    };
  } finally {
    await leader.stop();
  }
}

/** csv-parse with the fastest options docs/design.md §6 lists, counting records and doing nothing else. */
async function measureCsvParse(csv: string) {
  const t0 = performance.now();
  const parser = parse({ delimiter: ',', record_delimiter: '\n', quote: false, encoding: 'latin1' });
  let rows = 0;
  parser.on('data', () => {
    rows++;
  });
  const source = createReadStream(csv);
  source.on('error', (err) => parser.destroy(err));
  source.pipe(parser);
  await finished(parser);
  const ms = performance.now() - t0;
  return { ms: round(ms), rowsPerS: round(rows / (ms / 1000)), rows };
}

/** `sqlite3 .import` into a fresh database with a table keyed by id; the row count is checked afterwards. */
async function measureSqlite(csv: string, timeoutMs: number) {
  const dir = await tempDir('sqlite');
  const db = join(dir, 'bench.db');
  const script = [
    'CREATE TABLE p(id TEXT PRIMARY KEY, price TEXT, expiration_date TEXT) WITHOUT ROWID;',
    '.mode csv',
    `.import ${csv} p`,
    '',
  ].join('\n');
  const r = await runTool('sqlite3', [db], { input: script, timeoutMs });
  if (r.code !== 0 || r.stderr.trim() !== '')
    throw new Error(`sqlite3 .import failed (${r.code}): ${r.stderr}`);
  const count = await runTool('sqlite3', [db, 'SELECT count(*) FROM p;'], { timeoutMs });
  const rows = Number(count.stdout.trim());
  return { ms: round(r.ms), rowsPerS: round(rows / (r.ms / 1000)), rows };
}

/** The run of median rows/s (the lower middle one of an even count). */
function medianRound<T extends { rowsPerS: number }>(runs: readonly T[]): T {
  return [...runs].sort((a, b) => a.rowsPerS - b.rowsPerS)[(runs.length - 1) >> 1];
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        rows: { type: 'string', default: '1000000,10000000' },
        seed: { type: 'string', default: String(DEFAULT_SEED) },
        'sqlite-timeout-s': { type: 'string', default: '1800' },
        'skip-sqlite': { type: 'boolean', default: false },
        'cpu-prof': { type: 'string' },
        'warmup-rows': { type: 'string', default: '10000' },
        rounds: { type: 'string', default: '3' },
      },
    },
    headerUsage(import.meta.url),
  );
  const sizes = parseCounts('--rows', values.rows);
  const seed = Number(values.seed);
  const sqliteTimeoutMs = parsePositive('--sqlite-timeout-s', values['sqlite-timeout-s']) * 1000;
  if (!values['skip-sqlite']) ensureTool('sqlite3');
  const warmupRows = Number(values['warmup-rows']);
  const rounds = parsePositive('--rounds', values.rounds);
  const warmupCsv = warmupRows > 0 ? await ensureCsv(warmupRows, seed + 1) : undefined;
  const results: SizeResult[] = [];
  for (const rows of sizes) {
    const csv = await ensureCsv(rows, seed);
    const bytes = await fileBytes(csv);
    await warmFile(csv);
    const oursRuns: Awaited<ReturnType<typeof measureOurs>>[] = [];
    const csvParseRuns: Awaited<ReturnType<typeof measureCsvParse>>[] = [];
    const sqliteRuns: Awaited<ReturnType<typeof measureSqlite>>[] = [];
    for (let n = 1; n <= rounds; n++) {
      log(`${rows} rows (${mb(bytes)} MB), round ${n} of ${rounds}: ours (fresh leader, warmed up) ...`);
      oursRuns.push(await measureOurs(csv, rows, bytes, values['cpu-prof'], warmupCsv));
      log(`  ${oursRuns[oursRuns.length - 1].ms} ms; csv-parse ...`);
      csvParseRuns.push(await measureCsvParse(csv));
      log(`  ${csvParseRuns[csvParseRuns.length - 1].ms} ms; sqlite3 .import ...`);
      if (!values['skip-sqlite']) sqliteRuns.push(await measureSqlite(csv, sqliteTimeoutMs));
      log(`  ${values['skip-sqlite'] ? 'skipped' : `${sqliteRuns[sqliteRuns.length - 1].ms} ms`}`);
    }
    // Judged on the median round; the memory figures (peak, when, before) all from the round that peaked highest.
    const peak = oursRuns.reduce((a, b) => (b.peakRssMb > a.peakRssMb ? b : a));
    const ours = {
      ...medianRound(oursRuns),
      rssBeforeMb: peak.rssBeforeMb,
      peakRssMb: peak.peakRssMb,
      peakSampledAtS: peak.peakSampledAtS,
    };
    const csvParse = medianRound(csvParseRuns);
    const sqlite = sqliteRuns.length === 0 ? { skipped: '--skip-sqlite' } : medianRound(sqliteRuns);
    const sqliteRate = 'rowsPerS' in sqlite ? sqlite.rowsPerS : null;
    results.push({
      rows,
      fileBytes: bytes,
      ours,
      csvParse,
      sqlite,
      rounds: {
        ours: oursRuns.map((r) => r.rowsPerS),
        csvParse: csvParseRuns.map((r) => r.rowsPerS),
        sqlite: sqliteRuns.map((r) => r.rowsPerS),
      },
      ratios: {
        oursOverSqlite: sqliteRate === null ? null : round(ours.rowsPerS / sqliteRate, 2),
        oursOverCsvParse: round(ours.rowsPerS / csvParse.rowsPerS, 2),
      },
      goals: {
        rowsPerS: verdict(ours.rowsPerS >= GOAL_ROWS_PER_S),
        fasterThanSqlite: sqliteRate === null ? 'n/a' : verdict(ours.rowsPerS > sqliteRate),
        peakRss: verdict(ours.peakRssMb * 1024 * 1024 < GOAL_RSS_BYTES),
      },
    });
    if (values['cpu-prof'] !== undefined) await printCpuProfile(values['cpu-prof'], 'leader');
  }

  process.stdout.write(
    `\ningest benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `median of ${rounds} rounds each (by rows/s); leader peak RSS: the largest of its rounds\n\n`,
  );
  printTable(
    [
      'rows',
      'ours s',
      'ours rows/s',
      'csv-parse rows/s',
      'sqlite rows/s',
      'ours/sqlite',
      'ours/csv-parse',
      'leader peak RSS MB',
      'peak at s',
      'ours, every round',
    ],
    results.map((r) => [
      r.rows,
      round(r.ours.ms / 1000, 2),
      r.ours.rowsPerS,
      r.csvParse.rowsPerS,
      'rowsPerS' in r.sqlite ? r.sqlite.rowsPerS : 'skipped',
      r.ratios.oursOverSqlite ?? 'n/a',
      r.ratios.oursOverCsvParse,
      r.ours.peakRssMb,
      r.ours.peakSampledAtS,
      r.rounds.ours.join(' / '),
    ]),
  );
  process.stdout.write('\ngoals (docs/design.md §6; the throughput goal is set on 10M rows):\n');
  printTable(
    ['rows', '>= 1M rows/s', 'faster than sqlite', 'peak RSS < 512 MB'],
    results.map((r) => [r.rows, r.goals.rowsPerS, r.goals.fasterThanSqlite, r.goals.peakRss]),
  );
  printJson('ingest', {
    buildMemoryBytes: process.env.BUILD_MEMORY_BYTES ?? null,
    warmupRows,
    rounds,
    seed,
    results,
  });
}

await runBench(main);
