/**
 * Swap benchmark (docs/design.md §6, "GET latency during swaps of a 1M-row version under load" and "new version live on
 * every replica"): one replica under steady load from wrk while it is swapped to another 1M-row version every few
 * seconds, against the same replica under the same load without swaps, in the same run.
 *   node --import tsx scripts/bench/swap.ts [--rows 1000000] [--seed 42] [--connections 50] [--steady-s 15]
 *                                           [--swap-s 15] [--every-s 3] [--versions 4] [--ingests 3] [--warmup-s 3]
 *                                           [--rounds 3]
 *
 * A leader and replicas on 127.0.0.1 (notices only: SYNC_INTERVAL_MS is an hour). Replica A, the one under load,
 * runs alone on core 0 with scripts/bench/eld-probe.ts preloaded (its event-loop delay, every 250 ms); wrk, the
 * leader and this script share core 1. Every version holds the same 1M ids (the same CSV ingested again: a new
 * snapshot file, id and checksum), so every read is a 200 and wrk counts any other answer as an error.
 *   1. `--versions` versions are ingested before the measurements, replica A following each (no read load); A's CPU
 *      time (/proc/PID/stat) from the end of each ingest until it serves the version is shown for information: what
 *      taking a version costs the serving core.
 *   Steps 2 and 3 alternate `--rounds` times (default 3): this machine is shared, and a noisy minute should weigh
 *   on both kinds of window; the ratio is the median swap window's p99 over the median steady window's p99.
 *   2. steady: wrk for `--steady-s`, no swaps.
 *      In steps 2 and 3 the leader runs under SCHED_IDLE (`chrt --idle`): it gets core 1 whenever wrk waits, but
 *      never delays wrk's reading of replica A's answers, which wrk would count as A's latency.
 *   3. swaps: wrk for `--swap-s` while every `--every-s` another kept version is activated, in a cycle. A replica
 *      keeps two files, so with 3+ versions in the cycle every swap pulls, verifies, loads and swaps a 1M-row file.
 *      Only replica A runs in steps 1-3: replicas B and C would pull and verify on wrk's core and slow the load
 *      generator, not the replica measured.
 *   4. ingests: replicas B and C start (on core 1) and catch up; then wrk again while `--ingests` new versions are
 *      ingested one after the other; end of ingest until all three replicas serve it is the "live within 2 s"
 *      figure. The leader's ingest and B and C share core 1 with wrk here, so this window's latencies are shown for
 *      information only.
 * "CPU wait %" is the share of each window in which some task waited for a CPU (/proc/pressure/cpu): wrk, the
 * replica and the others already contend on two cores, so compare it across windows and runs; a high value in the
 * steady window means other work on the machine, and that run's figures say little.
 * Stops everything it started, and prints the table, the ratios against the goals and one final JSON line.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import type { RoleProcess } from '../lib/processes.js';
import { dataFlags, parseDataFlags, parsePositive } from './lib/args.js';
import { ensureCsv, sampleIds } from './lib/data.js';
import { type EldSample, onEldSamples, startProbedReplica } from './lib/eld.js';
import { pinProcess, procCpuSeconds } from './lib/proc.js';
import { log, machineNote, printJson, printTable, round, verdict } from './lib/report.js';
import {
  activateVersion,
  ingestFile,
  lastLines,
  leaderEnv,
  replicaEnv,
  startTracked,
  waitForRegistration,
  waitForVersion,
} from './lib/roles.js';
import { runBench, sleep, tempDir } from './lib/run.js';
import { ensureTool } from './lib/tools.js';
import { wrkRandomIdsScript } from './lib/wrk-script.js';
import { runWrkJson } from './wrk.js';

const REPLICA_CPU = 0;
const OTHERS_CPU = 1;
const GOAL_P99_RATIO = 2;
const GOAL_ELD_MS = 50;
const GOAL_LIVE_MS = 2000;

/** What one wrk run measured (latencies in microseconds). */
interface WrkRun {
  readonly requests: number;
  readonly durationS: number;
  readonly requestsPerS: number;
  readonly errors: number;
  readonly latencyUs: { p50: number; p99: number; max: number };
}

