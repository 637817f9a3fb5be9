/**
 * What the leader and replicas say to each other over HTTP: the manifest of a snapshot version (published by the
 * leader, sent in notices, checked by replicas against the file) and the headers a replica adds when it polls.
 */

import type { SnapshotHeader } from './snapshot/format.js';

/** One snapshot version as the leader publishes it. */
export interface SnapshotManifest {
  readonly version: number;
  /** Random id of the file, hex; the file's header must carry the same. */
  readonly snapshotId: string;
  /** The file's checksum (its header SHA-256, which covers every byte), hex. */
  readonly checksum: string;
  readonly rows: number;
  readonly duplicates: number;
  readonly badRows: number;
  /** Size of the snapshot file in bytes. */
  readonly bytes: number;
  /** SHA-256 of the source CSV, hex. */
  readonly sourceSha256: string;
  readonly createdAt: string;
}

/**
 * The headers a replica sends with its poll so that the leader can find it and see what it serves. One object, so
 * that the sender (replica/sync.ts) and the reader (leader/app.ts) name the same set.
 */
export const REPLICA_HEADERS = {
  url: 'x-replica-url',
  version: 'x-replica-version',
  /** The version the polling replica was told to serve (by the leader, or the one it served before a restart). */
  wanted: 'x-replica-wanted-version',
  /** The polling replica's last failure to load a version: `VERSION STATUS CODE`, e.g. `7 502 SNAPSHOT_CHECKSUM_MISMATCH`. */
  error: 'x-replica-error',
  /** The polling replica's SYNC_INTERVAL_MS: the leader marks it stale when it is silent for several of them. */
  syncInterval: 'x-replica-sync-interval-ms',
  /** Added by a shard replica: its SHARD, `k/S` (common/snapshot/shard.ts). */
  shard: 'x-replica-shard',
} as const;
/** Header on every read answer naming the version that produced it. */
export const SNAPSHOT_VERSION_HEADER = 'x-snapshot-version';

/** A replica's failure to load a version, as its poll reports it: codes and numbers only, never free text. */
export interface ReplicaError {
  readonly version: number;
  readonly status: number;
  readonly code: string;
}

/** The REPLICA_HEADERS.error value of a failure. */
export function formatReplicaError(e: ReplicaError): string {
  return `${e.version} ${e.status} ${e.code}`;
}

/** Parses an untrusted REPLICA_HEADERS.error value; undefined unless it is exactly `VERSION STATUS CODE`. */
export function parseReplicaError(value: string | undefined): ReplicaError | undefined {
  const m = /^([1-9]\d{0,8}) ([1-5]\d\d) ([A-Z][A-Z0-9_]{0,63})$/.exec(value ?? '');
  return m === null ? undefined : { version: Number(m[1]), status: Number(m[2]), code: m[3] };
}

/** File name of a version, as both roles store it. */
export function snapshotFileName(version: number): string {
  return `v${String(version).padStart(6, '0')}.snap`;
}

/** Checks that an untrusted JSON value is a manifest; returns it or a reason. */
export function parseManifest(value: unknown): SnapshotManifest | string {
  if (typeof value !== 'object' || value === null) return 'manifest must be a JSON object';
  const m = value as Record<string, unknown>;
  for (const k of ['version', 'rows', 'duplicates', 'badRows', 'bytes'] as const) {
    if (!Number.isSafeInteger(m[k]) || (m[k] as number) < 0)
      return `manifest field "${k}" must be a whole number`;
  }
  if ((m.version as number) < 1) return 'manifest field "version" must be at least 1';
  for (const k of ['snapshotId', 'checksum', 'sourceSha256'] as const) {
    if (typeof m[k] !== 'string' || !/^[0-9a-f]+$/.test(m[k] as string))
      return `manifest field "${k}" must be hex`;
  }
  if (typeof m.createdAt !== 'string') return 'manifest field "createdAt" must be a string';
  return m as unknown as SnapshotManifest;
}

/** The manifest that describes a snapshot file with this header. */
export function manifestOf(h: SnapshotHeader): SnapshotManifest {
  return {
    version: h.version,
    snapshotId: h.snapshotId,
    checksum: h.checksum,
    rows: h.rowCount,
    duplicates: h.duplicateCount,
    badRows: h.badRowCount,
    bytes: h.fileBytes,
    sourceSha256: h.sourceSha256,
    createdAt: new Date(h.buildTimeMs).toISOString(),
  };
}
