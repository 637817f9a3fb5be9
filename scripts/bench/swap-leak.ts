/**
 * Swap leak benchmark (issue 5, "no leak"): a replica swapped back and forth between two 1M-row versions `--swaps`
 * times; its RSS after the last swap must stay within 20% of its RSS after the first. Open file descriptors are
 * counted too: in disk mode each swap opens the new file, and the old one must be closed once its reads are done.
 *   node --import tsx scripts/bench/swap-leak.ts [--rows 1000000] [--seed 42] [--swaps 50] [--settle-ms 500]
 *                                                [--modes memory,disk] [--rollback BIG,SMALL]
 *
 * For each mode: a leader on 127.0.0.1 ingests the same CSV twice (versions 1 and 2: the same ids, two snapshot
 * files); a replica follows; then version 1 and version 2 are activated alternately. After each swap (the replica's
 * /readyz names the version) and a settle time, a read is checked and VmRSS and the count of /proc/PID/fd sampled.
 * The replica keeps both files, so after the first two swaps every swap is a local verify + load + swap.
 *
 * `--rollback 10000000,200000` measures instead the memory after a rollback (issue 13): versions of SMALL then BIG
 * rows, a memory-mode replica serving BIG, then a rollback to SMALL; the replica's RSS is sampled every second for
 * ROLLBACK_WATCH_S seconds while it serves reads, then a fresh replica loads SMALL alone and is sampled the same
 * way. Goal: within ROLLBACK_GOAL_S seconds of the swap, the rolled-back replica's RSS is within 1.2x of the fresh
 * one's.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { dataFlags, parseCounts, parseDataFlags, parsePositive } from './lib/args.js';
import { ensureCsv, sampleIds } from './lib/data.js';
import { procMemory } from './lib/proc.js';
import { log, machineNote, mb, printJson, printTable, round, verdict } from './lib/report.js';
import {
  activateVersion,
  ingestFile,
  leaderEnv,
  replicaEnv,
  startTracked,
  waitForVersion,
} from './lib/roles.js';
import { runBench, sleep, tempDir } from './lib/run.js';

const GOAL_RSS_GROWTH = 0.2;
const ROLLBACK_WATCH_S = 15;
const ROLLBACK_GOAL_S = 10;
const ROLLBACK_GOAL_RATIO = 1.2;
/** Sockets come and go: a leak of one file per swap would show as dozens more. */
const FD_SLACK = 2;

interface ModeResult {
  mode: string;
  swaps: number;
  rssAfterLoadMb: number;
  rssAfterFirstMb: number;
  rssAfterLastMb: number;
  rssMinMb: number;
  rssMaxMb: number;
  peakRssMb: number;
  growth: number;
  fdsAfterFirst: number;
  fdsAfterLast: number;
  /** RSS after every tenth swap, MB. */
  series: number[];
  swapMsMedian: number;
}

async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

