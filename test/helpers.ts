import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { expect } from 'chai';
import {
  type LeaderConfig,
  loadLeaderConfig,
  loadReplicaConfig,
  type ReplicaConfig,
} from '../common/config.js';
import { listen, type RunningServer } from '../common/http.js';
import { createLogger, type Logger } from '../common/logger.js';
import { createLeader, type Leader } from '../leader/leader.js';
import type { ReplicaRegistryOptions } from '../leader/replica-registry.js';
import { createReplicaApp, listenReplica } from '../replica/app.js';
import { LiveIndex } from '../replica/live-index.js';
import { Syncer, type SyncerOptions } from '../replica/sync.js';

import { Cleanup } from '../scripts/lib/cleanup.js';
import { waitFor } from '../scripts/lib/processes.js';

export { waitFor };

export const LEADER_TOKEN = 'leader-token-for-tests-0123456789';
export const REPLICA_TOKEN = 'replica-token-for-tests-0123456789';
/** Headers of an operator's call to a leader route that needs a token (GET /snapshots, /replicas). */
export const LEADER_AUTH = Object.freeze({ authorization: `Bearer ${LEADER_TOKEN}` });

const registered = new Cleanup();

/** Registers work for `cleanup()`. */
export function onCleanup(fn: () => Promise<unknown>): void {
  registered.add(fn);
}

/** Runs every registered cleanup, newest first; call it from afterEach/after. */
export function cleanup(): Promise<void> {
  return registered.run();
}

/** A fresh directory under the system temp dir, removed by `cleanup()`. */
export function tempDir(prefix = 'promotions-test-'): Promise<string> {
  return registered.tempDir(prefix);
}

export function quietLogger(): Logger {
  return createLogger('silent', 'test');
}

/** A logger at trace level that keeps every line it writes, for tests about what gets logged. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger('trace', 'test', { write: (line: string) => lines.push(line) }), lines };
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body parsed as JSON; empty when it is not JSON. */
  readonly json: Record<string, unknown>;
}

/** One HTTP request; never throws on a status code. */
export async function http(url: string, init: RequestInit = {}): Promise<HttpAnswer> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(30_000) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON: tests look at `text`.
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * A GET sent with its path exactly as given. WHATWG URL clients (fetch, browsers) remove `.` and `..` path
 * segments, even percent-encoded, so ids such as "." can only be asked for by a client that sends the path as is.
 */
