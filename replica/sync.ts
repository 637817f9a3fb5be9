/**
 * Keeps this replica on the leader's current version: pulls a new version's file and verifies it while it arrives
 * (pull.ts), renames it into place, builds the version from the bytes already in memory (disk mode opens the
 * file), swaps it in, and records it as the version to serve after a restart.
 *
 * With SHARD=k/S only shard k's partitions are pulled, verified and served (pull.ts): a version's file is then
 * sparse, holding the header, the directory and the shard's byte range at their real offsets, and a restart
 * verifies and serves that shard of it at once (a file of another shard fails verification and is pulled again).
 *
 * Files: DATA_DIR/v000042.snap (verified versions: the one served and one other are kept), DATA_DIR/SERVING
 * (`{"version": 42}`, the version served last, replaced atomically: a restart serves it at once, even after a
 * rollback to a lower number), DATA_DIR/tmp/ (transfers in progress).
 *
 * A version that fails to load (its file does not verify, the leader refuses it) is not pulled again at every poll:
 * the polls that find the same version wanted wait SYNC_INTERVAL_MS, then twice that, ... up to
 * PULL_BACKOFF_MAX_MS before the next try (a notice still tries at once: the leader bounds its own retries). Each
 * poll tells the leader what failed (code, status, version) and which version this replica was told to serve, so
 * `GET /replicas` shows a replica that is stuck or serves an older version than it should (`behind`).
 *
 * Concurrency: at most one load runs at a time. `follow(manifest)` may be called any number of times (notices,
 * polls): a newer request supersedes a pending older one, and every caller's promise settles when the wanted
 * version (or a later one) is served, or with the error that stopped it.
 */
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReplicaConfig } from '../common/config.js';
import { writeFileAtomic } from '../common/durable-file.js';
import { AppError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import {
  formatReplicaError,
  manifestOf,
  parseManifest,
  REPLICA_HEADERS,
  type ReplicaError,
  type SnapshotManifest,
  snapshotFileName,
} from '../common/protocol.js';
import type { DiskOptions } from '../common/snapshot/disk-snapshot.js';
import type { LoadedSnapshot, SnapshotMode } from '../common/snapshot/loaded-snapshot.js';
import { memorySnapshotOf } from '../common/snapshot/memory-arena.js';
import { sharedReadPool } from '../common/snapshot/read-pool.js';
import { loadSnapshot, openVerified } from '../common/snapshot/reader.js';
import { formatShard, type Shard } from '../common/snapshot/shard.js';
import type { ExpectedSnapshot } from '../common/snapshot/verifier.js';
import type { LiveIndex, LiveVersion } from './live-index.js';
import { pullSnapshot } from './pull.js';

const FILE_RE = /^v(\d{6,})\.snap$/;
/** Verified files kept on disk: the one served and the one before it (a quick way back). */
const KEEP_FILES = 2;
const SERVING_FILE = 'SERVING';
/** The longest wait before pulling again a version that failed to load. */
export const PULL_BACKOFF_MAX_MS = 10 * 60_000;

export interface SyncStatus {
  readonly lastError: string | null;
  readonly lastSyncAt: string | null;
  /** The version being pulled or loaded now, if any. */
  readonly loading: number | null;
  /** The version this replica was last told to serve (by the leader, or by SERVING at start); null before. */
  readonly wantedVersion: number | null;
  /** It serves another version than `wantedVersion` because loading that one failed (see `failure`). */
  readonly behind: boolean;
  /** The last failure to load a version, until a load succeeds; `retryAt` is when a poll tries it again. */
  readonly failure: (ReplicaError & { readonly attempts: number; readonly retryAt: string }) | null;
}

interface Failure extends ReplicaError {
  /** The checksum of the version that failed; undefined for a local file that failed at start. */
  readonly checksum: string | undefined;
  readonly attempts: number;
  readonly retryAt: number;
}

export interface SyncerOptions {
  /** The clock, ms since the epoch; a fake in tests. */
  readonly now?: () => number;
}

export type SyncSettings = Pick<
  ReplicaConfig,
  | 'dataDir'
  | 'leaderUrl'
  | 'replicaToken'
  | 'syncIntervalMs'
  | 'serveMode'
  | 'memoryBudgetBytes'
  | 'diskCacheBytes'
  | 'diskSlotTableBytes'
  | 'diskReadWorkers'
> &
  Partial<Pick<ReplicaConfig, 'shard'>>;

export class Syncer {
  /** The URL the leader should use to reach this replica; set once the server listens. */
  advertiseUrl = '';
  private wanted: SnapshotManifest | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastError: string | null = null;
  private lastSyncAt: Date | null = null;
  private loading: number | null = null;
  private wantedVersion: number | null = null;
  private failure: Failure | undefined;
  private opened: Promise<void> | undefined;
  private readonly now: () => number;
  private readonly tmpDir: string;
  /** Bytes of snapshot files received from the leader (metrics). */
  pulledBytes = 0;
  /** Called with the seconds from deciding to load a version to serving it (pull, verify, load, swap). */
  onLoaded: ((seconds: number) => void) | undefined;
  /** Reads received so far by this replica: a pull leaves the core to reads only while there are some. */
  readsReceived: () => number = () => 0;

  constructor(
    private readonly settings: SyncSettings,
    private readonly index: LiveIndex,
    private readonly logger: Logger,
    options: SyncerOptions = {},
  ) {
    this.tmpDir = join(settings.dataDir, 'tmp');
    this.now = options.now ?? Date.now;
  }

  get status(): SyncStatus {
    const f = this.failure;
    return {
      lastError: this.lastError,
      lastSyncAt: this.lastSyncAt?.toISOString() ?? null,
      loading: this.loading,
      wantedVersion: this.wantedVersion,
      behind: this.behind,
      failure:
        f === undefined
          ? null
          : {
              version: f.version,
              status: f.status,
              code: f.code,
              attempts: f.attempts,
              retryAt: new Date(f.retryAt).toISOString(),
            },
    };
  }

  /** Serves another version than the one it was told to, because that one failed to load. */
  get behind(): boolean {
    const served = this.index.current?.manifest.version;
    return (
      this.wantedVersion !== null &&
      served !== this.wantedVersion &&
      this.failure?.version === this.wantedVersion
    );
  }

  /**
   * Serves the version served before the restart (SERVING), else the newest verified local file: called before
   * the replica listens, so that its first answer already comes from that version. Once only.
   */
  openLocal(): Promise<void> {
    this.opened ??= (async () => {
      await mkdir(this.tmpDir, { recursive: true });
      await this.loadNewestLocal();
    })();
    return this.opened;
  }

  /** Serves the newest verified local file (if not done yet), then follows the leader: now and periodically. */
  async start(): Promise<void> {
    await this.openLocal();
    this.timer = setInterval(() => void this.poll(), this.settings.syncIntervalMs);
    this.timer.unref();
    void this.poll();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Asks the leader for its current version (registering this replica) and follows it. Never throws. */
  async poll(): Promise<void> {
    try {
      const before = this.index.current?.manifest.version;
      const failedBefore = this.failure;
      const manifest = await this.askLeader();
      if (manifest === undefined) return;
      this.wantedVersion = manifest.version;
      const f = this.failure;
      if (f !== undefined && f.checksum === manifest.checksum && this.now() < f.retryAt) {
        this.logger.debug(
          { version: f.version, retryAt: new Date(f.retryAt).toISOString() },
          'this version failed to load; waiting before pulling it again',
        );
        return;
      }
      await this.follow(manifest).catch((err) => {
        if (this.failure === failedBefore) throw err;
        // Recorded (and logged) by the load: report it to the leader below.
      });
      // Report the version now served, or the failure, so the leader's view of this replica is current at once.
      if (this.index.current?.manifest.version !== before || this.failure !== failedBefore)
        await this.askLeader();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.logger.warn({ err: this.lastError }, 'sync with the leader failed; will retry');
    }
  }

  /** GET /snapshots/current, telling the leader where this replica is and what it serves. */
  private async askLeader(): Promise<SnapshotManifest | undefined> {
    const served = this.index.current?.manifest.version;
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.settings.replicaToken}`,
      [REPLICA_HEADERS.url]: this.advertiseUrl,
      [REPLICA_HEADERS.version]: served === undefined ? '' : String(served),
      [REPLICA_HEADERS.syncInterval]: String(this.settings.syncIntervalMs),
    };
    if (this.wantedVersion !== null) headers[REPLICA_HEADERS.wanted] = String(this.wantedVersion);
    if (this.failure !== undefined) headers[REPLICA_HEADERS.error] = formatReplicaError(this.failure);
    if (this.shard !== undefined) headers[REPLICA_HEADERS.shard] = formatShard(this.shard);
    const res = await fetch(`${this.settings.leaderUrl}/snapshots/current`, {
      headers,
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) throw new Error(`leader answered ${res.status} to GET /snapshots/current`);
    const manifest = parseManifest(await res.json());
    if (typeof manifest === 'string') throw new Error(`leader sent a bad manifest: ${manifest}`);
    return manifest;
  }

  /** Serves `manifest`'s version once it is pulled and verified (see the module comment). */
  follow(manifest: SnapshotManifest): Promise<void> {
    this.wantedVersion = manifest.version;
    if (this.isServing(manifest) && this.running === undefined) return Promise.resolve();
    this.wanted = manifest;
    this.running ??= this.drive().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private isServing(m: SnapshotManifest): boolean {
    return this.index.current?.manifest.checksum === m.checksum;
  }

  private async drive(): Promise<void> {
    while (this.wanted !== undefined && !this.isServing(this.wanted)) {
      const m = this.wanted;
      let snapshot: LoadedSnapshot;
      const started = performance.now();
      try {
        this.loading = m.version;
        snapshot = await this.fetchAndLoad(m);
      } catch (err) {
        this.lastError = (err as Error).message;
        this.failed(m.version, m.checksum, err);
        this.logger.error(
          {
            version: m.version,
            err: this.lastError,
            retryAt: new Date(this.failure?.retryAt ?? 0).toISOString(),
          },
          'could not load a version; still serving the previous one',
        );
        if (this.wanted === m) {
          this.wanted = undefined;
          throw err instanceof AppError
            ? err
            : new AppError('REPLICA_SYNC_FAILED', `version ${m.version}: ${this.lastError}`);
        }
        continue;
      } finally {
        this.loading = null;
      }
      this.retire(this.index.swap(snapshot, m));
      this.onLoaded?.((performance.now() - started) / 1000);
      this.lastError = null;
      this.failure = undefined;
      this.lastSyncAt = new Date();
      this.logger.info(
        {
          version: m.version,
          rows: snapshot.heldRows,
          mode: snapshot.mode,
          shard: this.settings.shard ?? null,
        },
        'serving a new version',
      );
      // Housekeeping failures must not look like a failed load: the new version is served either way.
      await this.afterSwap(m.version).catch((err) =>
        this.logger.warn({ err: (err as Error).message }, 'cleaning up after a swap failed'),
      );
    }
  }

  /**
   * Records a failure to load `version`: the same version failing again doubles the wait before a poll pulls it
   * again (SYNC_INTERVAL_MS, twice that, ... at most PULL_BACKOFF_MAX_MS).
   */
  private failed(version: number, checksum: string | undefined, err: unknown): void {
    const same =
      this.failure !== undefined && this.failure.version === version && this.failure.checksum === checksum;
    const attempts = same ? (this.failure as Failure).attempts + 1 : 1;
    const wait = Math.min(PULL_BACKOFF_MAX_MS, this.settings.syncIntervalMs * 2 ** (attempts - 1));
    const known = err instanceof AppError ? err : undefined;
    this.failure = {
      version,
      checksum,
      code: known?.code ?? 'REPLICA_SYNC_FAILED',
      status: known?.status ?? 502,
      attempts,
      retryAt: this.now() + wait,
    };
  }

  /** Records the served version for the next start, and removes files no longer needed. */
  private async afterSwap(version: number): Promise<void> {
    await writeFileAtomic(this.settings.dataDir, SERVING_FILE, JSON.stringify({ version }));
    await this.removeOldFiles();
    // One load at a time, and this one is done: whatever is left in tmp/ is a transfer nobody will resume.
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
  }

  /**
   * Releases a version no longer served. Requests that already read it keep it: a memory-mode snapshot goes with
   * the last reference to it; a disk-mode snapshot's `close` waits for its lookups in flight, then closes the file.
   */
  private retire(previous: LiveVersion | undefined): void {
    previous?.snapshot.close().catch((err) => this.logger.warn({ err }, 'closing an old version failed'));
  }

  /** The shard served (SHARD), if not the whole data set. */
  private get shard(): Shard | undefined {
    return this.settings.shard ?? undefined;
  }

  /**
   * Memory mode when what is held fits the budget (or is forced), else disk mode. A shard holds about 1/S of a
   * file of `bytes` (ids spread evenly over the hash), known before its directory is.
   */
  private modeFor(bytes: number): SnapshotMode {
    if (this.settings.serveMode !== 'auto') return this.settings.serveMode;
    return bytes / (this.shard?.count ?? 1) <= this.settings.memoryBudgetBytes ? 'memory' : 'disk';
  }

  /** How disk-mode versions serve: the process's read pool, the slot tables and the cache within their budgets. */
  private get disk(): DiskOptions {
    return {
      pool: sharedReadPool(this.settings.diskReadWorkers),
      slotBudgetBytes: this.settings.diskSlotTableBytes,
      cacheBytes: this.settings.diskCacheBytes,
    };
  }

  private filePath(version: number): string {
    return join(this.settings.dataDir, snapshotFileName(version));
  }

  /** A verified file for `m`: the local one when it matches, else pulled from the leader. */
  private async fetchAndLoad(m: SnapshotManifest): Promise<LoadedSnapshot> {
    const path = this.filePath(m.version);
    const expect: ExpectedSnapshot = { snapshotId: m.snapshotId, checksum: m.checksum };
    const mode = this.modeFor(m.bytes);
    if (await exists(path)) {
      try {
        return await loadSnapshot(path, expect, mode, this.shard, this.disk);
      } catch (err) {
        // Pull again; the rename below replaces the local file only once the new one has verified.
        this.logger.warn(
          { version: m.version, err: (err as Error).message },
          'local file does not match; pulling again',
        );
      }
    }
    const part = join(this.tmpDir, `${snapshotFileName(m.version)}.${m.checksum.slice(0, 16)}.part`);
    // Every byte has verified when the pull returns: a bad transfer never takes a version's name.
    await mkdir(this.tmpDir, { recursive: true });
    const pull = {
      leaderUrl: this.settings.leaderUrl,
      replicaToken: this.settings.replicaToken,
      logger: this.logger,
      onBytes: (n: number) => {
        this.pulledBytes += n;
      },
      readsReceived: this.readsReceived,
    };
    const verified = await pullSnapshot(pull, m, expect, part, mode === 'memory', this.shard);
    if (verified === 'unverified') {
      // A leader (or proxy) that ignores Range sent the file whole: verify it from the file, then name it.
      let snapshot: LoadedSnapshot;
      try {
        snapshot = await loadSnapshot(part, expect, mode, this.shard, this.disk);
      } catch (err) {
        await rm(part, { force: true });
        throw err;
      }
      await rename(part, path);
      return snapshot;
    }
    await rename(part, path);
    return mode === 'memory' ? memorySnapshotOf(verified) : await openVerified(path, verified, this.disk);
  }

  /** Serves the version served before the restart (SERVING), else the newest verified local file. */
  private async loadNewestLocal(): Promise<void> {
    const local = await this.localVersions();
    const last = await this.lastServed();
    const order =
      last !== undefined && local.includes(last) ? [last, ...local.filter((v) => v !== last)] : local;
    // The version served last is the one this replica was told to serve.
    if (last !== undefined) this.wantedVersion = last;
    for (const v of order) {
      try {
        const path = this.filePath(v);
        const snapshot = await loadSnapshot(
          path,
          {},
          this.modeFor((await stat(path)).size),
          this.shard,
          this.disk,
        );
        this.retire(this.index.swap(snapshot, manifestOf(snapshot.header)));
        if (v === last || last === undefined) {
          this.logger.info(
            { version: v, mode: snapshot.mode },
            'serving the newest local version until the leader answers',
          );
        } else {
          this.logger.error(
            { version: v, wantedVersion: last, mode: snapshot.mode },
            'serving an older local version than the one served before the restart (its file failed ' +
              'verification) until the leader answers',
          );
        }
        return;
      } catch (err) {
        this.logger.warn(
          { version: v, err: (err as Error).message },
          'local file failed verification; removing it',
        );
        if (v === last) this.failed(v, undefined, err);
        await rm(this.filePath(v), { force: true });
      }
    }
  }

  private async removeOldFiles(): Promise<void> {
    const served = this.index.current?.manifest.version;
    const older = (await this.localVersions()).filter((v) => v !== served);
    for (const v of older.slice(KEEP_FILES - 1)) await rm(this.filePath(v), { force: true });
  }

  private async lastServed(): Promise<number | undefined> {
    try {
      const { version } = JSON.parse(await readFile(join(this.settings.dataDir, SERVING_FILE), 'utf8')) as {
        version?: unknown;
      };
      return Number.isSafeInteger(version) ? (version as number) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Versions with a file in DATA_DIR, newest first. */
  private async localVersions(): Promise<number[]> {
    return (await readdir(this.settings.dataDir))
      .map((n) => FILE_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => b - a);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
