/**
 * The leader's versions on disk:
 *   DATA_DIR/snapshots/v000042.snap   immutable snapshot files
 *   DATA_DIR/snapshots/v000042.json   their manifests (written after the file is in place)
 *   DATA_DIR/CURRENT                  {"version": 42}, replaced atomically
 *   DATA_DIR/tmp/                     builds in progress; emptied at start
 *
 * A version exists once its manifest exists, and is current once CURRENT names it; each step is a write to a
 * temporary name, fsync, rename, fsync of the directory. A crash between steps leaves the previous current version.
 *
 * Concurrency: one store per data directory, used by one process; `commit`, `activate` and `prune` are called
 * under the leader's ingest lock, reads at any time.
 */
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/durable-file.js';
import { AppError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { manifestOf, type SnapshotManifest, snapshotFileName } from '../common/protocol.js';
import type { SnapshotHeader } from '../common/snapshot/format.js';

const MANIFEST_RE = /^v(\d{6,})\.json$/;

function manifestName(version: number): string {
  return snapshotFileName(version).replace(/\.snap$/, '.json');
}

export class SnapshotStore {
  readonly snapshotsDir: string;
  readonly tmpDir: string;
  private manifests = new Map<number, SnapshotManifest>();
  private currentVersion: number | undefined;

  private constructor(
    readonly dataDir: string,
    private readonly logger: Logger,
  ) {
    this.snapshotsDir = join(dataDir, 'snapshots');
    this.tmpDir = join(dataDir, 'tmp');
  }

  /** Opens (creating) the store: removes leftovers of interrupted builds and commits, reads the versions. */
  static async open(dataDir: string, logger: Logger): Promise<SnapshotStore> {
    const store = new SnapshotStore(dataDir, logger);
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    await mkdir(store.snapshotsDir, { recursive: true });
    const names = await readdir(store.snapshotsDir);
    for (const name of names) {
      const m = MANIFEST_RE.exec(name);
      if (m === null) continue;
      const manifest = JSON.parse(await readFile(join(store.snapshotsDir, name), 'utf8')) as SnapshotManifest;
      store.manifests.set(manifest.version, manifest);
    }
    for (const name of names) {
      const version = /^v(\d{6,})\.snap$/.exec(name);
      const orphan = version === null ? !MANIFEST_RE.test(name) : !store.manifests.has(Number(version[1]));
      if (orphan) {
        logger.warn({ file: name }, 'removing a file left by an interrupted commit');
        await rm(join(store.snapshotsDir, name), { force: true });
      }
    }
    try {
      const current = JSON.parse(await readFile(join(dataDir, 'CURRENT'), 'utf8')) as { version: number };
      if (store.manifests.has(current.version)) store.currentVersion = current.version;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return store;
  }

  /** The current version's manifest, if any version was ever committed. */
  current(): SnapshotManifest | undefined {
    return this.currentVersion === undefined ? undefined : this.manifests.get(this.currentVersion);
  }

  get(version: number): SnapshotManifest | undefined {
    return this.manifests.get(version);
  }

  /** Every kept version, newest first. */
  list(): SnapshotManifest[] {
    return [...this.manifests.values()].sort((a, b) => b.version - a.version);
  }

  /** The number the next build gets: one more than any version seen. */
  nextVersion(): number {
    return Math.max(0, ...this.manifests.keys()) + 1;
  }

  filePath(version: number): string {
    return join(this.snapshotsDir, snapshotFileName(version));
  }

  /** Moves a finished, fsynced build into place and makes it current. */
  async commit(builtPath: string, header: SnapshotHeader): Promise<SnapshotManifest> {
    const manifest = manifestOf(header);
    await rename(builtPath, this.filePath(header.version));
    await writeFileAtomic(this.snapshotsDir, manifestName(header.version), JSON.stringify(manifest));
    this.manifests.set(manifest.version, manifest);
    await this.activate(manifest.version);
    return manifest;
  }

  /** Makes a kept version current (rollback or roll forward). */
  async activate(version: number): Promise<SnapshotManifest> {
    const manifest = this.manifests.get(version);
    if (manifest === undefined)
      throw new AppError('SNAPSHOT_NOT_FOUND', `version ${version} is not kept here`);
    await writeFileAtomic(this.dataDir, 'CURRENT', JSON.stringify({ version }));
    this.currentVersion = version;
    return manifest;
  }

  /** Deletes the oldest versions beyond `keep`, never the current one nor any in `inUse`. */
  async prune(keep: number, inUse: ReadonlySet<number> = new Set()): Promise<number[]> {
    const removed: number[] = [];
    for (const m of this.list().slice(keep)) {
      if (m.version === this.currentVersion || inUse.has(m.version)) continue;
      this.manifests.delete(m.version);
      await rm(join(this.snapshotsDir, manifestName(m.version)), { force: true });
      await rm(this.filePath(m.version), { force: true });
      removed.push(m.version);
    }
    if (removed.length > 0) this.logger.info({ removed }, 'pruned old versions');
    return removed;
  }
}