async function runMode(mode: string, csv: string, ids: string[], swaps: number, settleMs: number) {
  const dir = await tempDir(`swap-leak-${mode}`);
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader')) });
  for (let i = 0; i < 2; i++) await ingestFile(leader, csv, true);
  const replica = await startTracked('replica', {
    env: replicaEnv(join(dir, 'replica'), leader.url, { SERVE_MODE: mode }),
  });
  const pid = replica.child.pid!;
  await waitForVersion(replica.url, 2, { mode });
  await sleep(settleMs);
  const afterLoad = await procMemory(pid);
  const rss: number[] = [];
  const fds: number[] = [];
  const swapMs: number[] = [];
  for (let i = 1; i <= swaps; i++) {
    const version = i % 2 === 1 ? 1 : 2;
    const t0 = performance.now();
    await activateVersion(leader.url, version);
    await waitForVersion(replica.url, version, { mode, timeoutMs: 60_000 });
    swapMs.push(performance.now() - t0);
    await sleep(settleMs);
    const read = await fetch(`${replica.url}/promotions/${ids[i % ids.length]}`);
    await read.text();
    if (read.status !== 200 || read.headers.get('x-snapshot-version') !== String(version)) {
      throw new Error(
        `swap ${i}: a read answered ${read.status} from version ${read.headers.get('x-snapshot-version')}`,
      );
    }
    rss.push((await procMemory(pid)).rssBytes);
    fds.push(await fdCount(pid));
    if (i % 10 === 0 || i === 1) log(`  ${mode}: swap ${i}: RSS ${mb(rss[i - 1])} MB, ${fds[i - 1]} fds`);
  }
  const peak = (await procMemory(pid)).hwmBytes;
  await replica.stop();
  await leader.stop();
  swapMs.sort((x, y) => x - y);
  const result: ModeResult = {
    mode,
    swaps,
    rssAfterLoadMb: mb(afterLoad.rssBytes),
    rssAfterFirstMb: mb(rss[0]),
    rssAfterLastMb: mb(rss[rss.length - 1]),
    rssMinMb: mb(Math.min(...rss)),
    rssMaxMb: mb(Math.max(...rss)),
    peakRssMb: mb(peak),
    growth: round(rss[rss.length - 1] / rss[0] - 1, 3),
    fdsAfterFirst: fds[0],
    fdsAfterLast: fds[fds.length - 1],
    series: rss.filter((_, i) => (i + 1) % 10 === 0).map(mb),
    swapMsMedian: round(swapMs[swapMs.length >> 1]),
  };
  return result;
}

/** Reads `ids` in turn for `seconds`, sampling `pid`'s RSS once a second (MB, one sample per second). */
async function watchRss(url: string, pid: number, ids: string[], seconds: number): Promise<number[]> {
  const samples: number[] = [];
  const t0 = performance.now();
  let i = 0;
  for (let s = 1; s <= seconds; s++) {
    while (performance.now() - t0 < s * 1000) {
      const res = await fetch(`${url}/promotions/${ids[i++ % ids.length]}`);
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`a read answered ${res.status}`);
    }
    samples.push(mb((await procMemory(pid)).rssBytes));
  }
  return samples;
}

