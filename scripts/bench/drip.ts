/**
 * Byte-drip benchmark: the server CPU a request head costs when it arrives a byte at a time (a slow or hostile
 * client), on the replica (its raw fast path parses heads itself) against a bare node:http server (llhttp), in the
 * same run. The goal (decision 004, "cost no more per byte than node:http"): a ratio replica/bare of at most 1.
 *   node --import tsx scripts/bench/drip.ts [--connections 30] [--head-bytes 4000] [--interval-ms 1] [--rounds 3]
 *
 * Both servers run pinned to core 0; this process drips on core 1 from `--connections` connections at once, one
 * byte per connection every `--interval-ms`, each head `GET /promotions/<id> HTTP/1.1` with a Host and an X-Pad
 * header making it `--head-bytes` long (keep it under MAX_HEADER_BYTES and the drip under HEADERS_TIMEOUT_MS).
 * A round drips one head per connection and waits for every answer; the figure is the server's CPU time
 * (/proc/PID/stat) over the round, less what the server burns idle over as long (measured first: timers, the
 * metrics' event-loop monitor), divided by the bytes sent. Rounds alternate bare, replica, bare, replica ...;
 * the median of each is reported with the ratio. The replica has no leader (nothing to serve, so reads answer
 * 503): the work measured is the head's, which is the same for any answer.
 */
import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { parseCommandLine } from '../lib/cli.js';
import { parsePositive } from './lib/args.js';
import { procCpuSeconds } from './lib/proc.js';
import { log, printJson, printTable, round, verdict } from './lib/report.js';
import { replicaEnv } from './lib/roles.js';
import { runBench, tempDir } from './lib/run.js';
import { ensureTool } from './lib/tools.js';
import { pinnedNode } from './wrk.js';

const HELP = `Usage: node --import tsx scripts/bench/drip.ts [options]
  --connections N    connections dripping at once (default 30)
  --head-bytes N     bytes of each request head (default 4000; under MAX_HEADER_BYTES)
  --interval-ms N    milliseconds between two bytes on one connection (default 1)
  --rounds N         rounds per server, alternating (default 3)
  --help, -h         this text`;

const DRIP_CPU = 1;

/** A request head of exactly `bytes` bytes. */
function headOf(bytes: number, n: number): string {
  const start = `GET /promotions/drip-${n} HTTP/1.1\r\nHost: x\r\nX-Pad: `;
  const end = '\r\n\r\n';
  const pad = bytes - start.length - end.length;
  if (pad < 1) throw new Error(`--head-bytes must be at least ${start.length + end.length + 1}`);
  return `${start}${'p'.repeat(pad)}${end}`;
}

/** Opens `count` connections to `url`'s port. */
async function openAll(url: string, count: number): Promise<Socket[]> {
  const { port } = new URL(url);
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = connect(Number(port), '127.0.0.1', () => resolve(s));
          s.setNoDelay(true);
          s.once('error', reject);
        }),
    ),
  );
}

