/**
 * Replica memory benchmark (docs/design.md §6, "replica memory, memory mode" and "replica memory, disk mode").
 *   node --import tsx scripts/bench/memory.ts [--rows 1000000,10000000] [--memory-rows LIST|none]
 *                                             [--disk-rows LIST|none] [--seed 42] [--settle-ms 10000] [--gets 2000]
 *
 * For each size: a fresh leader; replicas (SERVE_MODE=memory for sizes in --memory-rows, SERVE_MODE=disk for sizes
 * in --disk-rows; both default to every size) start before the file is uploaded, so each one's baseline is sampled
 * while it is idle and empty (after its first poll registered it with the leader, plus a settle). The file is then
 * uploaded; the leader notifies the replicas; once /readyz answers 200 with the new version, each replica has
 * answered `--gets` lookups of existing ids (all must be 200: the replica is measured while it serves) and the
 * settle time has passed, RSS is sampled again. bytes/row = (VmRSS after - VmRSS before) / rows; the snapshot
 * file's size per row is printed beside it.
 * The settle is long (10 s) because we cannot force a GC in the replica: V8 returns start-up and download garbage
 * only once the process has been idle a while, and with a 2 s settle the 1M-row figure moved by +-20 B/row.
 * Disk mode is reported only when the replica says it serves `mode: "disk"`; otherwise "not implemented".
 */
import { join } from 'node:path';
import { DEFAULTS } from '../../common/config.js';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import type { RoleProcess } from '../lib/processes.js';
import { parseCounts, parsePositive } from './lib/args.js';
import { DEFAULT_SEED, ensureCsv, fileBytes, sampleIds } from './lib/data.js';
import { procMemory } from './lib/proc.js';
import { log, machineNote, mb, printJson, printTable, round, verdict } from './lib/report.js';
import {
  getJson,
  ingestFile,
  leaderEnv,
  replicaEnv,
  startTracked,
  waitForRegistration,
  waitForVersion,
} from './lib/roles.js';
import { runBench, sleep, tempDir } from './lib/run.js';

const GOAL_BYTES_PER_ROW = 64;
/** Disk mode: flat in rows, 200 MB plus what its settings let it hold (slot tables, hot records; defaults here). */
const GOAL_DISK_RSS_BYTES = 200 * 1024 * 1024 + DEFAULTS.diskSlotTableBytes + DEFAULTS.diskCacheBytes;
const LOAD_TIMEOUT_MS = 15 * 60_000;

type Mode = 'memory' | 'disk';

/** One replica's figures for one size. */
interface ReplicaResult {
  mode: Mode;
  /** What /readyz says the replica serves; differs from `mode` when the mode is not implemented. */
  servedMode: string;
  rssBeforeMb: number;
  rssAfterMb: number;
  peakRssMb: number;
  bytesPerRow: number;
  loadMs: number;
}

interface SizeResult {
  rows: number;
  snapshotBytes: number;
  snapshotBytesPerRow: number;
  /** The leader's own figures for this ingest (ingest.ts measures ingest properly; these are for context). */
  ingestMs: number;
  leaderPeakRssMb: number;
  memory: ReplicaResult | null;
  disk: ReplicaResult | { notImplemented: string } | null;
  goals: { memoryBytesPerRow: 'PASS' | 'MISS' | 'n/a'; diskRss: 'PASS' | 'MISS' | 'n/a' };
}

