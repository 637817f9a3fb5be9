/**
 * Shared parts of the benchmarks in scripts/bench/: cached generated CSVs, Debian tools installed on demand,
 * /proc readings, process start and guaranteed stop, and the table/verdict printing every benchmark uses.
 *
 * Every process a benchmark starts is registered with `track` (or started through `spawnListening`,
 * `startTracked` or `runTool`, which register it); `runBench` stops them all when the benchmark ends, fails or is
 * interrupted, so a failed run never leaves a server behind.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { generateFile } from '../generate.js';
import { Cleanup, type CleanupTask } from '../lib/cleanup.js';
import { ROOT, type RoleProcess, type StartOptions, startRole } from '../lib/processes.js';

/** Where generated CSVs are cached (gitignored through data/). */
export const BENCH_DATA_DIR = join(ROOT, 'data', 'bench');
/** The seed of every generated benchmark file unless `--seed` says otherwise. */
export const DEFAULT_SEED = 42;
const MiB = 1024 * 1024;

/** Tokens for the leader and replicas a benchmark starts (config wants at least 16 characters). */
export const TOKENS = Object.freeze({
  leader: `bench-leader-${randomBytes(8).toString('hex')}`,
  replica: `bench-replica-${randomBytes(8).toString('hex')}`,
});

// ---------------------------------------------------------------------------------------------------------------
// Cleanup: every started process and temp directory is released at the end, even on failure or Ctrl-C.

const stoppers = new Cleanup((err) => process.stderr.write(`cleanup: ${err.message}\n`));
const children = new Set<ChildProcess>();

/** Registers `stop` to run when the benchmark ends; returns it. */
export function onCleanup(stop: CleanupTask): CleanupTask {
  return stoppers.add(stop);
}

/** Registers a child process: it is killed (SIGTERM, then SIGKILL) when the benchmark ends. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function cleanup(): Promise<void> {
  await stoppers.run();
  await Promise.all([...children].map(killChild));
}

/**
 * Runs a benchmark's `main`, then stops every process and removes every temp directory it registered, whether
 * `main` resolved, threw or the run was interrupted (SIGINT/SIGTERM). Exits 1 on failure.
 */
export async function runBench(main: () => Promise<void>): Promise<void> {
  const interrupt = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping the processes this benchmark started\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  // Last resort if something exits the process directly: no server outlives the benchmark.
  process.once('exit', () => {
    for (const c of children) c.kill('SIGKILL');
  });
  codeAtStart = codeState();
  let failed = false;
  try {
    await main();
  } catch (err) {
    failed = true;
    process.stderr.write(`benchmark failed: ${(err as Error).stack ?? err}\n`);
  } finally {
    await cleanup();
  }
  process.exit(failed ? 1 : 0);
}

/** A fresh directory under the system temp dir, removed when the benchmark ends. */
export function tempDir(prefix: string): Promise<string> {
  return stoppers.tempDir(`promotions-bench-${prefix}-`);
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments

/** Parses `1000000,10000000` (underscores and `1e6`/`10M` shorthands allowed) into whole numbers. */
export function parseCounts(flag: string, text: string): number[] {
  return text.split(',').map((part) => {
    const s = part.trim().replace(/_/g, '');
    const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s);
    const n = m
      ? Number(m[1]) * (m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6)
      : Number(s.length > 0 ? s : Number.NaN);
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new Error(`${flag}: "${part}" is not a positive whole number`);
    return n;
  });
}

