/**
 * What the benchmarks read of a process from /proc (memory, CPU time), and where they pin it (taskset).
 *
 * Concurrency: stateless reads; safe at any time while the process lives.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { runTool } from './tools.js';

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

/** Pins every thread of `pid` (the main thread, libuv's pool, V8's helpers) to `cpu`. */
export async function pinProcess(pid: number, cpu: number): Promise<void> {
  const r = await runTool('taskset', ['-a', '-cp', String(cpu), String(pid)], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`taskset -a -cp ${cpu} ${pid} failed: ${r.stderr}`);
}
