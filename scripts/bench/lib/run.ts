/**
 * How a benchmark runs: `runBench` calls its main, then stops every process it started and removes every temp
 * directory it made, whether main resolved, threw or the run was interrupted (SIGINT/SIGTERM), so a failed run
 * never leaves a server behind. Every process a benchmark starts is registered with `track` (or started through
 * roles.ts or tools.ts, which register it).
 *
 * Concurrency: one benchmark per process; `runBench` is called once.
 */
import type { ChildProcess } from 'node:child_process';
import { Cleanup, type CleanupTask } from '../../lib/cleanup.js';
import { markCodeAtStart } from './report.js';

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

/** Ends `child`: SIGTERM, then SIGKILL after 10 s. */
export async function killChild(child: ChildProcess): Promise<void> {
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
  markCodeAtStart();
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

/** Resolves after `ms` milliseconds (a settle time, not a wait for a condition). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