/** Parses a positive number flag. */
export function parsePositive(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag}: "${text}" is not a positive number`);
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Data

/**
 * The path of a generated CSV of `rows` rows (no duplicates) for `seed`, generating it once under data/bench/.
 * The file is written under a temporary name and renamed, so a file with the final name is always complete.
 */
export async function ensureCsv(rows: number, seed = DEFAULT_SEED): Promise<string> {
  await mkdir(BENCH_DATA_DIR, { recursive: true });
  const path = join(BENCH_DATA_DIR, `promotions-${rows}-seed${seed}.csv`);
  try {
    if ((await stat(path)).size > 0) return path;
  } catch {
    // Not generated yet.
  }
  const tmp = `${path}.tmp-${process.pid}`;
  onCleanup(() => rm(tmp, { force: true }));
  const t0 = performance.now();
  log(`generating ${rows} rows (seed ${seed}) into ${path} ...`);
  await generateFile(tmp, { rows, seed });
  await rename(tmp, path);
  log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return path;
}

/** Reads a file through once so that every contender in a comparison reads it from the page cache. */
export async function warmFile(path: string): Promise<void> {
  for await (const _ of createReadStream(path, { highWaterMark: 4 * MiB })) {
    // Only the reading matters.
  }
}

/**
 * Every `step`-th id of a generated CSV (ids are random UUIDs, so an even spacing is a random sample over the
 * whole key space), at most `count` of them.
 */
export async function sampleIds(csvPath: string, count: number, totalRows: number): Promise<string[]> {
  const step = Math.max(1, Math.floor(totalRows / count));
  const ids: string[] = [];
  let line = 0;
  const rl = createInterface({
    input: createReadStream(csvPath, { encoding: 'latin1' }),
    crlfDelay: Infinity,
  });
  for await (const text of rl) {
    if (line++ % step === 0) {
      ids.push(text.slice(0, text.indexOf(',')));
      if (ids.length >= count) {
        rl.close();
        break;
      }
    }
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------------------------
// Tools and /proc

let aptUpdated = false;

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Installs the Debian package `pkg` when `command` is missing (`apt-get update` once per run). */
export function ensureTool(command: string, pkg = command): void {
  if (hasCommand(command)) return;
  log(`${command} is missing: installing Debian package ${pkg}`);
  if (!aptUpdated) {
    execFileSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
    aptUpdated = true;
  }
  execFileSync('apt-get', ['install', '-y', pkg], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (!hasCommand(command)) throw new Error(`${command} is still missing after apt-get install ${pkg}`);
}

/** Memory of a live process from /proc/<pid>/status, in bytes. */
export interface ProcMemory {
  /** VmRSS: resident now. */
  readonly rssBytes: number;
  /** VmHWM: the peak resident size since the process started. */
  readonly hwmBytes: number;
}

/** Reads VmRSS and VmHWM of `pid`. */
export async function procMemory(pid: number): Promise<ProcMemory> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

let clockTicks: number | undefined;

/** CPU time (user + system) `pid` has used so far, in seconds, from /proc/<pid>/stat. */
export async function procCpuSeconds(pid: number): Promise<number> {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after its closing parenthesis; utime and stime
  // are fields 14 and 15 of the whole line.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

// ---------------------------------------------------------------------------------------------------------------
// Processes

/**
 * Log level of benchmarked processes: `info`, because the `listening` line that tells us the address is an info
 * line (at `warn` the process never says where it listens). Neither role logs per read request, and the leader
 * logs one line per HTTP request, so the benchmarks see a handful of lines.
 */
const BENCH_LOG_LEVEL = 'info';

/** Environment for a leader under `dataDir`: loopback, port 0, the bench tokens. */
export function leaderEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    LEADER_TOKEN: TOKENS.leader,
    REPLICA_TOKEN: TOKENS.replica,
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: BENCH_LOG_LEVEL,
  };
  if (process.env.BUILD_MEMORY_BYTES) env.BUILD_MEMORY_BYTES = process.env.BUILD_MEMORY_BYTES;
  return { ...env, ...extra };
}

/** Environment for a replica under `dataDir` following `leaderUrl`; polls rarely unless `extra` says otherwise. */
export function replicaEnv(
  dataDir: string,
  leaderUrl: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REPLICA_TOKEN: TOKENS.replica,
    DATA_DIR: dataDir,
    LEADER_URL: leaderUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: BENCH_LOG_LEVEL,
    SYNC_INTERVAL_MS: '3600000',
    ...extra,
  };
}

/** Starts a leader or replica through scripts/lib/processes.ts and registers its stop. */
export async function startTracked(role: 'leader' | 'replica', options: StartOptions): Promise<RoleProcess> {
  const p = await startRole(role, options);
  track(p.child);
  onCleanup(() => p.stop());
  return p;
}

/** A process started by `spawnListening`. */
export interface ListeningProcess {
  readonly pid: number;
  readonly url: string;
  readonly child: ChildProcess;
  /** The last lines it printed (stdout and stderr), for error messages. */
  readonly lines: string[];
  stop(): Promise<void>;
}

/**
 * Spawns `command args` and resolves once it prints a JSON line with `"msg":"listening"` and a `url` (the shape
 * the leader, the replica and bare-server.ts print). Used to start servers under `taskset`.
 */
export function spawnListening(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<ListeningProcess> {
  const child = track(
    spawn(command, args, {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const stop = () => killChild(child);
  onCleanup(stop);
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 200) lines.shift();
  };
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
    });
    createInterface({ input: child.stderr! }).on('line', keep);
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${command} ${args.join(' ')} did not listen within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      if (!line.includes('"msg":"listening"')) return;
      const { url } = JSON.parse(line) as { url: string };
      clearTimeout(timer);
      resolve({ pid: child.pid!, url, child, lines, stop });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} ${args.join(' ')} exited with ${code} before listening: ${stderr}`));
    });
  });
}

