/**
 * What a benchmark prints: progress on stderr, an aligned table and one JSON line with every figure on stdout
 * (`tail -1 | jq`), with the machine and the code measured; verdicts against the goals.
 *
 * Concurrency: one benchmark per process; `markCodeAtStart` is called once, by runBench.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../lib/processes.js';

const MiB = 1024 * 1024;

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

/** Records the code state at the start of the run (runBench calls it). */
export function markCodeAtStart(): void {
  codeAtStart = codeState();
}

/** Where every run's JSON line is kept, one file per benchmark (`<name>.jsonl`): BENCHMARKS.md's raw data. */
export const RESULTS_DIR = join(ROOT, 'scripts', 'bench', 'results');

/**
 * Prints the final machine-readable line: one JSON object with every figure (`tail -1 | jq`), and appends it to
 * RESULTS_DIR/<name>.jsonl. `code` is the state when the run started; `codeChangedDuringRun` is set when the
 * working tree changed before it ended.
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
  const line = `${JSON.stringify(out)}\n`;
  process.stdout.write(line);
  mkdirSync(RESULTS_DIR, { recursive: true });
  appendFileSync(join(RESULTS_DIR, `${name}.jsonl`), line);
}
