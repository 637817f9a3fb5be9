/**
 * Shard router benchmark (issue 11, benchmark 1): what nginx routing by shard costs a read. Three targets under the
 * same load in the same run, measured alternately:
 *   direct   one unsharded replica (memory mode), no proxy;
 *   proxy    nginx (the production k8s/router config, scripts/lib/nginx.ts) in front of that one replica (S = 1);
 *   sharded  nginx routing S = 2 to two shard replicas (SHARD=0/2, SHARD=1/2), one each.
 *   node --import tsx scripts/bench/shard-proxy.ts [--rows 1000000] [--seed 42] [--connections 50]
 *                                                  [--duration-s 10] [--warmup-s 3] [--rounds 3] [--ids 100000]
 *
 * The replicas share core 0; nginx (one worker) and wrk share core 1: on this 2-core machine a proxy has no core
 * of its own, so its cost shows as throughput lost and as its own CPU per request. Reported per target: median
 * req/s and p99 of the rounds, the replicas' and nginx's CPU microseconds per request; ratios against direct.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCommandLine } from '../lib/cli.js';
import { startNginx } from '../lib/nginx.js';
import { dataFlags, loadFlags, parseDataFlags, parseLoadFlags } from './lib/args.js';
import { DEFAULT_SEED, ensureCsv, sampleIds } from './lib/data.js';
import { pinProcess, procCpuSeconds } from './lib/proc.js';
import { log, machineNote, printJson, printTable, round } from './lib/report.js';
import { ingestFile, leaderEnv, replicaEnv, startTracked, waitForVersion } from './lib/roles.js';
import { onCleanup, runBench, tempDir } from './lib/run.js';
import { ensureTool } from './lib/tools.js';
import { wrkRandomIdsScript } from './lib/wrk-script.js';
import { runWrkJson, WRK_CPU } from './wrk.js';

const REPLICA_CPU = 0;
const NGINX_CPU = 1;

const HELP = `Usage: node --import tsx scripts/bench/shard-proxy.ts [options]

Read throughput and p99 of one replica direct, behind nginx (S = 1), and behind nginx routing S = 2 shards.
  --rows N          rows in the generated file (default 1000000)
  --seed N          generator seed (default ${DEFAULT_SEED})
  --connections N   wrk connections (default 50)
  --duration-s N    seconds per measured run (default 10)
  --warmup-s N      seconds of warm-up per target (default 3)
  --rounds N        alternating rounds of the three targets (default 3)
  --ids N           existing ids sampled for the random requests (default 100000)
  --help            this text
Run it under the bench lock: flock /tmp/promotions-bench.lock node --import tsx scripts/bench/shard-proxy.ts
`;

interface Target {
  readonly name: string;
  readonly url: string;
  /** Processes whose CPU counts as this target's: replicas, then nginx's master and worker. */
  readonly replicaPids: number[];
  readonly proxyPids: number[];
}

interface Run {
  readonly target: string;
  readonly requestsPerS: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly replicaCpuUsPerRequest: number;
  readonly proxyCpuUsPerRequest: number;
}

async function cpuOf(pids: readonly number[]): Promise<number> {
  let s = 0;
  for (const pid of pids) s += await procCpuSeconds(pid);
  return s;
}

