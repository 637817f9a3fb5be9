/**
 * GET benchmark (docs/design.md §6, "GET throughput, one replica process, memory mode"): the replica's read path against
 * a bare node:http server answering a fixed body of the same size, with the same load generator in the same run.
 *   node --import tsx scripts/bench/get.ts [--rows 1000000] [--seed 42] [--threads 1] [--connections 50]
 *                                          [--duration-s 10] [--warmup-s 3] [--rounds 2] [--ids 100000]
 *                                          [--absent 0.1] [--cpu-prof DIR]
 *
 * Both servers run as `taskset -c 0 node --import tsx ...` (one core); wrk runs as `taskset -c 1 wrk` with a Lua
 * script that requests ids picked at random from a sample of existing ids. Servers are measured alternately
 * (bare, replica, bare, replica, ... `--rounds` times each, after a short warm-up of each) and each server's median
 * run is reported and judged (every figure the median over its runs; the best run's ratio is shown for reference). An extra run against the replica mixes `--absent`
 * of ids that do not exist (404s). `--cpu-prof DIR` runs both servers under `--cpu-prof` (DIR/replica, DIR/bare)
 * and prints where each one's CPU time went over all the runs.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { dataFlags, loadFlags, parseDataFlags, parseLoadFlags, parsePositive } from './lib/args.js';
import { printCpuProfile } from './lib/cpu-profile.js';
import { ensureCsv, sampleIds } from './lib/data.js';
import { log, machineNote, printJson, printTable, round, verdict } from './lib/report.js';
import { runBench, tempDir } from './lib/run.js';
import { ensureTool } from './lib/tools.js';
import { wrkRandomIdsScript } from './lib/wrk-script.js';
import {
  type LoadSettings,
  measuredReplica,
  median,
  medianRun,
  pinnedNode,
  SERVER_CPU,
  WRK_CPU,
  type WrkRun,
  wrk,
} from './wrk.js';

const GOAL_THROUGHPUT_RATIO = 0.9;
const GOAL_P99_RATIO = 1.5;

const ms = (us: number) => round(us / 1000, 2);

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(1_000_000),
        threads: { type: 'string', default: '1' },
        ...loadFlags({ durationS: 10, warmupS: 3, rounds: 2, ids: 100_000 }),
        absent: { type: 'string', default: '0.1' },
        'cpu-prof': { type: 'string' },
      },
    },
    headerUsage(import.meta.url),
  );
  const { rows, seed } = parseDataFlags(values);
  const { connections, seconds, warmupS, rounds, idCount } = parseLoadFlags(values);
  const load: LoadSettings = { threads: parsePositive('--threads', values.threads), connections };
  const absent = Number(values.absent);
  if (!(absent >= 0 && absent < 1)) throw new Error('--absent must be a fraction from 0 to under 1');
  const cpuProfDir = values['cpu-prof'];
  ensureTool('wrk');
  ensureTool('taskset', 'util-linux');

  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('get');

  const { replica, readyz } = await measuredReplica(
    csv,
    dir,
    cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(cpuProfDir, 'replica')}`],
  );

  const ids = await sampleIds(csv, idCount, rows);
  const sample = await fetch(`${replica.url}/promotions/${ids[0]}`);
  const body = await sample.text();
  if (sample.status !== 200) throw new Error(`GET of an existing id answered ${sample.status}: ${body}`);
  const presentIds = join(dir, 'ids.txt');
  await writeFile(presentIds, `${ids.join('\n')}\n`);
  const mixed = ids.map((id, i) => (i < Math.round(ids.length * absent) ? randomUUID() : id));
  const mixedIds = join(dir, 'ids-mixed.txt');
  await writeFile(mixedIds, `${mixed.join('\n')}\n`);
  const script = join(dir, 'present.lua');
  await writeFile(script, wrkRandomIdsScript(presentIds));
  const mixedScript = join(dir, 'mixed.lua');
  await writeFile(mixedScript, wrkRandomIdsScript(mixedIds));

  const bare = await pinnedNode(
    'scripts/bench/bare-server.ts',
    ['--port', '0', '--body', body],
    {},
    cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(cpuProfDir, 'bare')}`],
  );

  log(
    `replica ${replica.url} (version ${readyz.version}, ${readyz.rows} rows, mode ${readyz.mode}); bare ${bare.url}`,
  );
  if (warmupS > 0) {
    log(`warm-up: ${warmupS} s each`);
    await wrk('bare', bare, script, warmupS, load);
    await wrk('replica', replica, script, warmupS, load);
  }
  const bareRuns: WrkRun[] = [];
  const replicaRuns: WrkRun[] = [];
  for (let i = 0; i < rounds; i++) {
    const b = await wrk('bare', bare, script, seconds, load);
    log(`  bare    #${i + 1}: ${b.requestsPerS} req/s, p99 ${ms(b.latencyUs.p99)} ms`);
    bareRuns.push(b);
    const r = await wrk('replica', replica, script, seconds, load);
    log(`  replica #${i + 1}: ${r.requestsPerS} req/s, p99 ${ms(r.latencyUs.p99)} ms`);
    replicaRuns.push(r);
  }
  const mixedRun = await wrk(`replica, ${round(absent * 100)}% absent`, replica, mixedScript, seconds, load);
  log(`  replica with absent ids: ${mixedRun.requestsPerS} req/s, ${mixedRun.non2xx} non-2xx`);
  await bare.stop();
  await replica.stop();
  if (cpuProfDir !== undefined) {
    await printCpuProfile(join(cpuProfDir, 'replica'), 'replica');
    await printCpuProfile(join(cpuProfDir, 'bare'), 'bare');
    process.stdout.write(
      '\n(both servers ran under --cpu-prof: their figures below are lower than without)\n',
    );
  }

  const bare50 = medianRun(bareRuns);
  const replica50 = medianRun(replicaRuns);
  const bestOf = (runs: WrkRun[]) => Math.max(...runs.map((r) => r.requestsPerS));
  for (const r of [...bareRuns, ...replicaRuns]) {
    if (r.non2xx > 0 || r.socketErrors > 0)
      log(`warning: ${r.target} run had ${r.non2xx} non-2xx answers and ${r.socketErrors} socket errors`);
  }
  const throughputRatio = round(replica50.requestsPerS / bare50.requestsPerS, 3);
  const bestRatio = round(bestOf(replicaRuns) / bestOf(bareRuns), 3);
  // bare CPU per request over ours: the throughput ratio two saturated servers would show with a core each.
  const cpuRatio = round(
    median(bareRuns.map((r) => r.serverCpuUsPerRequest)) /
      median(replicaRuns.map((r) => r.serverCpuUsPerRequest)),
    3,
  );
  const p99Ratio = round(replica50.latencyUs.p99 / bare50.latencyUs.p99, 2);
  const mixedRatio = round(mixedRun.requestsPerS / bare50.requestsPerS, 3);

  process.stdout.write(
    `\nGET benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `wrk -t${load.threads} -c${load.connections} -d${seconds}s on core ${WRK_CPU}, server on core ${SERVER_CPU}, ` +
      `${ids.length} random existing ids of ${rows} rows, ${Buffer.byteLength(body)}-byte answers; ` +
      `median of ${rounds} alternating runs each (every figure the median over its runs)\n\n`,
  );
  printTable(
    [
      'server',
      'req/s',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'max ms',
      'non-2xx',
      'CPU us/req',
      'core share',
      'all runs req/s',
    ],
    [
      [bare50, bareRuns],
      [replica50, replicaRuns],
      [mixedRun, [mixedRun]],
    ].map(([b, all]) => {
      const run = b as WrkRun;
      return [
        run.target,
        run.requestsPerS,
        ms(run.latencyUs.p50),
        ms(run.latencyUs.p90),
        ms(run.latencyUs.p99),
        ms(run.latencyUs.max),
        run.non2xx,
        run.serverCpuUsPerRequest,
        run.serverCoreShare,
        (all as WrkRun[]).map((x) => x.requestsPerS).join(' / '),
      ];
    }),
  );
  process.stdout.write('\n');
  printTable(
    ['ratio ours/bare', 'value', 'goal', 'result'],
    [
      [
        'req/s',
        throughputRatio,
        `>= ${GOAL_THROUGHPUT_RATIO}`,
        verdict(throughputRatio >= GOAL_THROUGHPUT_RATIO),
      ],
      ['p99', p99Ratio, `<= ${GOAL_P99_RATIO}`, verdict(p99Ratio <= GOAL_P99_RATIO)],
      [`req/s, best runs (info)`, bestRatio, '-', '-'],
      [`bare CPU/req over ours, medians (info)`, cpuRatio, '-', '-'],
      [`req/s with ${round(absent * 100)}% absent (info)`, mixedRatio, '-', '-'],
    ],
  );
  printJson('get', {
    rows,
    seed,
    load: { ...load, durationS: seconds, warmupS, rounds, ids: ids.length, absent },
    bodyBytes: Buffer.byteLength(body),
    bare: { median: bare50, runs: bareRuns },
    replica: { median: replica50, runs: replicaRuns },
    replicaWithAbsent: mixedRun,
    ratios: {
      requestsPerS: throughputRatio,
      p99: p99Ratio,
      requestsPerSBest: bestRatio,
      cpuPerRequestBareOverOurs: cpuRatio,
      requestsPerSWithAbsent: mixedRatio,
    },
    goals: {
      throughput: verdict(throughputRatio >= GOAL_THROUGHPUT_RATIO),
      p99: verdict(p99Ratio <= GOAL_P99_RATIO),
    },
  });
}

await runBench(main);
