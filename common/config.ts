/**
 * Configuration: one defaults object, one parser, read once at start-up.
 * A malformed value stops start-up with a message naming the variable; nothing else reads `process.env`.
 * Every variable is listed with its default in docs/configuration.md (a unit test checks it).
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { MAX_SHARDS, parseShard, type Shard } from './snapshot/shard.js';

type Env = Record<string, string | undefined>;

/** Settings both roles share. */
export interface CommonConfig {
  /** HOST: address to listen on. */
  readonly host: string;
  /** PORT: TCP port to listen on; 0 picks a free one (tests). */
  readonly port: number;
  /** DATA_DIR: where this process keeps its snapshot files. */
  readonly dataDir: string;
  /** LOG_LEVEL: pino level (fatal, error, warn, info, debug, trace, silent). */
  readonly logLevel: string;
  /** REPLICA_TOKEN: bearer token between leader and replicas (notices, file pulls). */
  readonly replicaToken: string;
  /** SHUTDOWN_TIMEOUT_MS: how long SIGTERM waits for in-flight requests before closing them. */
  readonly shutdownTimeoutMs: number;
  /** MAX_HEADER_BYTES: largest request head (request line and headers); larger ones get 431. */
  readonly maxHeaderBytes: number;
  /** HEADERS_TIMEOUT_MS: a client must send its whole request head within this time, or is disconnected. */
  readonly headersTimeoutMs: number;
  /**
   * IDLE_TIMEOUT_MS: a connection on which nothing moves for this long is closed (a stalled upload body, a
   * silent client). Work after a body has arrived (an ingest) is not limited by it.
   */
  readonly idleTimeoutMs: number;
  /**
   * KEEP_ALIVE_TIMEOUT_MS: an idle keep-alive connection is closed a second after this long (answers advertise
   * this long in their Keep-Alive header; the second is node:http's margin for a client reusing it at the limit).
   * Behind a load balancer that keeps connections, set it above the balancer's idle timeout.
   */
  readonly keepAliveTimeoutMs: number;
  /**
   * MAX_CONNECTIONS: TCP connections the server holds at once (node's `server.maxConnections`); past it a new
   * connection is closed as soon as it is accepted, and those already open are served as before. The default fits
   * a replica behind a load balancer, which reuses a pool of keep-alive connections (tens to hundreds per
   * balancer), with room for clients that connect directly, while it bounds the memory and file descriptors that
   * a flood of idle connections could take (each holds a few tens of KB).
   */
  readonly maxConnections: number;
}

