/**
 * Fakes for the tests of the leader's replica registry and its notice campaigns (replica-registry.test.ts,
 * replica-notices.test.ts): fake replicas (node:http on loopback) that record each notice and answer as told, and a
 * registry with short retry delays, closed after each test.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SnapshotManifest } from '../../../common/protocol.js';
import {
  ReplicaRegistry,
  type ReplicaRegistryOptions,
  type ReplicaStatus,
} from '../../../leader/replica-registry.js';
import { onCleanup, quietLogger, REPLICA_TOKEN } from '../../helpers.js';

export function manifest(version: number): SnapshotManifest {
  return {
    version,
    snapshotId: 'ab'.repeat(16),
    checksum: `${version}`.padStart(64, '0'),
    rows: 1,
    duplicates: 0,
    badRows: 0,
    bytes: 100,
    sourceSha256: 'cd'.repeat(32),
    createdAt: new Date(0).toISOString(),
  };
}

export interface Notice {
  readonly at: number;
  readonly version: number;
  readonly authorization: string | undefined;
}

export interface FakeReplica {
  readonly url: string;
  readonly port: number;
  readonly notices: Notice[];
  close(): Promise<void>;
}

export type Answer = (version: number, n: number) => { status: number; body: Record<string, unknown> };

/** A replica that records every notice and answers as `answer` says (n counts notices from 1). */
export async function fakeReplica(answer: Answer, port = 0): Promise<FakeReplica> {
  const notices: Notice[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => {
      text += c.toString();
    });
    req.on('end', () => {
      const version = (JSON.parse(text) as SnapshotManifest).version;
      notices.push({ at: Date.now(), version, authorization: req.headers.authorization });
      const { status, body } = answer(version, notices.length);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  onCleanup(close);
  const actual = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${actual}`, port: actual, notices, close };
}

export const FAST = { baseDelayMs: 40, maxDelayMs: 1000 };

export function registry(urls: string[], options: ReplicaRegistryOptions = {}): ReplicaRegistry {
  const r = new ReplicaRegistry(urls, REPLICA_TOKEN, 5000, quietLogger(), { retry: FAST, ...options });
  onCleanup(async () => r.close());
  return r;
}

export function statusOf(r: ReplicaRegistry, url: string, current?: number): ReplicaStatus {
  const s = r.list(current).find((x) => x.url === url);
  if (s === undefined) throw new Error(`${url} is not listed`);
  return s;
}

export const ok = (version: number) => ({ status: 200, body: { version } });
export const refusedFile = {
  status: 502,
  body: { error: 'SNAPSHOT_CHECKSUM_MISMATCH', message: 'snapshot partition 3 does not match its checksum' },
};