/** The rollback check (see the module comment). */
async function rollback(big: number, small: number, seed: number): Promise<void> {
  const dir = await tempDir('swap-leak-rollback');
  const smallCsv = await ensureCsv(small, seed);
  const bigCsv = await ensureCsv(big, seed);
  const ids = await sampleIds(smallCsv, 1000, small);
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader')) });
  for (const csv of [smallCsv, bigCsv]) await ingestFile(leader, csv);
  const a = await startTracked('replica', {
    env: replicaEnv(join(dir, 'a'), leader.url, { SERVE_MODE: 'memory' }),
    timeoutMs: 5 * 60_000,
  });
  await waitForVersion(a.url, 2, { timeoutMs: 10 * 60_000 });
  const beforeMb = mb((await procMemory(a.child.pid!)).rssBytes);
  log(`rollback: serving ${big} rows at ${beforeMb} MB RSS; activating the ${small}-row version`);
  await activateVersion(leader.url, 1);
  await waitForVersion(a.url, 1, { timeoutMs: 60_000 });
  const after = await watchRss(a.url, a.child.pid!, ids, ROLLBACK_WATCH_S);
  log(`rollback: RSS each second after the swap, MB: ${after.join(' / ')}`);
  await a.stop();
  const b = await startTracked('replica', {
    env: replicaEnv(join(dir, 'b'), leader.url, { SERVE_MODE: 'memory' }),
    // A loaded machine can take long to start a process.
    timeoutMs: 5 * 60_000,
  });
  await waitForVersion(b.url, 1, { timeoutMs: 60_000 });
  const fresh = await watchRss(b.url, b.child.pid!, ids, ROLLBACK_WATCH_S);
  await b.stop();
  await leader.stop();
  const freshMb = fresh[ROLLBACK_GOAL_S - 1];
  const atGoal = after[ROLLBACK_GOAL_S - 1];
  const firstWithin = after.findIndex((x) => x <= ROLLBACK_GOAL_RATIO * freshMb);
  const ratio = round(atGoal / freshMb, 2);
  process.stdout.write(
    `\nRollback memory, ${new Date().toISOString()}, ${machineNote()}\n` +
      `memory mode, ${big} rows then a rollback to ${small} rows; RSS sampled every second while serving reads\n\n`,
  );
  printTable(
    ['replica', 'RSS before MB', ...after.map((_, i) => `${i + 1} s`)],
    [
      ['rolled back', beforeMb, ...after],
      ['fresh', '-', ...fresh],
    ],
  );
  process.stdout.write(
    `\nat ${ROLLBACK_GOAL_S} s: ${atGoal} MB against a fresh replica's ${freshMb} MB, ratio ${ratio} ` +
      `(goal <= ${ROLLBACK_GOAL_RATIO}: ${verdict(ratio <= ROLLBACK_GOAL_RATIO)}); within 1.2x from ` +
      `${firstWithin === -1 ? 'never' : `${firstWithin + 1} s`}\n`,
  );
  printJson('swap-leak-rollback', {
    big,
    small,
    seed,
    beforeMb,
    rolledBackMb: after,
    freshMb: fresh,
    ratioAtGoal: ratio,
    withinFromS: firstWithin === -1 ? null : firstWithin + 1,
    goal: verdict(ratio <= ROLLBACK_GOAL_RATIO),
  });
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(1_000_000),
        swaps: { type: 'string', default: '50' },
        'settle-ms': { type: 'string', default: '500' },
        modes: { type: 'string', default: 'memory,disk' },
        rollback: { type: 'string' },
      },
    },
    headerUsage(import.meta.url),
  );
  if (values.rollback !== undefined) {
    const [big, small] = parseCounts('--rollback', values.rollback);
    if (small === undefined || small >= big)
      throw new Error('--rollback takes BIG,SMALL row counts, BIG > SMALL');
    await rollback(big, small, Number(values.seed));
    return;
  }
  const { rows, seed } = parseDataFlags(values);
  const swaps = parsePositive('--swaps', values.swaps);
  const settleMs = Number(values['settle-ms']);
  const modes = values.modes.split(',').map((m) => m.trim());
  for (const m of modes) if (m !== 'memory' && m !== 'disk') throw new Error(`--modes: unknown mode "${m}"`);

  const csv = await ensureCsv(rows, seed);
  const ids = await sampleIds(csv, 1000, rows);
  const results: ModeResult[] = [];
  for (const mode of modes) {
    log(`${mode} mode: ${swaps} swaps between two ${rows}-row versions`);
    results.push(await runMode(mode, csv, ids, swaps, settleMs));
  }

  process.stdout.write(
    `\nSwap leak benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `${rows} rows per version, ${swaps} swaps (versions 1 and 2 alternately), RSS sampled ${settleMs} ms after ` +
      'each swap\n\n',
  );
  printTable(
    [
      'mode',
      'RSS loaded MB',
      'after swap 1',
      `after swap ${swaps}`,
      'min',
      'max',
      'peak (HWM)',
      'growth',
      'fds 1st/last',
      'swap ms (median)',
      'goal',
      'result',
    ],
    results.map((r) => [
      r.mode,
      r.rssAfterLoadMb,
      r.rssAfterFirstMb,
      r.rssAfterLastMb,
      r.rssMinMb,
      r.rssMaxMb,
      r.peakRssMb,
      `${round(r.growth * 100, 1)}%`,
      `${r.fdsAfterFirst}/${r.fdsAfterLast}`,
      r.swapMsMedian,
      `<= ${GOAL_RSS_GROWTH * 100}%, fds flat`,
      verdict(r.growth <= GOAL_RSS_GROWTH && r.fdsAfterLast <= r.fdsAfterFirst + FD_SLACK),
    ]),
  );
  process.stdout.write('\nRSS after every 10th swap, MB:\n');
  for (const r of results) process.stdout.write(`  ${r.mode}: ${r.series.join(' / ')}\n`);
  printJson('swap-leak', {
    rows,
    seed,
    swaps,
    settleMs,
    results,
    goals: Object.fromEntries(
      results.map((r) => [
        r.mode,
        verdict(r.growth <= GOAL_RSS_GROWTH && r.fdsAfterLast <= r.fdsAfterFirst + FD_SLACK),
      ]),
    ),
  });
}

await runBench(main);