/** Drips one head per socket, a byte per socket every `intervalMs`; resolves once every answer's head arrived. */
async function dripRound(sockets: Socket[], headBytes: number, intervalMs: number): Promise<number> {
  const heads = sockets.map((_, i) => headOf(headBytes, i));
  const answered = sockets.map(
    (s) =>
      new Promise<void>((resolve, reject) => {
        let got = '';
        const onData = (c: Buffer) => {
          got += c.toString('latin1');
          if (got.includes('\r\n\r\n')) {
            s.off('data', onData);
            resolve();
          }
        };
        s.on('data', onData);
        s.once('close', () => reject(new Error(`the server closed a connection before answering: ${got}`)));
      }),
  );
  let sent = 0;
  await new Promise<void>((resolve) => {
    let at = 0;
    const timer = setInterval(() => {
      for (let i = 0; i < sockets.length; i++) sockets[i].write(heads[i][at]);
      sent += sockets.length;
      at++;
      if (at === headBytes) {
        clearInterval(timer);
        resolve();
      }
    }, intervalMs);
  });
  await Promise.all(answered);
  return sent;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        connections: { type: 'string', default: '30' },
        'head-bytes': { type: 'string', default: '4000' },
        'interval-ms': { type: 'string', default: '1' },
        rounds: { type: 'string', default: '3' },
      },
    },
    HELP,
  );
  const connections = parsePositive('--connections', values.connections);
  const headBytes = parsePositive('--head-bytes', values['head-bytes']);
  const intervalMs = parsePositive('--interval-ms', values['interval-ms']);
  const rounds = parsePositive('--rounds', values.rounds);
  headOf(headBytes, 0);
  ensureTool('taskset', 'util-linux');
  // This process drips on its own core, away from the servers'.
  execFileSync('taskset', ['-a', '-p', '-c', String(DRIP_CPU), String(process.pid)], { stdio: 'ignore' });

  const dir = await tempDir('drip');
  // No leader listens there: the replica keeps polling for it (rarely) and answers reads 503.
  const replica = await pinnedNode(
    'replica/main.ts',
    [],
    replicaEnv(join(dir, 'replica'), 'http://127.0.0.1:9', { HEADERS_TIMEOUT_MS: '60000' }),
  );
  const bare = await pinnedNode('scripts/bench/bare-server.ts', ['--port', '0'], {});
  log(
    `replica ${replica.url}, bare ${bare.url}; ${connections} connections x ${headBytes} bytes, a byte per ${intervalMs} ms`,
  );

  // What each server burns doing nothing, per second, to take out of the rounds' figures.
  const idleS = 3;
  const idleBefore = [await procCpuSeconds(bare.pid), await procCpuSeconds(replica.pid)];
  await new Promise((r) => setTimeout(r, idleS * 1000));
  const idleCpuPerS = {
    bare: ((await procCpuSeconds(bare.pid)) - idleBefore[0]) / idleS,
    replica: ((await procCpuSeconds(replica.pid)) - idleBefore[1]) / idleS,
  };
  log(
    `idle: bare ${round(idleCpuPerS.bare * 1000, 1)} ms CPU/s, replica ${round(idleCpuPerS.replica * 1000, 1)} ms CPU/s`,
  );

  const perByte: Record<'bare' | 'replica', number[]> = { bare: [], replica: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [name, server] of [
      ['bare', bare],
      ['replica', replica],
    ] as const) {
      const sockets = await openAll(server.url, connections);
      const before = await procCpuSeconds(server.pid);
      const start = Date.now();
      const sent = await dripRound(sockets, headBytes, intervalMs);
      const wallS = (Date.now() - start) / 1000;
      const cpuS = (await procCpuSeconds(server.pid)) - before - idleCpuPerS[name] * wallS;
      for (const s of sockets) s.destroy();
      const us = round((cpuS * 1e6) / sent, 2);
      perByte[name].push(us);
      log(`round ${r + 1} ${name}: ${us} us of server CPU per byte (${sent} bytes, ${round(cpuS, 2)} s CPU)`);
    }
  }
  const bareUs = median(perByte.bare);
  const replicaUs = median(perByte.replica);
  const ratio = round(replicaUs / bareUs, 2);
  printTable(
    ['server', 'median us CPU/byte', 'rounds'],
    [
      ['bare node:http', bareUs, perByte.bare.join(' ')],
      ['replica', replicaUs, perByte.replica.join(' ')],
      ['ratio replica/bare', ratio, verdict(ratio <= 1)],
    ],
  );
  printJson('drip', {
    connections,
    headBytes,
    intervalMs,
    rounds,
    idleCpuMsPerS: { bare: round(idleCpuPerS.bare * 1000, 2), replica: round(idleCpuPerS.replica * 1000, 2) },
    usPerByte: { bare: perByte.bare, replica: perByte.replica },
    median: { bare: bareUs, replica: replicaUs },
    ratio,
    goal: { noMoreThanBare: verdict(ratio <= 1) },
  });
}

void runBench(main);
