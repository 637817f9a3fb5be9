/**
 * First ingest after a leader start against a warm one (issue 13: 1.49 s against 0.44 s for 200K rows).
 *   node --import tsx scripts/bench/first-ingest.ts [--rows 200000] [--rounds 3] [--settle-ms 5000] [--seed 42]
 *
 * Each round starts two fresh leader processes in turn (`node --import tsx leader/main.ts`, as ingest.ts does; the
 * order alternates between rounds): the baseline with `INGEST_WARM_UP_ROWS=0` (no warm-up, as before the warm-up
 * existed) and ours with the default warm-up. Each waits until the leader logs that its ingest path is warm, or
 * `--settle-ms` after it listens when it never does (a leader is up well before its first file arrives), then
 * times two `PUT /promotions` of the same generated file, from the first byte to the 201: the first ingest, then a
 * warm one. Figures: each run's first and warm time, and per mode the medians and the median of first / warm
 * (goal: ours near 1).
 */
import { join } from 'node:path';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { ROOT, TS_NODE_ARGS } from '../lib/processes.js';
import { uploadFile } from '../upload.js';
import { parsePositive } from './lib/args.js';
import { DEFAULT_SEED, ensureCsv, warmFile } from './lib/data.js';
import { log, machineNote, printJson, printTable, round } from './lib/report.js';
import { lastLines, leaderEnv, spawnListening, TOKENS } from './lib/roles.js';
import { runBench, sleep, tempDir } from './lib/run.js';

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

type Mode = 'baseline' | 'ours';

interface Run {
  readonly mode: Mode;
  readonly firstMs: number;
  readonly warmMs: number;
  readonly warmUpMs: number | null;
}

/** A fresh leader (`mode` baseline: no warm-up), its first ingest, then a warm one; milliseconds each. */
async function measure(csv: string, mode: Mode, settleMs: number): Promise<Run> {
  const dir = await tempDir('first-ingest');
  const extra: Record<string, string> = { INBOX_DIR: '' };
  if (mode === 'baseline') extra.INGEST_WARM_UP_ROWS = '0';
  const leader = await spawnListening(
    process.execPath,
    [...TS_NODE_ARGS, join(ROOT, 'leader', 'main.ts')],
    leaderEnv(join(dir, 'leader'), extra),
  );
  try {
    const deadline = performance.now() + settleMs;
    let warmUpMs: number | null = null;
    while (mode === 'ours' && performance.now() < deadline && warmUpMs === null) {
      const line = leader.lines.find((l) => l.includes('"msg":"ingest path warmed up"'));
      if (line !== undefined) warmUpMs = (JSON.parse(line) as { ms: number }).ms;
      else await sleep(50);
    }
    if (mode === 'baseline') await sleep(settleMs);
    const times: number[] = [];
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const { status, body } = await uploadFile(leader.url, TOKENS.leader, csv, true);
      if (status !== 201) {
        throw new Error(
          `the leader refused the file (${status}): ${JSON.stringify(body)}${lastLines(leader.lines)}`,
        );
      }
      times.push(performance.now() - t0);
    }
    return { mode, firstMs: round(times[0]), warmMs: round(times[1]), warmUpMs };
  } finally {
    await leader.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        rows: { type: 'string', default: '200000' },
        rounds: { type: 'string', default: '3' },
        'settle-ms': { type: 'string', default: '5000' },
        seed: { type: 'string', default: String(DEFAULT_SEED) },
      },
    },
    headerUsage(import.meta.url),
  );
  const rows = parsePositive('--rows', values.rows);
  const rounds = parsePositive('--rounds', values.rounds);
  const settleMs = Number(values['settle-ms']);
  const csv = await ensureCsv(rows, Number(values.seed));
  await warmFile(csv);
  const runs: Run[] = [];
  for (let r = 1; r <= rounds; r++) {
    const order: Mode[] = r % 2 === 1 ? ['baseline', 'ours'] : ['ours', 'baseline'];
    for (const mode of order) {
      log(`round ${r}/${rounds}, ${mode}: fresh leader, first ingest then a warm one ...`);
      const run = await measure(csv, mode, mode === 'ours' ? 4 * settleMs : settleMs);
      log(`  first ${run.firstMs} ms, warm ${run.warmMs} ms (warm-up: ${run.warmUpMs ?? 'none'} ms)`);
      runs.push(run);
    }
  }
  const summary = (mode: Mode) => {
    const of = runs.filter((r) => r.mode === mode);
    return {
      firstMs: median(of.map((r) => r.firstMs)),
      warmMs: median(of.map((r) => r.warmMs)),
      firstOverWarm: round(median(of.map((r) => r.firstMs / r.warmMs)), 2),
    };
  };
  const baseline = summary('baseline');
  const ours = summary('ours');
  process.stdout.write(
    `\nfirst-ingest benchmark, ${rows} rows, ${new Date().toISOString()}, ${machineNote()}\n\n`,
  );
  printTable(
    ['mode', 'first ms', 'warm ms', 'first/warm', 'warm-up ms'],
    [
      ...runs.map((r) => [r.mode, r.firstMs, r.warmMs, round(r.firstMs / r.warmMs, 2), r.warmUpMs ?? '-']),
      ['median baseline', baseline.firstMs, baseline.warmMs, baseline.firstOverWarm, ''],
      ['median ours', ours.firstMs, ours.warmMs, ours.firstOverWarm, ''],
    ],
  );
  process.stdout.write(
    `\nfirst ingest, ours over baseline: ${round(ours.firstMs / baseline.firstMs, 2)} (median times)\n`,
  );
  printJson('first-ingest', { rows, rounds, settleMs, runs, median: { baseline, ours } });
}

await runBench(main);