async function wrk(t: Target, script: string, seconds: number, connections: number): Promise<Run> {
  const replica0 = await cpuOf(t.replicaPids);
  const proxy0 = await cpuOf(t.proxyPids);
  const j = await runWrkJson(WRK_CPU, { threads: 1, connections }, seconds, script, t.url);
  const replicaS = (await cpuOf(t.replicaPids)) - replica0;
  const proxyS = (await cpuOf(t.proxyPids)) - proxy0;
  return {
    target: t.name,
    requestsPerS: round(j.requests / (j.duration_us / 1e6)),
    p50Us: j.p50,
    p99Us: j.p99,
    non2xx: j.non2xx,
    errors: j.socket_errors,
    replicaCpuUsPerRequest: round((replicaS * 1e6) / j.requests, 2),
    proxyCpuUsPerRequest: round((proxyS * 1e6) / j.requests, 2),
  };
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** nginx's master and its workers (the children of the master). */
async function nginxPids(master: number): Promise<number[]> {
  const children = await readFile(`/proc/${master}/task/${master}/children`, 'utf8').catch(() => '');
  return [master, ...children.split(/\s+/).filter(Boolean).map(Number)];
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(1_000_000),
        ...loadFlags({ durationS: 10, warmupS: 3, rounds: 3, ids: 100_000 }),
      },
    },
    HELP,
  );
  const { rows, seed } = parseDataFlags(values);
  const { connections, seconds, warmupS, rounds, idCount } = parseLoadFlags(values);
  ensureTool('wrk');
  ensureTool('taskset', 'util-linux');

  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('shard-proxy');
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader')) });
  const up = await ingestFile(leader, csv);
  const start = async (name: string, shard?: string) => {
    const extra: Record<string, string> = { SERVE_MODE: 'memory', ...(shard ? { SHARD: shard } : {}) };
    const r = await startTracked('replica', { env: replicaEnv(join(dir, name), leader.url, extra) });
    await pinProcess(r.child.pid as number, REPLICA_CPU);
    await waitForVersion(r.url, up.body.version);
    return r;
  };
  const whole = await start('whole');
  const shard0 = await start('shard-0', '0/2');
  const shard1 = await start('shard-1', '1/2');
  await leader.stop();

  const host = (url: string) => new URL(url).host;
  const proxy = await startNginx({ dir: join(dir, 'nginx-1'), upstreams: [[host(whole.url)]], shardBits: 0 });
  onCleanup(() => proxy.stop());
  const router = await startNginx({
    dir: join(dir, 'nginx-2'),
    upstreams: [[host(shard0.url)], [host(shard1.url)]],
    shardBits: 1,
  });
  onCleanup(() => router.stop());
  const proxyPids = await nginxPids(proxy.pid);
  const routerPids = await nginxPids(router.pid);
  for (const pid of [...proxyPids, ...routerPids]) await pinProcess(pid, NGINX_CPU);

  const ids = await sampleIds(csv, idCount, rows);
  const idsPath = join(dir, 'ids.txt');
  await writeFile(idsPath, `${ids.join('\n')}\n`);
  const script = join(dir, 'ids.lua');
  await writeFile(script, wrkRandomIdsScript(idsPath));
  const targets: Target[] = [
    { name: 'direct', url: whole.url, replicaPids: [whole.child.pid as number], proxyPids: [] },
    { name: 'nginx, S = 1', url: proxy.url, replicaPids: [whole.child.pid as number], proxyPids },
    {
      name: 'nginx, S = 2',
      url: router.url,
      replicaPids: [shard0.child.pid as number, shard1.child.pid as number],
      proxyPids: routerPids,
    },
  ];
  for (const t of targets) {
    const probe = await fetch(`${t.url}/promotions/${ids[0]}`);
    await probe.arrayBuffer();
    if (probe.status !== 200) throw new Error(`${t.name}: GET of an existing id answered ${probe.status}`);
  }
  if (warmupS > 0) for (const t of targets) await wrk(t, script, warmupS, connections);
  const runs = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
  for (let i = 0; i < rounds; i++) {
    for (const t of targets) {
      const r = await wrk(t, script, seconds, connections);
      log(`  ${t.name} #${i + 1}: ${r.requestsPerS} req/s, p99 ${round(r.p99Us / 1000, 2)} ms`);
      runs.get(t.name)?.push(r);
    }
  }
  const summary = targets.map((t) => {
    const all = runs.get(t.name) as Run[];
    return {
      target: t.name,
      requestsPerS: median(all.map((r) => r.requestsPerS)),
      p50Ms: round(median(all.map((r) => r.p50Us)) / 1000, 3),
      p99Ms: round(median(all.map((r) => r.p99Us)) / 1000, 3),
      replicaCpuUsPerRequest: median(all.map((r) => r.replicaCpuUsPerRequest)),
      proxyCpuUsPerRequest: median(all.map((r) => r.proxyCpuUsPerRequest)),
      non2xx: all.reduce((n, r) => n + r.non2xx, 0),
      errors: all.reduce((n, r) => n + r.errors, 0),
      runs: all.map((r) => r.requestsPerS),
    };
  });
  const direct = summary[0];
  process.stdout.write(
    `\nShard router benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `${rows} rows, wrk -t1 -c${connections} -d${seconds}s on core ${WRK_CPU} with nginx (1 worker) on core ` +
      `${NGINX_CPU}, replicas on core ${REPLICA_CPU}, ${ids.length} random existing ids; medians of ${rounds} ` +
      'alternating rounds\n\n',
  );
  printTable(
    [
      'target',
      'req/s',
      'p50 ms',
      'p99 ms',
      'replica CPU us/req',
      'nginx CPU us/req',
      'req/s ratio',
      'p99 ratio',
      'runs',
    ],
    summary.map((s) => [
      s.target,
      s.requestsPerS,
      s.p50Ms,
      s.p99Ms,
      s.replicaCpuUsPerRequest,
      s.proxyCpuUsPerRequest,
      round(s.requestsPerS / direct.requestsPerS, 3),
      round(s.p99Ms / direct.p99Ms, 2),
      s.runs.join(' / '),
    ]),
  );
  for (const s of summary) {
    if (s.non2xx > 0 || s.errors > 0)
      log(`warning: ${s.target}: ${s.non2xx} non-2xx, ${s.errors} socket errors`);
  }
  printJson('shard-proxy', {
    rows,
    connections,
    seconds,
    rounds,
    summary,
    ratios: Object.fromEntries(
      summary.slice(1).map((s) => [
        s.target,
        {
          requestsPerS: round(s.requestsPerS / direct.requestsPerS, 3),
          p99: round(s.p99Ms / direct.p99Ms, 2),
        },
      ]),
    ),
  });
}

void runBench(main);