export interface LeaderConfig extends CommonConfig {
  readonly role: 'leader';
  /** LEADER_TOKEN: bearer token required on every write route. */
  readonly leaderToken: string;
  /** REPLICAS: comma-separated base URLs of replicas to notify; replicas also register themselves when they poll. */
  readonly replicas: readonly string[];
  /**
   * REPLICA_URL_HOSTS: hosts (names or IP addresses, comma-separated) a polling replica may register as its
   * address besides the IP address its poll comes from; `*` allows any host (replicas behind address translation).
   * Empty by default: a replica registers only an address on its own IP.
   */
  readonly replicaUrlHosts: readonly string[];
  /**
   * REPLICAS_DNS: `host:port` of a DNS name whose A records are replicas (a Kubernetes headless Service); each
   * address is notified as http://IP:PORT. Looked up on each publish and periodically; null when unset.
   */
  readonly replicasDns: { readonly host: string; readonly port: number } | null;
  /** MAX_BAD_ROWS: bad rows tolerated in a file (skipped and reported); 0 rejects any file with a bad row. */
  readonly maxBadRows: number;
  /** MIN_ROWS_RATIO: a file with fewer rows than this fraction of the current version is refused unless forced. */
  readonly minRowsRatio: number;
  /** BUILD_MEMORY_BYTES: rows buffered in memory while building a snapshot before spilling to run files. */
  readonly buildMemoryBytes: number;
  /** MAX_UPLOAD_BYTES: largest accepted file, for every way in (PUT, form, resumable upload). */
  readonly maxUploadBytes: number;
  /** UPLOAD_DIR: where resumable uploads and form uploads keep their bytes until they are ingested. */
  readonly uploadDir: string;
  /** UPLOAD_IDLE_EXPIRY_MS: a resumable upload that receives no byte for this long is deleted. */
  readonly uploadIdleExpiryMs: number;
  /** MAX_UPLOADS: resumable uploads that may exist at once; creating one more gets 429. */
  readonly maxUploads: number;
  /** INBOX_DIR: folder watched for dropped files; empty turns the inbox off. */
  readonly inboxDir: string;
  /** INBOX_STABLE_MS: a dropped file is ingested once its size has not changed for this long. */
  readonly inboxStableMs: number;
  /** INBOX_KEEP_FILES: files kept in inbox/done and inbox/rejected each (with their reports); older ones go. */
  readonly inboxKeepFiles: number;
  /**
   * INBOX_KEEP_MS: a handled file (and its report) younger than this is kept even past INBOX_KEEP_FILES, so that a
   * burst of files does not delete reports just written; 0 keeps by count alone.
   */
  readonly inboxKeepMs: number;
  /** KEEP_VERSIONS: how many snapshot versions are kept for rollback (at least 2). */
  readonly keepVersions: number;
  /** PUSH_TIMEOUT_MS: how long the leader waits for one replica to answer a notice. */
  readonly pushTimeoutMs: number;
  /**
   * REPLICA_EXPIRY_MS: a replica that registered by polling and has not been heard from (no poll, no answer to a
   * notice) for this long is forgotten: no more notices, and its version no longer keeps old versions from being
   * pruned. 0 never forgets. Keep it well above the replicas' SYNC_INTERVAL_MS.
   */
  readonly replicaExpiryMs: number;
  /** INGEST_WORKERS: parse worker threads for the CSV fast path; 0 parses on the main thread. */
  readonly ingestWorkers: number;
  /**
   * INGEST_WARM_UP_ROWS: rows of a generated file the leader builds (and throws away) at start, so that its first
   * real file finds the parse workers started and the ingest code compiled; 0 skips the warm-up.
   */
  readonly ingestWarmUpRows: number;
  /**
   * SCRUB_BYTES_PER_SECOND: the rate at which the leader re-reads and verifies its kept snapshot files in the
   * background (bytes rot on disks); 0 turns the scrub off. Activations and starts verify at full speed anyway.
   */
  readonly scrubBytesPerSecond: number;
  /** SCRUB_INTERVAL_MS: the pause between the end of one scrub pass over the kept versions and the next. */
  readonly scrubIntervalMs: number;
}

export type ServeMode = 'auto' | 'memory' | 'disk';

export interface ReplicaConfig extends CommonConfig {
  readonly role: 'replica';
  /** LEADER_URL: base URL of the leader to pull snapshots from. */
  readonly leaderUrl: string;
  /** ADVERTISE_URL: the URL the leader should use to reach this replica; empty means http://HOST:PORT. */
  readonly advertiseUrl: string;
  /** SYNC_INTERVAL_MS: how often the replica asks the leader for its current version (catch-up after a missed notice). */
  readonly syncIntervalMs: number;
  /** SERVE_MODE: memory (whole file in RAM), disk (positional reads), or auto (memory when it fits MEMORY_BUDGET_BYTES). */
  readonly serveMode: ServeMode;
  /**
   * MEMORY_BUDGET_BYTES: largest snapshot (or, sharded, shard of one) served in memory mode when SERVE_MODE is auto.
   */
  readonly memoryBudgetBytes: number;
  /**
   * DISK_CACHE_BYTES: disk mode's cache of hot records (a fixed arena, scan-resistant CLOCK eviction, emptied by
   * every version swap); 0 turns it off.
   */
  readonly diskCacheBytes: number;
  /**
   * DISK_SLOT_TABLE_BYTES: disk mode's slot tables held in memory, packed (about 5 bytes a row), whole partitions,
   * as many as fit: a lookup in a partition whose table is held reads only its record (an absent id nothing), one
   * elsewhere reads the probe window first. Bounds memory whatever the row count; 0: none.
   */
  readonly diskSlotTableBytes: number;
  /**
   * DISK_READ_WORKERS: worker threads that do disk mode's positional reads (off the event loop, in batches); more
   * help when reads wait for a real disk (a cold page cache).
   */
  readonly diskReadWorkers: number;
  /** MAX_IN_FLIGHT: reads answered at once; more wait in the queue. */
  readonly maxInFlight: number;
  /** MAX_QUEUE: reads that may wait for a slot; past it, 503 at once. */
  readonly maxQueue: number;
  /**
   * SHARD: `k/S` to pull, hold and serve only shard k of S (S a power of two up to 64; FORMAT.md, "Shards"); ids of
   * other shards get 421 PROMOTION_WRONG_SHARD. Null (unset): the whole data set.
   */
  readonly shard: Shard | null;
  /** MAX_BATCH_IDS: most ids one batch lookup may ask for; more is 400 BATCH_TOO_MANY_IDS. */
  readonly maxBatchIds: number;
  /**
   * READ_MAX_AGE_S: seconds a client or CDN may reuse a read's answer without asking again (sent as
   * `Cache-Control: max-age=N` on reads); null (unset) sends no Cache-Control.
   */
  readonly readMaxAgeS: number | null;
}