/** What a finished tool run printed. */
export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a command to its end (killed after `timeoutMs`), feeding it `input` on stdin; resolves with its output. */
export function runTool(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs: number; cwd?: string },
): Promise<ToolResult> {
  const t0 = performance.now();
  const child = track(
    // No stdin pipe without input: writing to a tool that already exited (taskset) raised EPIPE.
    spawn(command, args, {
      cwd: options.cwd ?? ROOT,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: process.env,
    }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  if (options.input !== undefined) child.stdin?.end(options.input);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} took longer than ${options.timeoutMs} ms; killed it`));
    }, options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Pins every thread of `pid` (the main thread, libuv's pool, V8's helpers) to `cpu`. */
export async function pinProcess(pid: number, cpu: number): Promise<void> {
  const r = await runTool('taskset', ['-a', '-cp', String(cpu), String(pid)], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`taskset -a -cp ${cpu} ${pid} failed: ${r.stderr}`);
}

/** GETs `url` (with `token` as its bearer token, when given) and parses its JSON answer; a network error rejects. */
export async function getJson(
  url: string,
  token?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body };
}

/** The last `n` lines a process printed, indented, for an error message. */
export function lastLines(lines: readonly string[], n = 5): string {
  return lines
    .slice(-n)
    .map((l) => `\n    ${l}`)
    .join('');
}

/** Resolves after `ms` milliseconds (a settle time, not a wait for a condition). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The size of a file in bytes. */
export async function fileBytes(path: string): Promise<number> {
  const h = await open(path, 'r');
  try {
    return (await h.stat()).size;
  } finally {
    await h.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Output

/** Writes a progress line to stderr (stdout carries the table and the JSON line). */
export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** PASS or MISS for a goal. */
export function verdict(ok: boolean): 'PASS' | 'MISS' {
  return ok ? 'PASS' : 'MISS';
}

/** A one-line description of the machine and how busy it is now (others share it), for the report. */
export function machineNote(): string {
  const c = cpus();
  const load = loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
  return `${c.length} cores (${c[0]?.model ?? 'unknown CPU'}), shared, load average now ${load}; node ${process.version}`;
}

/** Rounds to `digits` decimals. */
export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Bytes as MB (10^6 would mislead next to /proc's KiB: this is MiB, printed as "MB" as `ps` and `top` do). */
export function mb(bytes: number): number {
  return round(bytes / MiB, 1);
}

/** Prints an aligned text table to stdout. */
export function printTable(header: readonly string[], rows: readonly (readonly (string | number)[])[]): void {
  const cells = [header, ...rows].map((r) => r.map(String));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(`${line(cells[0])}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of cells.slice(1)) process.stdout.write(`${line(r)}\n`);
}

/**
 * The code measured: HEAD's commit and the files of the service and its benchmarks that differ from it (the
 * working tree may be ahead of HEAD while work is in progress).
 */
export function codeState(): { commit: string; uncommitted: string[] } {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  try {
    // Porcelain lines are `XY path`: the two status columns may start with a space, so no trim before slicing.
    const changed = git('status', '--porcelain', '--', 'common', 'leader', 'replica', 'scripts')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.slice(3));
    return { commit: git('rev-parse', '--short', 'HEAD').trim(), uncommitted: changed };
  } catch {
    return { commit: 'unknown', uncommitted: [] };
  }
}

/** The code state when the benchmark started (runBench), compared with the state at the end. */
let codeAtStart: ReturnType<typeof codeState> | undefined;

/**
 * Prints the final machine-readable line: one JSON object with every figure (`tail -1 | jq`). `code` is the state
 * when the run started; `codeChangedDuringRun` is set when the working tree changed before it ended.
 */
