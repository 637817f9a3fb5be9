/**
 * wrk runs for the read benchmarks (get.ts, disk.ts): wrk pinned to WRK_CPU, servers pinned to SERVER_CPU, the
 * server's CPU time read around each run, and the best and median of several runs.
 */
import { join } from 'node:path';
import { ROOT, TS_NODE_ARGS } from '../lib/processes.js';
import { procCpuSeconds } from './lib/proc.js';
import { round } from './lib/report.js';
import {
  ingestFile,
  type ListeningProcess,
  leaderEnv,
  replicaEnv,
  spawnListening,
  startTracked,
  waitForVersion,
} from './lib/roles.js';
import { runTool } from './lib/tools.js';

export const SERVER_CPU = 0;
export const WRK_CPU = 1;

/** What one wrk run measured (latencies in microseconds). */
export interface WrkRun {
  target: string;
  requests: number;
  durationS: number;
  requestsPerS: number;
  non2xx: number;
  socketErrors: number;
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** Server CPU time (user + system) per request, microseconds. */
  serverCpuUsPerRequest: number;
  /** Server CPU seconds per wall second during the run: 1.0 means it had its core to itself and used it all. */
  serverCoreShare: number;
}

export interface LoadSettings {
  threads: number;
  connections: number;
}

/**
 * Runs `taskset -c CPU wrk` with the Lua `script` (which prints a `WRK_JSON {...}` line, lib/wrk-script.ts) against
 * `url` for `seconds`; returns that line's figures. Throws with wrk's output when it fails or prints none.
 */
export async function runWrkJson(
  cpu: number,
  load: LoadSettings,
  seconds: number,
  script: string,
  url: string,
): Promise<Record<string, number>> {
  const args = [
    '-c',
    String(cpu),
    'wrk',
    `-t${load.threads}`,
    `-c${load.connections}`,
    `-d${seconds}s`,
    '--timeout',
    '5s',
    '-s',
    script,
    url,
  ];
  const r = await runTool('taskset', args, { timeoutMs: (seconds + 60) * 1000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (r.code !== 0 || line === undefined) throw new Error(`wrk failed (${r.code}): ${r.stderr}\n${r.stdout}`);
  return JSON.parse(line.slice('WRK_JSON '.length)) as Record<string, number>;
}

/**
 * Runs wrk pinned to WRK_CPU against `server` for `seconds`. Also reads the server's CPU time around the run: CPU
 * per request is steadier than requests/s on a shared machine, and CPU time over wall time says how much of its
 * core the server actually got.
 */
export async function wrk(
  target: string,
  server: ListeningProcess,
  script: string,
  seconds: number,
  load: LoadSettings,
): Promise<WrkRun> {
  const cpu0 = await procCpuSeconds(server.pid);
  const j = await runWrkJson(WRK_CPU, load, seconds, script, server.url);
  const cpuS = (await procCpuSeconds(server.pid)) - cpu0;
  const durationS = j.duration_us / 1e6;
  return {
    target,
    requests: j.requests,
    durationS: round(durationS, 2),
    requestsPerS: round(j.requests / durationS),
    non2xx: j.non2xx,
    socketErrors: j.socket_errors,
    latencyUs: { p50: j.p50, p90: j.p90, p99: j.p99, p999: j.p999, max: j.max, mean: j.mean },
    serverCpuUsPerRequest: round((cpuS * 1e6) / j.requests, 2),
    serverCoreShare: round(cpuS / durationS, 2),
  };
}

/** Spawns `node [nodeArgs] TS_NODE_ARGS <script> [args]` pinned to SERVER_CPU (TS_NODE_ARGS: the sources, workers too). */
export function pinnedNode(
  script: string,
  args: string[],
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<ListeningProcess> {
  return spawnListening(
    'taskset',
    ['-c', String(SERVER_CPU), process.execPath, ...nodeArgs, ...TS_NODE_ARGS, join(ROOT, script), ...args],
    env,
  );
}

/** The median of `values`. */
export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * The median run of `runs`: each figure (requests/s, every latency percentile, CPU per request, ...) the median of
 * that figure over the runs. What a benchmark judges, since on a shared machine a best run is luck, not a result.
 */
export function medianRun<T extends WrkRun>(runs: readonly T[]): T {
  const out: Record<string, unknown> = { ...(runs[0] as object) };
  for (const [key, value] of Object.entries(runs[0] as object)) {
    const of = (r: T) => (r as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') out[key] = median(runs.map((r) => of(r) as number));
    else if (typeof value === 'object' && value !== null) {
      const inner: Record<string, number> = {};
      for (const k of Object.keys(value))
        inner[k] = median(runs.map((r) => (of(r) as Record<string, number>)[k]));
      out[key] = inner;
    }
  }
  return out as unknown as T;
}

/**
 * The replica a wrk benchmark measures, in memory mode: a leader (under `dir`) builds the version of `csv`, a
 * replica pinned to SERVER_CPU loads it (`nodeArgs` go to its node), and the leader stops so that it adds no noise.
 * Returns the replica and what its /readyz said once it served the version.
 */
export async function measuredReplica(
  csv: string,
  dir: string,
  nodeArgs: string[] = [],
): Promise<{ replica: ListeningProcess; readyz: Record<string, unknown> }> {
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader')) });
  const up = await ingestFile(leader, csv);
  const replica = await pinnedNode(
    'replica/main.ts',
    [],
    replicaEnv(join(dir, 'replica'), leader.url, { SERVE_MODE: 'memory' }),
    nodeArgs,
  );
  const readyz = await waitForVersion(replica.url, up.body.version);
  await leader.stop();
  return { replica, readyz };
}