const MiB = 1024 * 1024;

/** Defaults for every setting; units are in the names. */
export const DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  leaderPort: 8080,
  replicaPort: 8081,
  leaderDataDir: 'data/leader',
  replicaDataDir: 'data/replica',
  logLevel: 'info',
  shutdownTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 4096,
  maxBadRows: 0,
  minRowsRatio: 0.5,
  buildMemoryBytes: 128 * MiB,
  maxUploadBytes: 1024 * 1024 * MiB,
  uploadIdleExpiryMs: 24 * 3600_000,
  maxUploads: 8,
  inboxStableMs: 5_000,
  inboxKeepFiles: 3,
  inboxKeepMs: 7 * 24 * 3600_000,
  keepVersions: 5,
  pushTimeoutMs: 60_000,
  replicaExpiryMs: 600_000,
  ingestWorkers: Math.min(8, availableParallelism()),
  ingestWarmUpRows: 200_000,
  scrubBytesPerSecond: 8 * MiB,
  scrubIntervalMs: 3600_000,
  leaderUrl: 'http://127.0.0.1:8080',
  syncIntervalMs: 10_000,
  serveMode: 'auto' as ServeMode,
  memoryBudgetBytes: 4096 * MiB,
  diskCacheBytes: 64 * MiB,
  diskSlotTableBytes: 64 * MiB,
  diskReadWorkers: 2,
  maxInFlight: 1024,
  maxQueue: 256,
  maxBatchIds: 1000,
  readMaxAgeS: null as number | null,
});

/** Thrown at start-up for a malformed setting; the message names the variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * A variable set to the empty string (`PORT=`) is a mistake, not a request for the default: it stops start-up.
 * Only where the default is itself empty (an optional list or address) does an empty value mean the same.
 */
function notEmpty(name: string, v: string, fallback: string | number): void {
  if (v === '') {
    throw new ConfigError(
      `${name} is set but empty: unset it for the default (${fallback}) or give it a value`,
    );
  }
}

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  if (v === undefined) return fallback;
  if (fallback !== '') notEmpty(name, v, fallback);
  return v;
}

/** Like `str`, but a variable set to the empty string stays empty (it turns a feature off). */
function strOrOff(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined ? fallback : v;
}

function required(env: Env, name: string, minLength: number): string {
  const v = env[name];
  if (v === undefined || v.length < minLength) {
    throw new ConfigError(`${name} must be set to a secret of at least ${minLength} characters`);
  }
  return v;
}