export function printJson(name: string, figures: Record<string, unknown>): void {
  const end = codeState();
  const start = codeAtStart ?? end;
  const changed = JSON.stringify(start) !== JSON.stringify(end);
  const out = {
    bench: name,
    date: new Date().toISOString(),
    machine: machineNote(),
    code: start,
    ...(changed ? { codeChangedDuringRun: end } : {}),
    ...figures,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// CPU profiles

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Where a process's CPU time went (`node --cpu-prof --cpu-prof-dir=DIR`): node writes one .cpuprofile per thread
 * (main, worker threads, tsx's loader thread), named CPU.<date>.<time>.<pid>.<thread>.<seq>. For the newest pid in `dir`, prints busy time per thread
 * and self time by file and by function over all threads, idle time left out.
 */
export async function printCpuProfile(dir: string, label: string): Promise<void> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  const pidOf = (f: string) => Number(f.split('.')[3]);
  const pid = Math.max(...files.map(pidOf));
  const mine = files.filter((f) => pidOf(f) === pid).sort();
  if (mine.length === 0) {
    log(`no .cpuprofile in ${dir}`);
    return;
  }
  const place = (u: string) => {
    if (u === '') return '(native)';
    const path = u.startsWith('file://') ? relative(ROOT, new URL(u).pathname) : u;
    return path.replace(/^node_modules\/((?:@[^/]+\/)?[^/]+)\/.*$/, 'node_modules/$1');
  };
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  const threads: (string | number)[][] = [];
  let total = 0;
  for (const f of mine) {
    const prof = JSON.parse(await readFile(join(dir, f), 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    let busy = 0;
    prof.samples.forEach((id, i) => {
      const n = byId.get(id)!;
      const us = prof.timeDeltas[i] ?? 0;
      if (n.callFrame.functionName === '(idle)') return;
      busy += us;
      const file = place(n.callFrame.url);
      // Modules compiled by tsx report every function on line 1: the line is left out where it says nothing.
      const line = n.callFrame.lineNumber > 0 ? `:${n.callFrame.lineNumber + 1}` : '';
      const fn = `${n.callFrame.functionName || '(anonymous)'} ${file}${line}`;
      byFn.set(fn, (byFn.get(fn) ?? 0) + us);
      byFile.set(file, (byFile.get(file) ?? 0) + us);
    });
    total += busy;
    threads.push([`thread ${f.split('.')[4]}`, round(busy / 1000)]);
  }
  const top = (m: Map<string, number>, k: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, us]) => [name, round(us / 1000), `${round((100 * us) / total, 1)}%`]);
  process.stdout.write(
    `\n${label} CPU profiles in ${dir} (pid ${pid}, whole life: start-up included), busy (non-idle) ms per thread:\n`,
  );
  printTable(['thread', 'busy ms'], threads);
  process.stdout.write('\nself time by file, all threads:\n');
  printTable(['file', 'ms', 'share'], top(byFile, 15));
  process.stdout.write('\nself time by function, all threads:\n');
  printTable(['function', 'ms', 'share'], top(byFn, 25));
}

/** The WRK_JSON line every wrk script prints when wrk is done (read by the benchmarks' wrk runner). */
export const WRK_DONE = `
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
`;

/**
 * The wrk script: reads the ids file once per thread, pre-formats every request, and picks one at random per
 * request (a fixed seed, so every server sees the same sequence). `done` prints one line, `WRK_JSON {...}`, with
 * requests, duration_us, non2xx, socket_errors and latency percentiles in microseconds.
 */
export function wrkRandomIdsScript(idsPath: string): string {
  return `
local ids_path = ${JSON.stringify(idsPath)}
local reqs = {}
local n = 0

function init(args)
  for line in io.lines(ids_path) do
    n = n + 1
    reqs[n] = wrk.format("GET", "/promotions/" .. line)
  end
  math.randomseed(42)
end

function request()
  return reqs[math.random(n)]
end
${WRK_DONE}`;
}

/** Makes a kept version current on the leader (POST /snapshots/{version}/activate); throws unless it answers 200. */
export async function activateVersion(leaderUrl: string, version: number): Promise<void> {
  const res = await fetch(`${leaderUrl}/snapshots/${version}/activate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKENS.leader}` },
  });
  await res.body?.cancel();
  if (res.status !== 200) throw new Error(`activate ${version} answered ${res.status}`);
}
