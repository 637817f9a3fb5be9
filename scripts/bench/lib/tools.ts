/**
 * Outside tools the benchmarks drive (wrk, sqlite3, taskset...): installed from Debian on demand, and run to their
 * end with their output collected. Every tool run is registered with run.ts's `track`.
 *
 * Concurrency: one benchmark per process; installs run synchronously, one at a time.
 */
import { execFileSync, spawn } from 'node:child_process';
import { ROOT } from '../../lib/processes.js';
import { log } from './report.js';
import { track } from './run.js';

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