function int(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = env[name];
  if (v === undefined) return fallback;
  notEmpty(name, v, fallback);
  if (!/^\d+$/.test(v)) throw new ConfigError(`${name} must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** A whole number, or null when the variable is unset or empty (the feature is off). */
function optionalInt(env: Env, name: string, min: number, max: number): number | null {
  const v = env[name];
  return v === undefined || v === '' ? null : int(env, name, 0, min, max);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  K: 1024,
  KI: 1024,
  M: MiB,
  MI: MiB,
  G: 1024 * MiB,
  GI: 1024 * MiB,
};

function bytes(env: Env, name: string, fallback: number, min: number): number {
  const v = env[name];
  if (v === undefined) return fallback;
  notEmpty(name, v, fallback);
  const m = /^(\d+)\s*([KMG]i?)?B?$/i.exec(v);
  if (!m) throw new ConfigError(`${name} must be a size in bytes like 1048576 or 512MiB, got "${v}"`);
  const n = Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toUpperCase()];
  if (n < min) throw new ConfigError(`${name} must be at least ${min} bytes, got ${n}`);
  return n;
}

function ratio(env: Env, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined) return fallback;
  notEmpty(name, v, fallback);
  const n = Number(v);
  if (!/^\d*\.?\d+$/.test(v) || n < 0 || n > 1)
    throw new ConfigError(`${name} must be a number from 0 to 1, got "${v}"`);
  return n;
}

function url(name: string, v: string): string {
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL, got "${v}"`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(`${name} must be an http(s) URL, got "${v}"`);
  }
  return v.replace(/\/+$/, '');
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function common(env: Env, port: number, dataDir: string): CommonConfig {
  const logLevel = str(env, 'LOG_LEVEL', DEFAULTS.logLevel);
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }
  return {
    host: str(env, 'HOST', DEFAULTS.host),
    port: int(env, 'PORT', port, 0, 65535),
    dataDir: str(env, 'DATA_DIR', dataDir),
    logLevel,
    replicaToken: required(env, 'REPLICA_TOKEN', 16),
    shutdownTimeoutMs: int(env, 'SHUTDOWN_TIMEOUT_MS', DEFAULTS.shutdownTimeoutMs, 0),
    maxHeaderBytes: bytes(env, 'MAX_HEADER_BYTES', DEFAULTS.maxHeaderBytes, 1024),
    headersTimeoutMs: int(env, 'HEADERS_TIMEOUT_MS', DEFAULTS.headersTimeoutMs, 10),
    idleTimeoutMs: int(env, 'IDLE_TIMEOUT_MS', DEFAULTS.idleTimeoutMs, 10),
    keepAliveTimeoutMs: int(env, 'KEEP_ALIVE_TIMEOUT_MS', DEFAULTS.keepAliveTimeoutMs, 10),
    maxConnections: int(env, 'MAX_CONNECTIONS', DEFAULTS.maxConnections, 1),
  };
}

function hostAndPort(env: Env, name: string): { readonly host: string; readonly port: number } | null {
  const v = str(env, name, '');
  if (v === '') return null;
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(v);
  const port = m === null ? 0 : Number(m[2]);
  if (m === null || port < 1 || port > 65535) {
    throw new ConfigError(
      `${name} must be a DNS name and port like replicas-headless.promotions.svc:8081, got "${v}"`,
    );
  }
  return Object.freeze({ host: m[1], port });
}

/** A comma-separated list of host names, IP addresses (IPv6 without brackets) or `*`, lower-cased. */
function hostList(env: Env, name: string): readonly string[] {
  const hosts = str(env, name, '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  for (const h of hosts) {
    if (!/^(\*|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]*:[0-9a-f:.]*)$/.test(h)) {
      throw new ConfigError(`${name} must list host names or IP addresses (or *), got "${h}"`);
    }
  }
  return Object.freeze(hosts);
}