export function rawGet(baseUrl: string, path: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method: 'GET' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A plain node:http server on an ephemeral loopback port answering with `handle` (a fake leader, a file server);
 * its base URL, `http://127.0.0.1:PORT`. With `tls` (a key and certificate in PEM), a node:https server and an
 * `https://` URL. Closed, connections and all, by cleanup().
 */
export async function fakeServer(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
  tls?: { key: Buffer; cert: Buffer },
): Promise<string> {
  const server = tls === undefined ? createServer(handle) : createHttpsServer(tls, handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onCleanup(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const scheme = tls === undefined ? 'http' : 'https';
  return `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * Opens a raw connection, writes `data` (then ends the client's side, FIN, when `endInput`), and resolves with what
 * came back once the server closed it; rejects if it is still open after `boundMs`.
 */
export function rawExchange(
  port: number,
  data: string | Buffer,
  boundMs = 10_000,
  endInput = false,
): Promise<{ text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(`the server kept the connection open for ${boundMs} ms, after ${JSON.stringify(text)}`),
      );
    }, boundMs);
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => {
      text += c;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text });
    });
    if (endInput) socket.end(data);
    else socket.write(data);
  });
}

/** One HTTP/1.1 answer as read off the wire: header names lower-cased, in the order sent. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: [string, string][];
  readonly body: string;
}

/** The value of header `name` in a raw answer, or undefined. */
export function rawHeader(answer: RawAnswer, name: string): string | undefined {
  return answer.headers.find(([k]) => k === name)?.[1];
}

/**
 * A raw HTTP/1.1 client connection: send any bytes (pipelined requests, malformed heads), read answers one by one.
 * Bodies are taken by Content-Length (none for 304). Registered for cleanup.
 */
export class RawConnection {
  private buffered = '';
  private wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => {
      this.buffered += c;
      this.wake?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  static async open(port: number): Promise<RawConnection> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    onCleanup(async () => socket.destroy());
    return new RawConnection(socket);
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /**
   * The next answer; rejects when the connection closes first or nothing complete arrives within `boundMs`.
   * `head`: the answer is to a HEAD request, so it has no body whatever its Content-Length says.
   */
  async next(boundMs = 10_000, head = false): Promise<RawAnswer> {
    const deadline = Date.now() + boundMs;
    for (;;) {
      const answer = this.take(head);
      if (answer !== undefined) return answer;
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buffered)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no complete answer within ${boundMs} ms: ${JSON.stringify(this.buffered)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Resolves once the server has closed the connection (within `boundMs`). */
  async waitClosed(boundMs = 10_000): Promise<void> {
    const deadline = Date.now() + boundMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error(`the server kept the connection open for ${boundMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private take(head: boolean): RawAnswer | undefined {
    const end = this.buffered.indexOf('\r\n\r\n');
    if (end === -1) return undefined;
    const [statusLine, ...lines] = this.buffered.slice(0, end).split('\r\n');
    const status = Number(statusLine.split(' ')[1]);
    const headers = lines.map((l): [string, string] => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
    });
    const length =
      status === 304 || head ? 0 : Number(headers.find(([k]) => k === 'content-length')?.[1] ?? 0);
    if (this.buffered.length < end + 4 + length) return undefined;
    const body = this.buffered.slice(end + 4, end + 4 + length);
    this.buffered = this.buffered.slice(end + 4 + length);
    return { status, headers, body };
  }
}

/** PUTs a CSV body to a leader with the leader token. */
export function putCsv(leaderUrl: string, csv: string, query = ''): Promise<HttpAnswer> {
  return http(`${leaderUrl}/promotions${query}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${LEADER_TOKEN}`, 'content-type': 'text/csv' },
    body: csv,
  });
}

/**
 * PUTs a CSV body to a leader and expects it to become a new version (201); returns that version's number.
 * `query` as for putCsv (`?force=true`).
 */
export async function ingest(leaderUrl: string, csv: string, query = ''): Promise<number> {
  const res = await putCsv(leaderUrl, csv, query);
  expect(res.status, res.text).to.equal(201);
  return res.json.version as number;
}

/** PUTs a file's bytes as they are (no content type) to a leader with the leader token. */
export function putBytes(leaderUrl: string, body: Uint8Array<ArrayBuffer>): Promise<HttpAnswer> {
  return http(`${leaderUrl}/promotions`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${LEADER_TOKEN}` },
    body,
  });
}

/** Asks a leader to make kept `version` current (POST /snapshots/{version}/activate) with `token`. */
export function activate(leaderUrl: string, version: number, token = LEADER_TOKEN): Promise<HttpAnswer> {
  return http(`${leaderUrl}/snapshots/${version}/activate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
}

export interface TestLeader extends Leader {
  readonly server: RunningServer;
  readonly url: string;
  readonly config: LeaderConfig;
}

/**
 * An in-process leader on an ephemeral port, with its data in a temp dir. `replicaOptions` reach its replica
 * registry (short notice retries, a fake DNS resolver).
 */
export async function startLeader(
  env: Record<string, string> = {},
  tuning: { targetPartitionRows?: number; spillBuckets?: number } = {},
  replicaOptions: ReplicaRegistryOptions = {},
  logger: Logger = quietLogger(),
  /** The clock the inbox times a file's stability with (a fake: see inbox.test.ts). */
  inboxElapsedMs?: () => number,
): Promise<TestLeader> {
  const config = loadLeaderConfig({
    PORT: '0',
    DATA_DIR: await tempDir(),
    LEADER_TOKEN,
    REPLICA_TOKEN,
    PUSH_TIMEOUT_MS: '10000',
    // Inline fast path: quick to start. Worker threads are exercised by the csv-reader and integration tests.
    INGEST_WORKERS: '0',
    // No warm-up build at start: each test leader would pay for one.
    INGEST_WARM_UP_ROWS: '0',
    ...env,
  });
  const leader = await createLeader(config, logger, tuning, replicaOptions, inboxElapsedMs);
  onCleanup(() => leader.close());
  const server = await listen(leader.app.callback(), config.host, config.port, config);
  onCleanup(() => server.close(100));
  return { ...leader, server, url: server.url, config };
}

export interface TestReplica {
  readonly server: RunningServer;
  readonly url: string;
  readonly index: LiveIndex;
  readonly syncer: Syncer;
  readonly config: ReplicaConfig;
  /** Set `draining` to see what SIGTERM does to readiness. */
  readonly lifecycle: { draining: boolean };
}

/** An in-process replica on an ephemeral port following `leaderUrl`, logging to `logger` (silent by default). */
export async function startReplica(
  leaderUrl: string,
  env: Record<string, string> = {},
  logger: Logger = quietLogger(),
): Promise<TestReplica> {
  const config = loadReplicaConfig({
    PORT: '0',
    DATA_DIR: await tempDir(),
    LEADER_URL: leaderUrl,
    REPLICA_TOKEN,
    SYNC_INTERVAL_MS: '60000',
    ...env,
  });
  const index = new LiveIndex();
  const syncer = new Syncer(config, index, logger);
  const lifecycle = { draining: false };
  const app = createReplicaApp({ config, logger, index, syncer, lifecycle });
  const server = await listenReplica(app, config.host, config.port, config);
  syncer.advertiseUrl = server.url;
  onCleanup(async () => {
    syncer.stop();
    await server.close(100);
    await index.current?.snapshot.close();
  });
  await syncer.start();
  return { server, url: server.url, index, syncer, config, lifecycle };
}

/**
 * A replica's Syncer and LiveIndex, without its HTTP server, following `leaderUrl` from a fresh data directory;
 * not started, so that the test drives its polls (or starts it). `options` reach the Syncer (a fake clock).
 * Stopped, and its served snapshot closed, by cleanup().
 */
export async function bareSyncer(
  leaderUrl: string,
  env: Record<string, string> = {},
  options: SyncerOptions = {},
): Promise<{ config: ReplicaConfig; index: LiveIndex; syncer: Syncer }> {
  const config = loadReplicaConfig({
    DATA_DIR: await tempDir(),
    LEADER_URL: leaderUrl,
    REPLICA_TOKEN,
    ...env,
  });
  const index = new LiveIndex();
  const syncer = new Syncer(config, index, quietLogger(), options);
  onCleanup(async () => {
    syncer.stop();
    await index.current?.snapshot.close();
  });
  return { config, index, syncer };
}

/** Waits until `replica` (a TestReplica, or a bareSyncer's parts) serves `version`. */
export function waitForVersion(
  replica: { readonly index: LiveIndex; readonly url?: string },
  version: number,
  timeoutMs = 10_000,
): Promise<true> {
  return waitFor(
    () => (replica.index.current?.manifest.version === version ? true : undefined),
    timeoutMs,
    `${replica.url ?? 'the replica'} to serve version ${version}`,
  );
}

/**
 * Stops an in-process replica as a crash would leave it, files kept: no more polls, the server closed. Start it
 * again with `startReplica(leaderUrl, { PORT: String(r.server.port), DATA_DIR: r.config.dataDir })`.
 */
export async function stopReplica(replica: TestReplica): Promise<void> {
  replica.syncer.stop();
  replica.server.closeAllConnections();
  await replica.server.close(0);
}

/** Rows as CSV text (one line per row, LF line ends). */
export function csvOf(rows: readonly (readonly string[])[]): string {
  return `${rows.map((r) => r.join(',')).join('\n')}\n`;
}
