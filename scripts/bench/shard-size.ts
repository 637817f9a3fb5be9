/**
 * Shard size benchmark (issue 11, benchmark 2): what a shard replica holds against an unsharded one, same file,
 * same run, in both serve modes. For each mode it starts one unsharded replica, then S x R shard replicas
 * (SHARD=k/S, R per shard), each from an empty data directory against a leader that already has the version, and
 * measures:
 *   - RSS once serving (and above the process baseline: a replica with nothing loaded), per replica;
 *   - disk bytes its data directory really uses (allocated blocks: a shard's file is sparse);
 *   - the time from starting the processes until the unsharded replica serves, and until every shard serves;
 *   - bytes received from the leader (each replica's promotions_snapshot_pulled_bytes_total): the leader's egress
 *     for the version, against file size x R.
 *   node --import tsx scripts/bench/shard-size.ts [--rows 2000000] [--seed 42] [--shards 4]
 *                                                 [--replicas-per-shard 2] [--modes memory,disk]
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCommandLine } from '../lib/cli.js';
import type { RoleProcess } from '../lib/processes.js';
import { dataFlags, parseDataFlags, parsePositive } from './lib/args.js';
import { DEFAULT_SEED, ensureCsv } from './lib/data.js';
import { procMemory } from './lib/proc.js';
import { log, machineNote, mb, printJson, printTable, round, verdict } from './lib/report.js';
import {
  getJson,
  ingestFile,
  leaderEnv,
  replicaEnv,
  startTracked,
  TOKENS,
  waitForVersion,
} from './lib/roles.js';
import { runBench, tempDir } from './lib/run.js';

const GOAL_FACTOR = 1.1;

const HELP = `Usage: node --import tsx scripts/bench/shard-size.ts [options]

RSS, disk, time to serve and leader egress of S x R shard replicas against one unsharded replica.
  --rows N                 rows in the generated file (default 2000000)
  --seed N                 generator seed (default ${DEFAULT_SEED})
  --shards S               shard count, a power of two up to 64 (default 4)
  --replicas-per-shard R   replicas of each shard (default 2)
  --modes LIST             serve modes to measure, comma-separated (default memory,disk)
  --help                   this text
Run it under the bench lock: flock /tmp/promotions-bench.lock node --import tsx scripts/bench/shard-size.ts
`;

/** Bytes the files under `dir` really occupy (allocated blocks), recursively. */
async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await diskBytes(path);
    else if (entry.isFile()) total += (await stat(path)).blocks * 512;
  }
  return total;
}

async function pulledBytes(r: RoleProcess): Promise<number> {
  const text = await (await fetch(`${r.url}/metrics`)).text();
  const m = /^promotions_snapshot_pulled_bytes_total(?:\{[^}]*\})? (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  if (m === null) throw new Error(`no promotions_snapshot_pulled_bytes_total in ${r.url}/metrics`);
  return Number(m[1]);
}

interface Measured {
  readonly rss: number;
  readonly disk: number;
  readonly pulled: number;
  readonly rows: number;
}

