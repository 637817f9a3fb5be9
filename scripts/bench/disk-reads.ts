/**
 * Positional reads, the ways Node can do them (decision 007): callback `fs.read` through libuv's thread pool at
 * several UV_THREADPOOL_SIZE values and with UV_USE_IO_URING=1, against disk mode's read pool (worker threads
 * reading with `fs.readSync`, batches handed over through shared memory).
 *   node --import tsx scripts/bench/disk-reads.ts [--file-mib 256] [--duration-s 3] [--in-flight 64] [--bytes 128]
 *
 * One file of random bytes in the page cache (read through once first); each contender runs in its own process,
 * `taskset -c 0` (one core, as a replica is benchmarked), keeping `--in-flight` reads of `--bytes` bytes at random
 * offsets in flight for `--duration-s` seconds. Reported: reads/s (wall clock) and CPU per read of the whole
 * process (every thread: the main thread, the pool or the workers), and whether an io_uring was open (its file
 * descriptor in /proc/self/fd), since libuv may ignore UV_USE_IO_URING.
 */
import { read, readdirSync, readlinkSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sharedReadPool } from '../../common/snapshot/read-pool.js';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { ROOT, TS_NODE_ARGS } from '../lib/processes.js';
import { warmFile } from './lib/data.js';
import { log, machineNote, printJson, printTable, round } from './lib/report.js';
import { runBench, tempDir } from './lib/run.js';
import { runTool } from './lib/tools.js';

interface ChildResult {
  readsPerS: number;
  cpuUsPerRead: number;
  ioUring: boolean;
}

function ioUringOpen(): boolean {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes('io_uring')) return true;
    } catch {
      // A descriptor that closed meanwhile.
    }
  }
  return false;
}

/** One contender, in this process: keeps `inFlight` reads going for `seconds`. */
async function child(
  mode: string,
  path: string,
  seconds: number,
  inFlight: number,
  bytes: number,
): Promise<void> {
  const h = await open(path, 'r');
  const size = (await h.stat()).size;
  const fd = h.fd;
  const pool = mode.startsWith('pool') ? sharedReadPool(Number(mode.slice(4))) : undefined;
  await pool?.start();
  const until = performance.now() + seconds * 1000;
  let done = 0;
  let sawUring = false;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let running = 0;
    const next = (): void => {
      if (performance.now() >= until) {
        if (running === 0) resolve();
        return;
      }
      running++;
      const position = Math.floor(Math.random() * (size - bytes));
      const finish = (err: Error | null | undefined) => {
        running--;
        if (err) {
          reject(err);
          return;
        }
        done++;
        next();
      };
      if (pool !== undefined) {
        pool.read(fd, position, bytes, -1, 0, 0, (_n, _s, _o, _a, err) => finish(err));
      } else {
        read(fd, Buffer.allocUnsafe(bytes), 0, bytes, position, (err) => finish(err));
      }
    };
    for (let i = 0; i < inFlight; i++) next();
    setTimeout(() => {
      sawUring = ioUringOpen();
    }, 100);
  });
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const result: ChildResult = {
    readsPerS: round(done / wallS),
    cpuUsPerRead: round((cpu.user + cpu.system) / done, 2),
    ioUring: sawUring,
  };
  process.stdout.write(`READS_JSON ${JSON.stringify(result)}\n`);
  process.exit(0);
}

const CONTENDERS: { name: string; mode: string; env: Record<string, string> }[] = [
  { name: 'fs.read, UV_THREADPOOL_SIZE=4 (default)', mode: 'fs', env: {} },
  { name: 'fs.read, UV_THREADPOOL_SIZE=1', mode: 'fs', env: { UV_THREADPOOL_SIZE: '1' } },
  { name: 'fs.read, UV_THREADPOOL_SIZE=2', mode: 'fs', env: { UV_THREADPOOL_SIZE: '2' } },
  { name: 'fs.read, UV_THREADPOOL_SIZE=8', mode: 'fs', env: { UV_THREADPOOL_SIZE: '8' } },
  { name: 'fs.read, UV_USE_IO_URING=1', mode: 'fs', env: { UV_USE_IO_URING: '1' } },
  { name: 'read pool, 1 worker', mode: 'pool1', env: {} },
  { name: 'read pool, 2 workers', mode: 'pool2', env: {} },
];

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        'file-mib': { type: 'string', default: '256' },
        'duration-s': { type: 'string', default: '3' },
        'in-flight': { type: 'string', default: '64' },
        bytes: { type: 'string', default: '128' },
        child: { type: 'string' },
        path: { type: 'string' },
      },
    },
    headerUsage(import.meta.url),
  );
  const seconds = Number(values['duration-s']);
  const inFlight = Number(values['in-flight']);
  const bytes = Number(values.bytes);
  if (values.child !== undefined) {
    await child(values.child, values.path as string, seconds, inFlight, bytes);
    return;
  }
  const dir = await tempDir('disk-reads');
  const path = join(dir, 'data');
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const h = await open(path, 'w');
  for (let i = 0; i < Number(values['file-mib']); i++) await h.write(chunk);
  await h.close();
  await warmFile(path);
  const rows: (string | number)[][] = [];
  const results: Record<string, ChildResult> = {};
  for (const c of CONTENDERS) {
    const args = [
      '-c',
      '0',
      'env',
      ...Object.entries(c.env).map(([k, v]) => `${k}=${v}`),
      process.execPath,
      ...TS_NODE_ARGS,
      join(ROOT, 'scripts', 'bench', 'disk-reads.ts'),
      '--child',
      c.mode,
      '--path',
      path,
      '--duration-s',
      String(seconds),
      '--in-flight',
      String(inFlight),
      '--bytes',
      String(bytes),
    ];
    const r = await runTool('taskset', args, { timeoutMs: (seconds + 60) * 1000 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('READS_JSON '));
    if (r.code !== 0 || line === undefined) throw new Error(`${c.name} failed (${r.code}): ${r.stderr}`);
    const res = JSON.parse(line.slice('READS_JSON '.length)) as ChildResult;
    log(`  ${c.name}: ${res.readsPerS} reads/s, ${res.cpuUsPerRead} us CPU/read, io_uring ${res.ioUring}`);
    results[c.name] = res;
    rows.push([c.name, res.readsPerS, res.cpuUsPerRead, res.ioUring ? 'yes' : 'no']);
  }
  await rm(path, { force: true });
  process.stdout.write(
    `\nPositional reads, ${new Date().toISOString()}, ${machineNote()}\n` +
      `${values['file-mib']} MiB file in the page cache, ${bytes}-byte reads at random offsets, ${inFlight} in ` +
      `flight, ${seconds} s each, one process per contender on core 0\n\n`,
  );
  printTable(['contender', 'reads/s', 'CPU us/read (all threads)', 'io_uring open'], rows);
  printJson('disk-reads', { fileMib: Number(values['file-mib']), bytes, inFlight, seconds, results });
}

await (process.argv.includes('--child') ? main() : runBench(main));
