/**
 * Disk-mode benchmark (docs/design.md §6, "GET throughput, disk mode, file in page cache"; issue 13): the same snapshot
 * served by a memory-mode replica and a disk-mode replica, measured alternately in the same run.
 *   node --import tsx scripts/bench/disk.ts [--rows 10000000] [--seed 42] [--ids 1000000] [--connections 50]
 *                                           [--duration-s 10] [--warmup-s 3] [--rounds 2] [--zipf 0.99]
 *                                           [--cache-warm-s 300] [--cold-s 10] [--disk-env NAME=VALUE,...]
 *                                           [--workloads uniform,zipf]
 *
 * A leader builds the version; three replicas load it, each `taskset -c 0`: SERVE_MODE=memory, SERVE_MODE=disk
 * (its defaults, plus `--disk-env`), and the same with DISK_CACHE_BYTES=0 (disk mode when its cache cannot help:
 * the figure the uniform goal is judged on, since uniform keys over a sample smaller than the cache would all end
 * up cached), each with scripts/bench/eld-probe.ts preloaded to report its event-loop delay; and, probed and
 * pinned the same way, a bare node:http server answering one fixed body (bare-server.ts): its delay under the same
 * load is the floor the event-loop delay goal is read against (a server that does no lookup at all). The leader
 * then stops. wrk (`taskset -c 1`) then requests `--ids` existing ids sampled evenly from the file: `uniform` picks
 * one at random per request; `zipf` draws its rank from a Zipfian distribution of exponent `--zipf` (YCSB's
 * generator, Gray et al.), so a few ids take most requests.
 *
 * For each workload: a warm-up of each replica (`--warmup-s`), then the replica with the record cache served until
 * its hit ratio settles (10-second slices until one gains less than 0.2 points, at most `--cache-warm-s`: the
 * cache's steady state, not its first minute), then memory mode, the bare server and both disk replicas in turn,
 * `--rounds` times; each replica's median run (every figure the median over its runs) is judged, the best runs'
 * ratio shown beside it. Disk mode's cache hit ratio and positional reads per lookup come from its /metrics, around
 * its runs. Then `--cold-s` seconds of uniform reads (the replica without cache) with the page cache dropped
 * (`echo 1 > /proc/sys/vm/drop_caches`, root only) once a second while wrk runs, so that most reads go to the disk;
 * with the zipf workload, as long again of Zipfian reads on each disk replica the same way (the record cache warm
 * from the runs before: steady state), which shows what the hot-record cache is for. RSS of the replicas at the end.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { dataFlags, loadFlags, parseDataFlags, parseLoadFlags } from './lib/args.js';
import { ensureCsv, sampleIds } from './lib/data.js';
import { onEldSamples, startProbed, startProbedReplica } from './lib/eld.js';
import { procMemory } from './lib/proc.js';
import { log, machineNote, mb, printJson, printTable, round, verdict } from './lib/report.js';
import { ingestFile, type ListeningProcess, leaderEnv, startTracked, waitForVersion } from './lib/roles.js';
import { runBench, tempDir } from './lib/run.js';
import { ensureTool } from './lib/tools.js';
import { wrkRandomIdsScript } from './lib/wrk-script.js';
import { type LoadSettings, median, medianRun, SERVER_CPU, type WrkRun, wrk } from './wrk.js';

const GOAL_UNIFORM = 0.8;
const GOAL_ZIPF = 0.9;
const GOAL_P99 = 1.5;
const GOAL_ELD_MS = 10;
const GOAL_READS_PER_LOOKUP = 1.2;
/** Seconds of one slice of the cache warm-up, and the hit-ratio gain per slice below which the cache has settled. */
const CACHE_SLICE_S = 10;
const CACHE_SETTLED_GAIN = 0.002;
/** The round number of the cache warm-up's first slice (its seed: far from the measured rounds'). */
const CACHE_WARM_ROUND = 1000;
const DROP_CACHES = '/proc/sys/vm/drop_caches';