/** Reads and validates the leader's settings; the result is frozen. */
export function loadLeaderConfig(env: Env = process.env): LeaderConfig {
  const replicas = str(env, 'REPLICAS', '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => url('REPLICAS', s));
  const shared = common(env, DEFAULTS.leaderPort, DEFAULTS.leaderDataDir);
  const leaderToken = required(env, 'LEADER_TOKEN', 16);
  // Every replica holds REPLICA_TOKEN; if it were the leader token too, any replica (or whoever reads its Secret)
  // could ingest files and roll versions back.
  if (leaderToken === shared.replicaToken) {
    throw new ConfigError(
      'LEADER_TOKEN must differ from REPLICA_TOKEN: every replica holds REPLICA_TOKEN, and the same value would let it write',
    );
  }
  return Object.freeze({
    role: 'leader' as const,
    ...shared,
    leaderToken,
    replicas: Object.freeze(replicas),
    replicaUrlHosts: hostList(env, 'REPLICA_URL_HOSTS'),
    replicasDns: hostAndPort(env, 'REPLICAS_DNS'),
    maxBadRows: int(env, 'MAX_BAD_ROWS', DEFAULTS.maxBadRows, 0),
    minRowsRatio: ratio(env, 'MIN_ROWS_RATIO', DEFAULTS.minRowsRatio),
    buildMemoryBytes: bytes(env, 'BUILD_MEMORY_BYTES', DEFAULTS.buildMemoryBytes, 64 * 1024),
    maxUploadBytes: bytes(env, 'MAX_UPLOAD_BYTES', DEFAULTS.maxUploadBytes, 1),
    uploadDir: str(env, 'UPLOAD_DIR', join(shared.dataDir, 'uploads')),
    uploadIdleExpiryMs: int(env, 'UPLOAD_IDLE_EXPIRY_MS', DEFAULTS.uploadIdleExpiryMs, 1),
    maxUploads: int(env, 'MAX_UPLOADS', DEFAULTS.maxUploads, 1),
    inboxDir: strOrOff(env, 'INBOX_DIR', join(shared.dataDir, 'inbox')),
    inboxStableMs: int(env, 'INBOX_STABLE_MS', DEFAULTS.inboxStableMs, 1),
    inboxKeepFiles: int(env, 'INBOX_KEEP_FILES', DEFAULTS.inboxKeepFiles, 1),
    inboxKeepMs: int(env, 'INBOX_KEEP_MS', DEFAULTS.inboxKeepMs, 0),
    keepVersions: int(env, 'KEEP_VERSIONS', DEFAULTS.keepVersions, 2, 1000),
    pushTimeoutMs: int(env, 'PUSH_TIMEOUT_MS', DEFAULTS.pushTimeoutMs, 1),
    replicaExpiryMs: int(env, 'REPLICA_EXPIRY_MS', DEFAULTS.replicaExpiryMs, 0),
    ingestWorkers: int(env, 'INGEST_WORKERS', DEFAULTS.ingestWorkers, 0, 64),
    ingestWarmUpRows: int(env, 'INGEST_WARM_UP_ROWS', DEFAULTS.ingestWarmUpRows, 0, 10_000_000),
    scrubBytesPerSecond: bytes(env, 'SCRUB_BYTES_PER_SECOND', DEFAULTS.scrubBytesPerSecond, 0),
    scrubIntervalMs: int(env, 'SCRUB_INTERVAL_MS', DEFAULTS.scrubIntervalMs, 1),
  });
}

/** Reads and validates a replica's settings; the result is frozen. */
export function loadReplicaConfig(env: Env = process.env): ReplicaConfig {
  const serveMode = str(env, 'SERVE_MODE', DEFAULTS.serveMode);
  if (serveMode !== 'auto' && serveMode !== 'memory' && serveMode !== 'disk') {
    throw new ConfigError(`SERVE_MODE must be auto, memory or disk, got "${serveMode}"`);
  }
  const advertise = str(env, 'ADVERTISE_URL', '');
  const shardText = str(env, 'SHARD', '');
  const shard = shardText === '' ? null : parseShard(shardText);
  if (typeof shard === 'string') {
    throw new ConfigError(
      `SHARD must be k/S, S a power of two from 1 to ${MAX_SHARDS} and k below S: ${shard}`,
    );
  }
  return Object.freeze({
    role: 'replica' as const,
    ...common(env, DEFAULTS.replicaPort, DEFAULTS.replicaDataDir),
    leaderUrl: url('LEADER_URL', str(env, 'LEADER_URL', DEFAULTS.leaderUrl)),
    advertiseUrl: advertise === '' ? '' : url('ADVERTISE_URL', advertise),
    syncIntervalMs: int(env, 'SYNC_INTERVAL_MS', DEFAULTS.syncIntervalMs, 10),
    serveMode,
    memoryBudgetBytes: bytes(env, 'MEMORY_BUDGET_BYTES', DEFAULTS.memoryBudgetBytes, 0),
    diskCacheBytes: bytes(env, 'DISK_CACHE_BYTES', DEFAULTS.diskCacheBytes, 0),
    diskSlotTableBytes: bytes(env, 'DISK_SLOT_TABLE_BYTES', DEFAULTS.diskSlotTableBytes, 0),
    diskReadWorkers: int(env, 'DISK_READ_WORKERS', DEFAULTS.diskReadWorkers, 1, 64),
    maxInFlight: int(env, 'MAX_IN_FLIGHT', DEFAULTS.maxInFlight, 1),
    maxQueue: int(env, 'MAX_QUEUE', DEFAULTS.maxQueue, 0),
    shard,
    maxBatchIds: int(env, 'MAX_BATCH_IDS', DEFAULTS.maxBatchIds, 1, 100_000),
    readMaxAgeS: optionalInt(env, 'READ_MAX_AGE_S', 0, 31_536_000),
  });
}