/** Starts `envs` replicas at once; resolves with the seconds until each serves `version`, and what each holds. */
async function startGroup(
  envs: Record<string, string>[],
  version: number,
): Promise<{ seconds: number[]; measured: Measured[]; procs: RoleProcess[] }> {
  const t0 = performance.now();
  const procs = await Promise.all(envs.map((env) => startTracked('replica', { env })));
  const seconds = await Promise.all(
    procs.map(async (r) => {
      await waitForVersion(r.url, version, { timeoutMs: 15 * 60_000 });
      return (performance.now() - t0) / 1000;
    }),
  );
  const measured = await Promise.all(
    procs.map(async (r, i) => ({
      rss: (await procMemory(r.child.pid as number)).rssBytes,
      disk: await diskBytes(envs[i].DATA_DIR),
      pulled: await pulledBytes(r),
      rows: (await getJson(`${r.url}/readyz`)).body.rows as number,
    })),
  );
  return { seconds, measured, procs };
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(2_000_000),
        shards: { type: 'string', default: '4' },
        'replicas-per-shard': { type: 'string', default: '2' },
        modes: { type: 'string', default: 'memory,disk' },
      },
    },
    HELP,
  );
  const { rows, seed } = parseDataFlags(values);
  const shards = parsePositive('--shards', values.shards);
  if ((shards & (shards - 1)) !== 0 || shards > 64)
    throw new Error('--shards must be a power of two up to 64');
  const perShard = parsePositive('--replicas-per-shard', values['replicas-per-shard']);
  const modes = values.modes.split(',').map((m) => m.trim());
  for (const m of modes) if (m !== 'memory' && m !== 'disk') throw new Error(`--modes: unknown mode ${m}`);

  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('shard-size');
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader')) });
  log(`ingesting ${rows} rows`);
  const up = await ingestFile(leader, csv);
  const version = up.body.version as number;
  const fileBytes = up.body.bytes as number | undefined;
  const manifest = await getJson(`${leader.url}/snapshots/${version}`, TOKENS.leader);
  const snapshotBytes = (manifest.body.bytes as number) ?? fileBytes;

  // The process baseline: a replica that never loads anything (its leader does not answer).
  const idle = await startTracked('replica', {
    env: replicaEnv(join(dir, 'idle'), 'http://127.0.0.1:9', { SYNC_INTERVAL_MS: '3600000' }),
  });
  const baseline = (await procMemory(idle.child.pid as number)).rssBytes;
  await idle.stop();

  const results: Record<string, unknown>[] = [];
  const table: (string | number)[][] = [];
  for (const mode of modes) {
    log(`${mode} mode: one unsharded replica`);
    const whole = await startGroup(
      [replicaEnv(join(dir, `${mode}-whole`), leader.url, { SERVE_MODE: mode })],
      version,
    );
    await Promise.all(whole.procs.map((p) => p.stop()));
    log(`${mode} mode: ${shards} shards x ${perShard} replicas`);
    const envs: Record<string, string>[] = [];
    for (let k = 0; k < shards; k++) {
      for (let n = 0; n < perShard; n++) {
        envs.push(
          replicaEnv(join(dir, `${mode}-s${k}-${n}`), leader.url, {
            SERVE_MODE: mode,
            SHARD: `${k}/${shards}`,
          }),
        );
      }
    }
    const group = await startGroup(envs, version);
    await Promise.all(group.procs.map((p) => p.stop()));

    const w = whole.measured[0];
    const maxRss = Math.max(...group.measured.map((m) => m.rss));
    const maxDisk = Math.max(...group.measured.map((m) => m.disk));
    const rowsSum = group.measured.reduce((n, m) => n + m.rows, 0) / perShard;
    const pulledSum = group.measured.reduce((n, m) => n + m.pulled, 0);
    const rssAbove = Math.max(...group.measured.map((m) => m.rss - baseline));
    const rssRatio = round(rssAbove / ((w.rss - baseline) / shards), 3);
    const diskRatio = round(maxDisk / (w.disk / shards), 3);
    const figures = {
      mode,
      wholeRssMB: mb(w.rss),
      wholeRssAboveBaselineMB: mb(w.rss - baseline),
      shardMaxRssMB: mb(maxRss),
      shardMaxRssAboveBaselineMB: mb(rssAbove),
      rssAboveBaselineRatio: rssRatio,
      rawRssRatio: round(maxRss / (w.rss / shards), 3),
      wholeDiskMB: mb(w.disk),
      shardMaxDiskMB: mb(maxDisk),
      diskRatio,
      wholeServesS: round(whole.seconds[0], 2),
      everyShardServesS: round(Math.max(...group.seconds), 2),
      leaderBytesWhole: w.pulled,
      leaderBytesShards: pulledSum,
      egressOverFileTimesR: round(pulledSum / (snapshotBytes * perShard), 3),
      rowsAddUp: rowsSum === (up.body.rows as number),
    };
    results.push(figures);
    table.push(
      [
        `${mode}: RSS above baseline, MB`,
        figures.wholeRssAboveBaselineMB,
        figures.shardMaxRssAboveBaselineMB,
        rssRatio,
        `<= ${GOAL_FACTOR}`,
        verdict(rssRatio <= GOAL_FACTOR),
      ],
      [`${mode}: RSS, MB (info)`, figures.wholeRssMB, figures.shardMaxRssMB, figures.rawRssRatio, '-', '-'],
      [
        `${mode}: disk, MB`,
        figures.wholeDiskMB,
        figures.shardMaxDiskMB,
        diskRatio,
        `<= ${GOAL_FACTOR}`,
        verdict(diskRatio <= GOAL_FACTOR),
      ],
      [
        `${mode}: s until serving (every shard)`,
        figures.wholeServesS,
        figures.everyShardServesS,
        round(figures.everyShardServesS / figures.wholeServesS, 2),
        '-',
        '-',
      ],
      [
        `${mode}: leader bytes per version, MB`,
        mb(w.pulled),
        mb(pulledSum),
        figures.egressOverFileTimesR,
        `~1 (file x ${perShard})`,
        verdict(figures.egressOverFileTimesR <= GOAL_FACTOR),
      ],
    );
  }

  process.stdout.write(
    `\nShard size benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `${rows} rows, snapshot ${mb(snapshotBytes)} MB, S = ${shards} shards x ${perShard} replicas against one ` +
      `unsharded replica; process baseline ${mb(baseline)} MB RSS. Ratios: the largest shard replica over 1/S of ` +
      'the unsharded one; leader bytes over file size x replicas per shard\n\n',
  );
  printTable(['figure', 'unsharded', 'shard (largest / all)', 'ratio', 'goal', 'result'], table);
  printJson('shard-size', {
    rows,
    shards,
    replicasPerShard: perShard,
    snapshotBytes,
    baselineRssBytes: baseline,
    results,
  });
}

void runBench(main);