/**
 * lib.ts's uniform script with another seed: each round draws its own sequence (memory and disk the same one), so
 * a disk replica's cache is not handed the ids of the runs before.
 */
function wrkUniformScript(idsPath: string, seed: number): string {
  return wrkRandomIdsScript(idsPath).replace('math.randomseed(42)', `math.randomseed(${seed})`);
}

/** A wrk script drawing ranks from a Zipfian distribution over the ids file (YCSB's ZipfianGenerator). */
function wrkZipfScript(idsPath: string, theta: number, seed: number): string {
  return `
local ids_path = ${JSON.stringify(idsPath)}
local theta = ${theta}
local reqs = {}
local n = 0
local zetan, alpha, eta, half

function init(args)
  for line in io.lines(ids_path) do
    n = n + 1
    reqs[n] = wrk.format("GET", "/promotions/" .. line)
  end
  zetan = 0
  for i = 1, n do zetan = zetan + 1 / (i ^ theta) end
  local zeta2 = 1 + 1 / (2 ^ theta)
  alpha = 1 / (1 - theta)
  eta = (1 - (2 / n) ^ (1 - theta)) / (1 - zeta2 / zetan)
  half = 1 + 0.5 ^ theta
  math.randomseed(${seed})
end

function request()
  local u = math.random()
  local uz = u * zetan
  local rank
  if uz < 1 then rank = 0
  elseif uz < half then rank = 1
  else rank = math.floor(n * ((eta * u - eta + 1) ^ alpha)) end
  if rank >= n then rank = n - 1 end
  return reqs[rank + 1]
end
${wrkRandomIdsScript(idsPath).slice(wrkRandomIdsScript(idsPath).indexOf('function done'))}`;
}

/**
 * A run of a server without disk reads (memory mode, the bare node:http server), with its event-loop delay: the
 * machine's share of the disk figure.
 */
async function plainRun(
  name: string,
  p: ListeningProcess,
  script: string,
  seconds: number,
  load: LoadSettings,
): Promise<DiskRun> {
  const { result, maxMs } = await eldDuring(p, () => wrk(name, p, script, seconds, load));
  return { ...result, eldMaxMs: maxMs, cacheHitRatio: 0, readsPerLookup: 0 };
}

/** The worst event-loop delay the probe reported while `run` ran. */
async function eldDuring<T>(
  p: ListeningProcess,
  run: () => Promise<T>,
): Promise<{ result: T; maxMs: number }> {
  let maxMs = 0;
  const stop = onEldSamples(p, (sample) => {
    maxMs = Math.max(maxMs, sample.maxMs);
  });
  try {
    const result = await run();
    return { result, maxMs };
  } finally {
    stop();
  }
}