/** Looks up `ids` one after another; throws unless every answer is 200. */
async function lookups(replica: RoleProcess, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    const res = await fetch(`${replica.url}/promotions/${id}`);
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${replica.url} answered ${res.status} for existing id ${id}`);
  }
}

async function measureSize(
  rows: number,
  seed: number,
  modes: readonly Mode[],
  settleMs: number,
  gets: number,
): Promise<SizeResult> {
  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('memory');
  const bytes = await fileBytes(csv);
  const extra: Record<string, string> = bytes > 1024 ** 3 ? { MAX_UPLOAD_BYTES: String(bytes) } : {};
  const leader = await startTracked('leader', { env: leaderEnv(join(dir, 'leader'), extra) });
  try {
    const replicas = new Map<Mode, RoleProcess>();
    for (const mode of modes) {
      const env = replicaEnv(join(dir, `replica-${mode}`), leader.url, { SERVE_MODE: mode });
      replicas.set(mode, await startTracked('replica', { env }));
    }
    // Registered by its first poll, so that the leader notifies it of the upload.
    await waitForRegistration(
      leader.url,
      [...replicas.values()].map((r) => r.url),
    );
    await sleep(settleMs);
    const before = new Map<Mode, number>();
    for (const [mode, r] of replicas) before.set(mode, (await procMemory(r.child.pid!)).rssBytes);

    log(`${rows} rows: uploading to the leader; replicas: ${modes.join(', ')} ...`);
    const up = await ingestFile(leader, csv);
    const version = Number(up.body.version);
    const uploaded = performance.now();
    const leaderPeak = (await procMemory(leader.child.pid!)).hwmBytes;
    const loadMs = new Map<Mode, number>();
    const served = new Map<Mode, string>();
    await Promise.all(
      [...replicas].map(async ([mode, r]) => {
        const body = await waitForVersion(r.url, version, { timeoutMs: LOAD_TIMEOUT_MS });
        loadMs.set(mode, round(performance.now() - uploaded));
        served.set(mode, String(body.mode));
      }),
    );
    const ids = gets > 0 ? await sampleIds(csv, gets, rows) : [];
    for (const r of replicas.values()) await lookups(r, ids);
    await sleep(settleMs);
    const snapshot = await getJson(`${leader.url}/snapshots/current`);
    const snapshotBytes = Number(snapshot.body.bytes);

    const results = new Map<Mode, ReplicaResult>();
    for (const [mode, r] of replicas) {
      const after = await procMemory(r.child.pid!);
      const b = before.get(mode)!;
      results.set(mode, {
        mode,
        servedMode: served.get(mode)!,
        rssBeforeMb: mb(b),
        rssAfterMb: mb(after.rssBytes),
        peakRssMb: mb(after.hwmBytes),
        bytesPerRow: round((after.rssBytes - b) / rows, 1),
        loadMs: loadMs.get(mode)!,
      });
      await r.stop();
    }
    const memory = results.get('memory') ?? null;
    if (memory !== null && memory.servedMode !== 'memory')
      throw new Error(`SERVE_MODE=memory replica serves ${memory.servedMode}`);
    const diskRaw = results.get('disk');
    const disk =
      diskRaw === undefined
        ? null
        : diskRaw.servedMode === 'disk'
          ? diskRaw
          : {
              notImplemented: `SERVE_MODE=disk is accepted but the replica serves mode "${diskRaw.servedMode}"`,
            };
    return {
      rows,
      snapshotBytes,
      snapshotBytesPerRow: round(snapshotBytes / rows, 1),
      ingestMs: Number(up.body.durationMs),
      leaderPeakRssMb: mb(leaderPeak),
      memory,
      disk,
      goals: {
        memoryBytesPerRow: memory === null ? 'n/a' : verdict(memory.bytesPerRow < GOAL_BYTES_PER_ROW),
        diskRss:
          disk === null || 'notImplemented' in disk
            ? 'n/a'
            : verdict(disk.rssAfterMb * 1024 * 1024 < GOAL_DISK_RSS_BYTES),
      },
    };
  } finally {
    await leader.stop();
  }
}

/** The columns both modes' tables start with; `figuresOf` fills them for one replica. */
const FIGURE_COLUMNS = ['rows', 'RSS before MB', 'RSS after MB', 'peak RSS MB', 'bytes/row'];

function figuresOf(rows: number, r: ReplicaResult): number[] {
  return [rows, r.rssBeforeMb, r.rssAfterMb, r.peakRssMb, r.bytesPerRow];
}

function loadSeconds(r: ReplicaResult): number {
  return round(r.loadMs / 1000, 2);
}

/** The sizes a `--memory-rows`/`--disk-rows` flag names: every size by default, none for `none`. */
function sizesFor(flag: string, text: string | undefined, all: number[]): number[] {
  if (text === undefined) return all;
  return text === 'none' ? [] : parseCounts(flag, text);
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        rows: { type: 'string', default: '1000000,10000000' },
        'memory-rows': { type: 'string' },
        'disk-rows': { type: 'string' },
        gets: { type: 'string', default: '2000' },
        seed: { type: 'string', default: String(DEFAULT_SEED) },
        'settle-ms': { type: 'string', default: '10000' },
      },
    },
    headerUsage(import.meta.url),
  );
  const sizes = parseCounts('--rows', values.rows);
  const diskSizes = sizesFor('--disk-rows', values['disk-rows'], sizes);
  const seed = Number(values.seed);
  const settleMs = parsePositive('--settle-ms', values['settle-ms']);
  const memorySizes = sizesFor('--memory-rows', values['memory-rows'], sizes);
  const gets = Number(values.gets);
  const results: SizeResult[] = [];
  for (const rows of sizes) {
    const modes: Mode[] = [];
    if (memorySizes.includes(rows)) modes.push('memory');
    if (diskSizes.includes(rows)) modes.push('disk');
    if (modes.length > 0) results.push(await measureSize(rows, seed, modes, settleMs, gets));
  }

  process.stdout.write(`\nreplica memory benchmark, ${new Date().toISOString()}, ${machineNote()}\n\n`);
  process.stdout.write(
    'memory mode (RSS sampled idle and empty, then after /readyz, lookups and a settle):\n',
  );
  const memory = results.filter((r) => r.memory !== null);
  printTable(
    [...FIGURE_COLUMNS, 'snapshot bytes/row', 'load s', '< 64 B/row'],
    memory.map((r) => {
      const m = r.memory as ReplicaResult;
      return [...figuresOf(r.rows, m), r.snapshotBytesPerRow, loadSeconds(m), r.goals.memoryBytesPerRow];
    }),
  );
  const disk = results.filter((r) => r.disk !== null);
  if (disk.length > 0) {
    process.stdout.write('\ndisk mode:\n');
    const missing = disk.find((r) => r.disk !== null && 'notImplemented' in r.disk);
    if (missing !== undefined && missing.disk !== null && 'notImplemented' in missing.disk) {
      process.stdout.write(`disk mode: not implemented (${missing.disk.notImplemented})\n`);
    } else {
      printTable(
        [...FIGURE_COLUMNS, 'load s', `RSS < ${mb(GOAL_DISK_RSS_BYTES)} MB`],
        disk.map((r) => {
          const d = r.disk as ReplicaResult;
          return [...figuresOf(r.rows, d), loadSeconds(d), r.goals.diskRss];
        }),
      );
    }
  }
  printJson('memory', { seed, settleMs, gets, results });
}

await runBench(main);