async function wrk(url: string, script: string, seconds: number, connections: number): Promise<WrkRun> {
  const j = await runWrkJson(OTHERS_CPU, { threads: 1, connections }, seconds, script, url);
  const durationS = j.duration_us / 1e6;
  return {
    requests: j.requests,
    durationS: round(durationS, 2),
    requestsPerS: round(j.requests / durationS),
    errors: j.non2xx + j.socket_errors,
    latencyUs: { p50: j.p50, p99: j.p99, max: j.max },
  };
}

/** One wrk window with what replica A's probe and the kernel said about it. */
interface Window extends WrkRun {
  readonly eventLoopDelayMaxMs: number;
  readonly cpuWaitPct: number;
  /** Swaps made in the window (swap windows only). */
  readonly count?: number;
}

/** The window whose p99 is the median of its kind (the lower middle one for an even count). */
function medianWindow(windows: readonly Window[]): Window {
  const sorted = [...windows].sort((x, y) => x.latencyUs.p99 - y.latencyUs.p99);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Milliseconds from `t0` until every replica (by URL) serves `version` (each polled as waitFor polls). */
async function allLive(replicas: readonly string[], version: number, t0: number): Promise<number> {
  const each = await Promise.all(
    replicas.map(async (url) => {
      await waitForVersion(url, version, { timeoutMs: 60_000 });
      return performance.now() - t0;
    }),
  );
  return round(Math.max(...each));
}

/** Ingests `csv` again (forced: the same file every time); when the upload's answer came, by performance.now(). */
async function ingest(leader: RoleProcess, csv: string): Promise<{ version: number; endedAt: number }> {
  const up = await ingestFile(leader, csv, true);
  return { version: up.body.version as number, endedAt: performance.now() };
}

function eldMax(samples: readonly EldSample[], from: number, to: number): number {
  // A sample at t covers the 250 ms before it.
  const inside = samples.filter((s) => s.t > from && s.t <= to + 250);
  return inside.length === 0 ? Number.NaN : round(Math.max(...inside.map((s) => s.maxMs)), 2);
}

const ms = (us: number) => round(us / 1000, 2);

/**
 * Sets the scheduling policy of every thread of `pid`: `idle` (SCHED_IDLE) runs it only when core 1 has nothing
 * else to run, `other` is the normal policy again.
 */
function policy(pid: number, which: 'idle' | 'other'): void {
  execFileSync('chrt', [`--${which}`, '-a', '-p', '0', String(pid)], { stdio: 'ignore' });
}

/** Microseconds some task spent waiting for a CPU so far (/proc/pressure/cpu), NaN where the kernel lacks PSI. */
async function cpuWaitUs(): Promise<number> {
  try {
    const m = /^some .*total=(\d+)/m.exec(await readFile('/proc/pressure/cpu', 'utf8'));
    return m === null ? Number.NaN : Number(m[1]);
  } catch {
    return Number.NaN;
  }
}

/** Share of a window in which some task waited for a CPU, in percent: how contended the machine was. */
async function contention<T>(run: () => Promise<T>): Promise<{ result: T; cpuWaitPct: number }> {
  const [w0, t0] = [await cpuWaitUs(), performance.now()];
  const result = await run();
  const [w1, t1] = [await cpuWaitUs(), performance.now()];
  return { result, cpuWaitPct: round(((w1 - w0) / 1000 / (t1 - t0)) * 100, 1) };
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(1_000_000),
        connections: { type: 'string', default: '50' },
        'steady-s': { type: 'string', default: '15' },
        'swap-s': { type: 'string', default: '15' },
        'every-s': { type: 'string', default: '3' },
        versions: { type: 'string', default: '4' },
        ingests: { type: 'string', default: '3' },
        'warmup-s': { type: 'string', default: '3' },
        rounds: { type: 'string', default: '3' },
      },
    },
    headerUsage(import.meta.url),
  );
  const { rows, seed } = parseDataFlags(values);
  const connections = parsePositive('--connections', values.connections);
  const steadyS = parsePositive('--steady-s', values['steady-s']);
  const swapS = parsePositive('--swap-s', values['swap-s']);
  const everyS = parsePositive('--every-s', values['every-s']);
  const versions = parsePositive('--versions', values.versions);
  const ingests = parsePositive('--ingests', values.ingests);
  const warmupS = Number(values['warmup-s']);
  const rounds = parsePositive('--rounds', values.rounds);
  if (versions < 3) throw new Error('--versions must be at least 3, so that every swap pulls a file');
  ensureTool('wrk');
  ensureTool('taskset', 'util-linux');
  ensureTool('chrt', 'util-linux');
  // This script (uploads, polls) stays off the replica's core too.
  await pinProcess(process.pid, OTHERS_CPU);

  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('swap');
  const ids = await sampleIds(csv, 100_000, rows);
  const idsPath = join(dir, 'ids.txt');
  await writeFile(idsPath, `${ids.join('\n')}\n`);
  const script = join(dir, 'get.lua');
  await writeFile(script, wrkRandomIdsScript(idsPath));

  const leader = await startTracked('leader', {
    env: leaderEnv(join(dir, 'leader'), { KEEP_VERSIONS: String(versions + ingests + 2) }),
  });
  await pinProcess(leader.child.pid!, OTHERS_CPU);
  const a = await startProbedReplica(REPLICA_CPU, join(dir, 'replica-a'), leader.url, {
    SERVE_MODE: 'memory',
  });
  const eld: EldSample[] = [];
  onEldSamples(a, (sample) => eld.push(sample));
  const replicas = [a.url];
  await waitForRegistration(leader.url, replicas);

  // 1. The versions the swaps cycle through, each live on every replica before the next ingest.
  const quietLive: number[] = [];
  const quietCpuMs: number[] = [];
  const ingestDurations: number[] = [];
  let current = 0;
  for (let i = 0; i < versions; i++) {
    const t = performance.now();
    const { version, endedAt } = await ingest(leader, csv);
    // Replica A does nothing else meanwhile: its CPU time from here to live is what taking a version costs it.
    const cpu0 = await procCpuSeconds(a.pid);
    const live = await allLive(replicas, version, endedAt).catch((err: Error) => {
      throw new Error(`${err.message}${lastLines(a.lines)}`);
    });
    const cpuMs = round(((await procCpuSeconds(a.pid)) - cpu0) * 1000);
    log(
      `version ${version}: ingest ${round(endedAt - t)} ms, then live on replica A in ${live} ms (no load), ` +
        `${cpuMs} ms of A's CPU`,
    );
    quietLive.push(live);
    quietCpuMs.push(cpuMs);
    ingestDurations.push(endedAt - t);
    current = version;
  }
  const cycle = Array.from({ length: versions }, (_, i) => current - versions + 1 + i);

  if (warmupS > 0) {
    log(`warm-up: wrk ${warmupS} s`);
    await wrk(a.url, script, warmupS, connections);
  }

  // Steps 2 and 3 measure replica A's answers, so the leader, which in production runs on a machine of its own,
  // must not take core 1 from the load generator: a leader sending a 42 MB file to A delays wrk's own reading of
  // A's answers, which wrk then counts as A's latency (measured apart: wrk's p99 rose 1.13-1.39x with the leader
  // sending to a sink and A doing nothing). Under SCHED_IDLE the leader gets core 1 whenever wrk waits.
  policy(leader.child.pid!, 'idle');

  // 2 and 3, alternating `--rounds` times, so that a noisy minute on this shared machine weighs on both.
  const steadyWindows: Window[] = [];
  const swapWindows: Window[] = [];
  const swapLive: number[] = [];
  let next = cycle.indexOf(current);
  for (let r = 1; r <= rounds; r++) {
    // 2. Steady state.
    log(`steady ${r}/${rounds}: wrk ${steadyS} s, no swaps`);
    const steadyFrom = Date.now();
    const steady = await contention(() => wrk(a.url, script, steadyS, connections));
    steadyWindows.push({
      ...steady.result,
      eventLoopDelayMaxMs: eldMax(eld, steadyFrom, Date.now()),
      cpuWaitPct: steady.cpuWaitPct,
    });

    // 3. Swaps under the same load.
    log(`swaps ${r}/${rounds}: wrk ${swapS} s, another version every ${everyS} s`);
    const swapFrom = Date.now();
    const swapRun = contention(() => wrk(a.url, script, swapS, connections));
    const swapEnd = performance.now() + swapS * 1000;
    let count = 0;
    await sleep(1000);
    while (performance.now() + everyS * 1000 < swapEnd) {
      const due = performance.now() + everyS * 1000;
      next = (next + 1) % cycle.length;
      const version = cycle[next];
      const t0 = performance.now();
      await activateVersion(leader.url, version);
      const live = await allLive(replicas, version, t0);
      swapLive.push(live);
      count++;
      log(`  swap to version ${version}: live on replica A ${live} ms after activate`);
      await sleep(Math.max(0, due - performance.now()));
    }
    const swaps = await swapRun;
    swapWindows.push({
      ...swaps.result,
      eventLoopDelayMaxMs: eldMax(eld, swapFrom, Date.now()),
      cpuWaitPct: swaps.cpuWaitPct,
      count,
    });
  }
  const steady = medianWindow(steadyWindows);
  const swaps = medianWindow(swapWindows);
  const swapEld = Math.max(...swapWindows.map((w) => w.eventLoopDelayMaxMs));

  policy(leader.child.pid!, 'other');

  // 4. New versions ingested under load: end of ingest until all three serve it.
  for (const name of ['B', 'C']) {
    const p = await startTracked('replica', {
      env: replicaEnv(join(dir, `replica-${name.toLowerCase()}`), leader.url, { SERVE_MODE: 'memory' }),
    });
    await pinProcess(p.child.pid!, OTHERS_CPU);
    replicas.push(p.url);
  }
  await waitForRegistration(leader.url, replicas);
  await allLive(replicas, cycle[next], performance.now());
  // Long enough for the ingests (timed in step 1, plus a margin: wrk takes CPU from the leader now).
  const perIngestMs = 1.5 * Math.max(...ingestDurations) + Math.max(...quietLive) + 1000;
  const ingestS = Math.ceil((ingests * perIngestMs) / 1000) + 2;
  log(`ingests: wrk ${ingestS} s while ${ingests} new versions are ingested`);
  const ingestFrom = Date.now();
  const ingestRun = contention(() => wrk(a.url, script, ingestS, connections));
  await sleep(1000);
  const loadedLive: number[] = [];
  for (let i = 0; i < ingests; i++) {
    const { version, endedAt } = await ingest(leader, csv);
    const live = await allLive(replicas, version, endedAt);
    loadedLive.push(live);
    log(`  version ${version}: live on all 3 replicas ${live} ms after its ingest ended`);
  }
  const { result: ingestWindow, cpuWaitPct: ingestWait } = await ingestRun;
  const ingestEld = eldMax(eld, ingestFrom, Date.now());

  const p99Ratio = round(swaps.latencyUs.p99 / steady.latencyUs.p99, 2);
  const maxLive = Math.max(...loadedLive);
  const errors = [...steadyWindows, ...swapWindows].reduce((n, w) => n + w.errors, 0);
  process.stdout.write(
    `\nSwap benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `${rows} rows per version; wrk -t1 -c${connections} on core ${OTHERS_CPU} against replica A alone on core ` +
      `${REPLICA_CPU} (memory mode), random existing ids; leader on core ${OTHERS_CPU}; replicas B and C ` +
      `(core ${OTHERS_CPU}) in the ingest window only; ` +
      `${rounds} rounds of a steady window and a swap window (${swapWindows[0].count} swaps in ${swapS} s, one ` +
      `every ${everyS} s, cycling through ${versions} versions); ratios from the median window of each kind\n\n`,
  );
  const row = (name: string, r: WrkRun, eldMs: number, wait: number) => [
    name,
    r.durationS,
    r.requestsPerS,
    ms(r.latencyUs.p50),
    ms(r.latencyUs.p99),
    ms(r.latencyUs.max),
    r.errors,
    eldMs,
    wait,
  ];
  printTable(
    ['window', 's', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'event-loop delay max ms', 'CPU wait %'],
    [
      ...steadyWindows.flatMap((w, i) => [
        row(`steady ${i + 1}${w === steady ? ' (median)' : ''}`, w, w.eventLoopDelayMaxMs, w.cpuWaitPct),
        row(
          `${swapWindows[i].count} swaps ${i + 1}${swapWindows[i] === swaps ? ' (median)' : ''}`,
          swapWindows[i],
          swapWindows[i].eventLoopDelayMaxMs,
          swapWindows[i].cpuWaitPct,
        ),
      ]),
      row(`during ${ingests} ingests (info)`, ingestWindow, ingestEld, ingestWait),
    ],
  );
  process.stdout.write('\n');
  printTable(
    ['new version live', 'each, ms', 'max ms'],
    [
      ['on A, after ingest ends, no load (info)', quietLive.join(' / '), Math.max(...quietLive)],
      ["  A's CPU ms to take it, no load (info)", quietCpuMs.join(' / '), Math.max(...quietCpuMs)],
      ['on A, after activate, A under load (info)', swapLive.join(' / '), Math.max(...swapLive)],
      ['on all 3, after ingest ends, A under load', loadedLive.join(' / '), maxLive],
    ],
  );
  process.stdout.write('\n');
  printTable(
    ['goal', 'value', 'goal', 'result'],
    [
      ['errors, steady + swaps', errors, '0', verdict(errors === 0)],
      [
        'p99 during swaps / steady p99, medians',
        p99Ratio,
        `<= ${GOAL_P99_RATIO}`,
        verdict(p99Ratio <= GOAL_P99_RATIO),
      ],
      [
        'event-loop delay max during swaps (all), ms',
        swapEld,
        `< ${GOAL_ELD_MS}`,
        verdict(swapEld < GOAL_ELD_MS),
      ],
      [
        'ingest end to live on all 3 (under load), max ms',
        maxLive,
        `<= ${GOAL_LIVE_MS}`,
        verdict(maxLive <= GOAL_LIVE_MS),
      ],
    ],
  );
  printJson('swap', {
    rows,
    seed,
    load: { connections, steadyS, swapS, everyS, versions, ingests, rounds },
    steady,
    swaps,
    steadyWindows,
    swapWindows,
    ingests: { ...ingestWindow, count: ingests, eventLoopDelayMaxMs: ingestEld, cpuWaitPct: ingestWait },
    liveMs: {
      replicaAAfterIngestNoLoad: quietLive,
      replicaACpuMsPerVersionNoLoad: quietCpuMs,
      replicaAAfterActivate: swapLive,
      allThreeAfterIngestUnderLoad: loadedLive,
    },
    ratios: { p99SwapsOverSteady: p99Ratio },
    goals: {
      errors: verdict(errors === 0),
      p99: verdict(p99Ratio <= GOAL_P99_RATIO),
      eventLoopDelay: verdict(swapEld < GOAL_ELD_MS),
      live: verdict(maxLive <= GOAL_LIVE_MS),
    },
  });
}

await runBench(main);
