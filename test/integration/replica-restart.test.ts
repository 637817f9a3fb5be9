/**
 * A restarted replica with a local version serves it from its first answer: the port opens only once the version
 * is loaded, so there is no window of 503s (a replica process, no leader to ask).
 */
import { spawn } from 'node:child_process';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { ROOT, TS_NODE_ARGS } from '../../scripts/lib/processes.js';
import {
  cleanup,
  csvOf,
  ingest,
  onCleanup,
  REPLICA_TOKEN,
  startLeader,
  startReplica,
  stopReplica,
  waitFor,
} from '../helpers.js';

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A connection to `port` as soon as it accepts one (tries again at once on refusal). */
async function connectWhenOpen(port: number, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket !== undefined) return socket;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
  }
}

describe('replica restart: the local version answers from the first request', function () {
  this.timeout(60_000);
  afterEach(cleanup);

  it('answers 200 to the first request once its port is open (a process with a local version and no leader)', async () => {
    const leader = await startLeader();
    const rows = Array.from({ length: 20_000 }, (_, i) => [`id-${i}`, `${i}.5`, '2018-01-01 00:00:00']);
    await ingest(leader.url, csvOf(rows));
    const first = await startReplica(leader.url);
    await waitFor(() => first.index.current?.manifest.version, 10_000, 'the first version');
    await stopReplica(first);

    const port = await freePort();
    const child = spawn(process.execPath, [...TS_NODE_ARGS, join(ROOT, 'replica', 'main.ts')], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        DATA_DIR: first.config.dataDir,
        LEADER_URL: 'http://127.0.0.1:9',
        REPLICA_TOKEN,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => child.once('exit', r));
    onCleanup(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    const socket = await connectWhenOpen(port, 30_000);
    onCleanup(async () => socket.destroy());
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => {
        text += c;
        if (text.includes('\r\n\r\n')) resolve(text);
      });
      socket.write('GET /promotions/id-7 HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    expect(answer.split('\r\n')[0]).to.equal('HTTP/1.1 200 OK');
  });
});
