/**
 * The servers a benchmark starts: a leader and replicas with the bench tokens on loopback (through
 * scripts/lib/processes.ts), or any command that prints a `listening` line (bare-server.ts, a role under taskset);
 * and the few calls the benchmarks make to them. Every process is registered with run.ts, which stops it.
 *
 * Concurrency: one benchmark per process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { ROOT, type RoleProcess, type StartOptions, startRole, waitFor } from '../../lib/processes.js';
import { type UploadResult, uploadFile } from '../../upload.js';
import { killChild, onCleanup, track } from './run.js';

/** Tokens for the leader and replicas a benchmark starts (config wants at least 16 characters). */
export const TOKENS = Object.freeze({
  leader: `bench-leader-${randomBytes(8).toString('hex')}`,
  replica: `bench-replica-${randomBytes(8).toString('hex')}`,
});

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

/**
 * Uploads `csv` to the benchmark's leader (with `?force=true` when `force`); throws unless it answers 201, with
 * the leader's answer and its last log lines.
 */
export async function ingestFile(leader: RoleProcess, csv: string, force = false): Promise<UploadResult> {
  const up = await uploadFile(leader.url, TOKENS.leader, csv, force);
  if (up.status !== 201)
    throw new Error(
      `the leader refused the file (${up.status}): ${JSON.stringify(up.body)}${lastLines(leader.lines)}`,
    );
  return up;
}

/**
 * Waits until the replica at `replicaUrl` is ready with `version` (and serves it in `mode`, when given), polling
 * its /readyz, for up to `timeoutMs` (5 minutes by default); returns its /readyz body.
 */
export function waitForVersion(
  replicaUrl: string,
  version: unknown,
  { mode, timeoutMs = 5 * 60_000 }: { mode?: string; timeoutMs?: number } = {},
): Promise<Record<string, unknown>> {
  return waitFor(
    async () => {
      const { status, body } = await getJson(`${replicaUrl}/readyz`);
      const served = status === 200 && body.version === version && (mode === undefined || body.mode === mode);
      return served ? body : undefined;
    },
    timeoutMs,
    `${replicaUrl} to serve version ${version}${mode === undefined ? '' : ` in ${mode} mode`}`,
  );
}

/** Waits (up to 30 s) until the leader lists every one of `replicaUrls` (by their first poll), so notices reach them. */
export function waitForRegistration(leaderUrl: string, replicaUrls: readonly string[]): Promise<true> {
  return waitFor(
    async () => {
      const { body } = await getJson(`${leaderUrl}/replicas`, TOKENS.leader);
      const listed = new Set((body.replicas as { url: string }[]).map((r) => r.url));
      return replicaUrls.every((url) => listed.has(url)) ? true : undefined;
    },
    30_000,
    `the leader to register ${replicaUrls.join(', ')}`,
  );
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

/** The last `n` lines a process printed, indented, for an error message. */
export function lastLines(lines: readonly string[], n = 5): string {
  return lines
    .slice(-n)
    .map((l) => `\n    ${l}`)
    .join('');
}
