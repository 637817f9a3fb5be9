/**
 * Where a benchmarked process's CPU time went, from the .cpuprofile files `node --cpu-prof` writes.
 *
 * Concurrency: reads files after the process has exited.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ROOT } from '../../lib/processes.js';
import { log, printTable, round } from './report.js';

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