/** The disk replica's counters (promotions_disk_*_total) from /metrics. */
async function diskCounters(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^promotions_disk_(\w+)_total\{[^}]*\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/**
 * Serves CACHE_SLICE_S-second slices of the workload to a disk replica with a record cache until its hit ratio settles
 * (a slice gains less than CACHE_SETTLED_GAIN on the one before) or `capS` seconds have passed, so that the runs
 * judge the cache in its steady state, as it is after minutes of serving one version, rather than a cache filling
 * from empty during them. Each slice draws its own keys (`scriptOf(slice)`: a script seeded for it): slices that
 * replayed one sequence of keys would find them all cached and report a hit ratio of 1 that no new key sees.
 * Returns each slice's hit ratio.
 */
async function warmCache(
  p: ListeningProcess,
  scriptOf: (slice: number) => Promise<string>,
  capS: number,
  load: LoadSettings,
): Promise<number[]> {
  const ratios: number[] = [];
  for (let spent = 0; spent + CACHE_SLICE_S <= capS; spent += CACHE_SLICE_S) {
    const script = await scriptOf(ratios.length);
    const { cacheHitRatio } = await diskRun(p, script, CACHE_SLICE_S, load);
    const gain = cacheHitRatio - (ratios.at(-1) ?? 0);
    ratios.push(cacheHitRatio);
    if (gain < CACHE_SETTLED_GAIN) break;
  }
  return ratios;
}

interface DiskRun extends WrkRun {
  eldMaxMs: number;
  cacheHitRatio: number;
  readsPerLookup: number;
}

async function diskRun(
  p: ListeningProcess,
  script: string,
  seconds: number,
  load: LoadSettings,
  during?: () => void,
): Promise<DiskRun> {
  const before = await diskCounters(p.url);
  const { result, maxMs } = await eldDuring(p, () => {
    during?.();
    return wrk('disk', p, script, seconds, load);
  });
  const after = await diskCounters(p.url);
  const lookups = after.lookups - before.lookups;
  return {
    ...result,
    eldMaxMs: maxMs,
    cacheHitRatio: round((after.cache_hits - before.cache_hits) / lookups, 3),
    readsPerLookup: round((after.reads - before.reads) / lookups, 3),
  };
}

const ms = (us: number) => round(us / 1000, 2);

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(10_000_000),
        ...loadFlags({ durationS: 10, warmupS: 3, rounds: 2, ids: 1_000_000 }),
        zipf: { type: 'string', default: '0.99' },
        'cold-s': { type: 'string', default: '10' },
        'cache-warm-s': { type: 'string', default: '300' },
        'disk-env': { type: 'string', default: '' },
        workloads: { type: 'string', default: 'uniform,zipf' },
      },
    },
    headerUsage(import.meta.url),
  );
  const { rows, seed } = parseDataFlags(values);
  const { connections, seconds, warmupS, rounds, idCount } = parseLoadFlags(values);
  const load: LoadSettings = { threads: 1, connections };
  const theta = Number(values.zipf);
  if (!(theta > 0 && theta < 1)) throw new Error('--zipf must be between 0 and 1 (exclusive)');
  const coldS = Number(values['cold-s']);
  const cacheWarmS = Number(values['cache-warm-s']);
  const diskEnv = Object.fromEntries(
    values['disk-env']
      .split(',')
      .filter((kv) => kv !== '')
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const workloads = values.workloads.split(',').map((w) => w.trim());
  ensureTool('wrk');
  ensureTool('taskset', 'util-linux');

  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('disk');
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader')) });
  const up = await ingestFile(leader, csv);
  /** A replica pinned to SERVER_CPU with the event-loop delay probe preloaded. */
  const replica = (name: string, env: Record<string, string>) =>
    startProbedReplica(SERVER_CPU, join(dir, name), leader.url, env);
  const memory = await replica('memory', { SERVE_MODE: 'memory' });
  const diskReplica = (name: string, env: Record<string, string>) =>
    replica(name, { SERVE_MODE: 'disk', ...env });
  const disk = await diskReplica('disk', diskEnv);
  // The same with no cache: what disk mode does when the cache cannot help (keys spread over more ids than it holds).
  const bare = await diskReplica('disk-no-cache', { ...diskEnv, DISK_CACHE_BYTES: '0' });
  // The floor of the event-loop delay goal: a bare node:http server (a fixed answer, no lookup) under the same load.
  const nodeHttp = await startProbed(
    SERVER_CPU,
    join('scripts', 'bench', 'bare-server.ts'),
    ['--port', '0'],
    {},
  );
  for (const [p, mode] of [
    [memory, 'memory'],
    [disk, 'disk'],
    [bare, 'disk'],
  ] as const) {
    await waitForVersion(p.url, up.body.version, { mode, timeoutMs: 10 * 60_000 });
  }
  await leader.stop();
  const rssLoaded = {
    memory: (await procMemory(memory.pid)).rssBytes,
    disk: (await procMemory(disk.pid)).rssBytes,
    diskNoCache: (await procMemory(bare.pid)).rssBytes,
  };

  const ids = await sampleIds(csv, idCount, rows);
  const idsPath = join(dir, 'ids.txt');
  await writeFile(idsPath, `${ids.join('\n')}\n`);
  /**
   * The wrk script of workload `w` for round `round`, with keys drawn from a seed of its own: 0 is the warm-up,
   * 1 to `rounds` the measured runs, -2 and -3 the cold runs, CACHE_WARM_ROUND and on the cache warm-up's slices.
   */
  const scriptFor = async (w: string, round: number): Promise<string> => {
    const path = join(dir, `${w}-${round + 1}.lua`);
    const seed = 42 + round;
    if (w === 'uniform') await writeFile(path, wrkUniformScript(idsPath, seed));
    else if (w === 'zipf') await writeFile(path, wrkZipfScript(idsPath, theta, seed));
    else throw new Error(`--workloads: unknown workload "${w}"`);
    return path;
  };
  log(
    `memory ${memory.url}, disk ${disk.url} (${JSON.stringify(diskEnv)}); ${ids.length} ids of ${rows} rows`,
  );

  const results: Record<
    string,
    { memory: DiskRun[]; disk: DiskRun[]; noCache: DiskRun[]; nodeHttp: DiskRun[]; cacheWarmUp: number[] }
  > = {};
  for (const w of workloads) {
    const script = await scriptFor(w, 0);
    if (warmupS > 0) {
      await plainRun('memory', memory, script, warmupS, load);
      await diskRun(disk, script, warmupS, load);
      await diskRun(bare, script, warmupS, load);
    }
    const cacheWarmUp = await warmCache(
      disk,
      (slice) => scriptFor(w, CACHE_WARM_ROUND + slice),
      cacheWarmS,
      load,
    );
    log(
      `  ${w} disk cache warm-up: hit ratio per ${CACHE_SLICE_S} s slice ${cacheWarmUp.join(', ') || 'none'}`,
    );
    const r = {
      memory: [] as DiskRun[],
      disk: [] as DiskRun[],
      noCache: [] as DiskRun[],
      nodeHttp: [] as DiskRun[],
      cacheWarmUp,
    };
    for (let i = 0; i < rounds; i++) {
      const script = await scriptFor(w, i + 1);
      for (const [name, p, list] of [
        ['memory', memory, r.memory],
        ['node:http', nodeHttp, r.nodeHttp],
      ] as const) {
        const m = await plainRun(name, p, script, seconds, load);
        log(
          `  ${w} ${name} #${i + 1}: ${m.requestsPerS} req/s, p99 ${ms(m.latencyUs.p99)} ms, ` +
            `ELD max ${m.eldMaxMs} ms, core share ${m.serverCoreShare}`,
        );
        list.push(m);
      }
      for (const [name, p, list] of [
        ['disk', disk, r.disk],
        ['disk, no cache', bare, r.noCache],
      ] as const) {
        const d = await diskRun(p, script, seconds, load);
        log(
          `  ${w} ${name} #${i + 1}: ${d.requestsPerS} req/s, p99 ${ms(d.latencyUs.p99)} ms, ` +
            `hits ${d.cacheHitRatio}, reads/lookup ${d.readsPerLookup}, ELD max ${d.eldMaxMs} ms, ` +
            `core share ${d.serverCoreShare}`,
        );
        list.push(d);
      }
    }
    results[w] = r;
  }

  let cold: DiskRun | { skipped: string } = { skipped: '--cold-s 0' };
  const coldZipf: Record<string, DiskRun> = {};
  if (coldS > 0) {
    const drop = async () => writeFile(DROP_CACHES, '1');
    /** `coldS` seconds of `script` on `p` with the page cache dropped at the start and every second. */
    const coldRun = async (p: ListeningProcess, script: string) => {
      await drop();
      let timer: NodeJS.Timeout | undefined;
      try {
        return await diskRun(p, script, coldS, load, () => {
          timer = setInterval(() => void drop().catch(() => undefined), 1000);
        });
      } finally {
        clearInterval(timer);
      }
    };
    // Only a page cache that cannot be dropped (not root) skips the cold runs; any other failure is the run's.
    let droppable = true;
    try {
      await drop();
    } catch (err) {
      droppable = false;
      cold = { skipped: `cannot drop the page cache: ${(err as Error).message}` };
    }
    if (droppable) {
      const run = await coldRun(bare, await scriptFor('uniform', -2));
      cold = run;
      log(
        `  cold disk: ${run.requestsPerS} req/s, p99 ${ms(run.latencyUs.p99)} ms, reads/lookup ${run.readsPerLookup}`,
      );
      // The disk replica's record cache is warm from the runs above: steady state, with a cold page cache.
      if (workloads.includes('zipf')) {
        for (const [name, p] of [
          ['disk', disk],
          ['disk, no cache', bare],
        ] as const) {
          const z = await coldRun(p, await scriptFor('zipf', -3));
          coldZipf[name] = z;
          log(
            `  cold zipf ${name}: ${z.requestsPerS} req/s, p99 ${ms(z.latencyUs.p99)} ms, hits ${z.cacheHitRatio}`,
          );
        }
      }
    }
  }
  const rssEnd = {
    memory: await procMemory(memory.pid),
    disk: await procMemory(disk.pid),
    diskNoCache: await procMemory(bare.pid),
  };
  await memory.stop();
  await nodeHttp.stop();
  await disk.stop();
  await bare.stop();

  process.stdout.write(
    `\nDisk-mode benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `${rows} rows, ${ids.length} ids sampled, wrk -t1 -c${load.connections} -d${seconds}s on core 1, replicas on ` +
      `core 0; disk env ${JSON.stringify(diskEnv)}; median of ${rounds} alternating runs each (every figure the ` +
      `median over its runs)\n\n`,
  );
  const table: (string | number)[][] = [];
  const summary: Record<string, unknown> = {};
  for (const [w, r] of Object.entries(results)) {
    const m = medianRun(r.memory);
    for (const [name, runs] of [
      ['disk', r.disk],
      ['disk, no cache', r.noCache],
    ] as const) {
      const d = medianRun(runs);
      const ratio = round(d.requestsPerS / m.requestsPerS, 3);
      const bestRatio = round(
        Math.max(...runs.map((x) => x.requestsPerS)) / Math.max(...r.memory.map((x) => x.requestsPerS)),
        3,
      );
      const p99Ratio = round(d.latencyUs.p99 / m.latencyUs.p99, 2);
      // Memory CPU per request over disk's (medians): the throughput ratio if both had a core to themselves. On a
      // shared core the scheduler shares time per thread, and disk mode has more threads, so req/s can mislead.
      const cpuRatio = round(
        median(r.memory.map((x) => x.serverCpuUsPerRequest)) /
          median(runs.map((x) => x.serverCpuUsPerRequest)),
        3,
      );
      const eld = Math.max(...runs.map((x) => x.eldMaxMs));
      const memoryEld = Math.max(...r.memory.map((x) => x.eldMaxMs));
      const nodeHttpEld = Math.max(...r.nodeHttp.map((x) => x.eldMaxMs));
      const goal = w === 'zipf' ? GOAL_ZIPF : GOAL_UNIFORM;
      table.push([
        w,
        name,
        m.requestsPerS,
        d.requestsPerS,
        ratio,
        bestRatio,
        cpuRatio,
        `${ms(m.latencyUs.p99)} / ${ms(d.latencyUs.p99)}`,
        p99Ratio,
        `${m.serverCpuUsPerRequest} / ${d.serverCpuUsPerRequest}`,
        `${m.serverCoreShare} / ${d.serverCoreShare}`,
        d.cacheHitRatio,
        d.readsPerLookup,
        `${memoryEld} / ${eld} / ${nodeHttpEld}`,
        `>= ${goal}: ${verdict(ratio >= goal)}; p99 ${verdict(p99Ratio <= GOAL_P99)}; ELD ${verdict(eld < GOAL_ELD_MS)}`,
      ]);
      summary[`${w}, ${name}`] = {
        ratio,
        bestRatio,
        cpuRatio,
        p99Ratio,
        eldMaxMs: eld,
        memoryEldMaxMs: memoryEld,
        nodeHttpEldMaxMs: nodeHttpEld,
        memory: m,
        disk: d,
        runs,
        ...(name === 'disk' ? { cacheWarmUp: r.cacheWarmUp } : {}),
      };
    }
    summary[`${w}, memory runs`] = r.memory;
    summary[`${w}, node:http runs`] = r.nodeHttp;
  }
  printTable(
    [
      'keys',
      'disk replica',
      'memory req/s',
      'disk req/s',
      'ratio (medians)',
      'best-run ratio',
      'CPU ratio',
      'p99 ms mem / disk',
      'p99 ratio',
      'CPU us/req mem / disk',
      'core share mem / disk',
      'cache hits',
      'reads/lookup',
      'ELD max ms mem / disk / node:http',
      'goals',
    ],
    table,
  );
  process.stdout.write('\n');
  for (const [w, r] of Object.entries(results)) {
    const slices = r.cacheWarmUp;
    process.stdout.write(
      `${w}: the record cache warmed for ${slices.length * CACHE_SLICE_S} s before the runs, hit ratio per ` +
        `${CACHE_SLICE_S} s slice ${slices.join(', ') || 'none (--cache-warm-s)'}\n`,
    );
  }
  if ('skipped' in cold) {
    process.stdout.write(`cold reads: skipped (${cold.skipped})\n`);
  } else {
    process.stdout.write(
      `cold reads (page cache dropped every second): ${cold.requestsPerS} req/s, p99 ${ms(cold.latencyUs.p99)} ms, ` +
        `${cold.readsPerLookup} positional reads per lookup (goal <= ${GOAL_READS_PER_LOOKUP}: ` +
        `${verdict(cold.readsPerLookup <= GOAL_READS_PER_LOOKUP)}), ELD max ${cold.eldMaxMs} ms\n`,
    );
  }
  for (const [name, z] of Object.entries(coldZipf)) {
    process.stdout.write(
      `cold Zipfian reads, ${name}: ${z.requestsPerS} req/s, p99 ${ms(z.latencyUs.p99)} ms, ` +
        `${z.cacheHitRatio} cache hits, ${z.readsPerLookup} positional reads per lookup\n`,
    );
  }
  process.stdout.write(
    `RSS MB after load / at the end (peak): memory ${mb(rssLoaded.memory)} / ${mb(rssEnd.memory.rssBytes)} ` +
      `(${mb(rssEnd.memory.hwmBytes)}); disk ${mb(rssLoaded.disk)} / ${mb(rssEnd.disk.rssBytes)} ` +
      `(${mb(rssEnd.disk.hwmBytes)}); disk, no cache ${mb(rssLoaded.diskNoCache)} / ` +
      `${mb(rssEnd.diskNoCache.rssBytes)} (${mb(rssEnd.diskNoCache.hwmBytes)})\n`,
  );
  printJson('disk', {
    rows,
    seed,
    ids: ids.length,
    theta,
    load: { ...load, durationS: seconds, warmupS, rounds },
    diskEnv,
    results: summary,
    cold,
    coldZipf,
    rssMb: {
      memoryLoaded: mb(rssLoaded.memory),
      diskLoaded: mb(rssLoaded.disk),
      memoryEnd: mb(rssEnd.memory.rssBytes),
      diskEnd: mb(rssEnd.disk.rssBytes),
      diskPeak: mb(rssEnd.disk.hwmBytes),
      diskNoCacheLoaded: mb(rssLoaded.diskNoCache),
      diskNoCacheEnd: mb(rssEnd.diskNoCache.rssBytes),
    },
  });
}

await runBench(main);
