/**
 * The leader checks its own snapshot files: bytes rot on disks, and a file that no longer matches its hash tree
 * (FORMAT.md) must not be made current or offered to replicas, which would refuse it and pull it again and again.
 *
 * - A version is verified in full (header, directory, every partition, identity against its manifest) before it
 *   is made current by an activation, and at start for the current version. A version this leader has just built
 *   counts as verified: the builder hashed the bytes it wrote.
 * - A background scrub verifies every kept version again, newest first, at most SCRUB_BYTES_PER_SECOND, then
 *   waits SCRUB_INTERVAL_MS before the next pass.
 * - A version found corrupt is marked so (GET /snapshots, metrics), is refused for activation (409
 *   SNAPSHOT_CORRUPT), and its file is no longer served to replicas. When it is the current version (at start, or
 *   found by the scrub), `onCurrentCorrupt` lets the leader fall back to the newest kept version that verifies.
 *
 * The state lives in memory: after a restart every version is unchecked until verified again (the current one at
 * once, the others by the first scrub pass).
 *
 * Concurrency: verifications may run while the store changes; a result for a version no longer kept is dropped.
 * The scrub is one loop, one file at a time; `close` stops it and waits for the file in progress.
 */
import { open } from 'node:fs/promises';
import { AppError, SnapshotError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { SnapshotManifest } from '../common/protocol.js';
import { readLayout, verifyFromFile } from '../common/snapshot/reader.js';
import { BodyVerifier } from '../common/snapshot/verifier.js';
import type { SnapshotStore } from './snapshot-store.js';

/** How much of a body one paced step verifies: the scrub sleeps between steps to keep to its rate. */
const STEP_BYTES = 1024 * 1024;

/** A version's file: not verified since this leader started, verified, or found corrupt. */
export type CheckState = 'unchecked' | 'ok' | 'corrupt';

/** What GET /snapshots shows of a version's last verification. */
export interface VersionCheck {
  readonly state: CheckState;
  /** When the last verification ended (or the version was built here); null while never checked. */
  readonly checkedAt: string | null;
  /** Why the file was found corrupt: the verifier's code (SNAPSHOT_CHECKSUM_MISMATCH, ...) or an I/O code. */
  readonly error: { readonly code: string; readonly message: string } | null;
}

export interface SnapshotChecksOptions {
  /** SCRUB_BYTES_PER_SECOND: the scrub's rate; 0 turns the scrub off (activations and starts still verify). */
  readonly scrubBytesPerSecond: number;
  /** SCRUB_INTERVAL_MS: the pause between two scrub passes. */
  readonly scrubIntervalMs: number;
  /** Called (once per finding) when the scrub finds the current version corrupt. */
  readonly onCurrentCorrupt?: (version: number) => void;
  /** The clock, ms; a fake in tests. */
  readonly now?: () => number;
  /** Waits `ms` (or until `signal` aborts); a fake that moves a fake clock in tests. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const UNCHECKED: VersionCheck = Object.freeze({ state: 'unchecked', checkedAt: null, error: null });

export class SnapshotChecks {
  private readonly checks = new Map<number, VersionCheck>();
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private loop: Promise<void> | undefined;
  private readonly stop = new AbortController();
  /** Bytes verified by the scrub (metrics). */
  scrubbedBytes = 0;
  /** Verifications by result (metrics). */
  readonly results = { ok: 0, corrupt: 0 };

  constructor(
    private readonly store: SnapshotStore,
    private readonly logger: Logger,
    private readonly options: SnapshotChecksOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? sleep;
  }

  /** The last verification of `version`. */
  of(version: number): VersionCheck {
    return this.checks.get(version) ?? UNCHECKED;
  }

  /** Kept versions known to be corrupt. */
  corruptVersions(): number[] {
    return this.store
      .list()
      .filter((m) => this.of(m.version).state === 'corrupt')
      .map((m) => m.version);
  }

  /** Records a version this leader has just built and committed as verified. */
  built(version: number): void {
    this.checks.set(version, { state: 'ok', checkedAt: new Date(this.now()).toISOString(), error: null });
  }

  /** Verifies `version`'s file now, at full speed; resolves with the outcome (never rejects). */
  verify(version: number): Promise<VersionCheck> {
    return this.run(version, undefined);
  }

  /** Verifies `version` before it is made current; throws SNAPSHOT_CORRUPT when its file fails. */
  async require(version: number): Promise<void> {
    if (this.store.get(version) === undefined) return; // the store's own SNAPSHOT_NOT_FOUND says it better
    const check = await this.verify(version);
    if (check.state === 'corrupt') throw corruptError(version, check);
  }

  /** SNAPSHOT_CORRUPT for a version already known corrupt (the file route refuses it without reading it). */
  refuseIfCorrupt(version: number): void {
    const check = this.of(version);
    if (check.state === 'corrupt') throw corruptError(version, check);
  }

  /** The newest kept version other than `except` whose file verifies now. */
  async newestGood(except: number): Promise<SnapshotManifest | undefined> {
    for (const m of this.store.list()) {
      if (m.version === except) continue;
      if ((await this.verify(m.version)).state === 'ok') return m;
    }
    return undefined;
  }

  /** Starts the background scrub (see the module comment); nothing when its rate is 0. */
  start(): void {
    if (this.options.scrubBytesPerSecond <= 0 || this.loop !== undefined) return;
    this.loop = this.scrub().catch((err) => this.logger.error({ err }, 'the snapshot scrub stopped'));
  }

  /** Stops the scrub and waits for the file it is reading. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }

  private async scrub(): Promise<void> {
    while (!this.stop.signal.aborted) {
      for (const m of this.store.list()) {
        if (this.stop.signal.aborted) return;
        if (this.store.get(m.version) === undefined) continue;
        const before = this.of(m.version).state;
        const check = await this.run(m.version, this.options.scrubBytesPerSecond);
        if (this.stop.signal.aborted) return;
        if (
          check.state === 'corrupt' &&
          before !== 'corrupt' &&
          m.version === this.store.current()?.version
        ) {
          this.options.onCurrentCorrupt?.(m.version);
        }
      }
      await this.sleep(this.options.scrubIntervalMs, this.stop.signal);
    }
  }

  /** One verification, paced to `bytesPerSecond` when given. */
  private async run(version: number, bytesPerSecond: number | undefined): Promise<VersionCheck> {
    const manifest = this.store.get(version);
    if (manifest === undefined) return UNCHECKED;
    // While a verification runs, the last result stays visible.
    const previous = this.of(version);
    let check: VersionCheck;
    try {
      await this.verifyFile(manifest, bytesPerSecond);
      check = { state: 'ok', checkedAt: new Date(this.now()).toISOString(), error: null };
      this.results.ok++;
    } catch (err) {
      if (err instanceof Stopped) return previous;
      const e = err as NodeJS.ErrnoException;
      const code = err instanceof AppError ? err.code : (e.code ?? 'INTERNAL');
      check = {
        state: 'corrupt',
        checkedAt: new Date(this.now()).toISOString(),
        error: { code, message: e.message },
      };
      this.results.corrupt++;
      this.logger.error(
        { version, code, err: e.message, path: this.store.filePath(version) },
        'a kept snapshot file on the leader is corrupt: it will not be made current nor sent to replicas',
      );
    }
    if (this.store.get(version) === undefined) {
      this.checks.delete(version);
      return check;
    }
    this.checks.set(version, check);
    return check;
  }

  private async verifyFile(m: SnapshotManifest, bytesPerSecond: number | undefined): Promise<void> {
    const h = await open(this.store.filePath(m.version), 'r');
    try {
      const size = (await h.stat()).size;
      if (size !== m.bytes) {
        throw new SnapshotError(
          'SNAPSHOT_TRUNCATED',
          `the file has ${size} bytes; its manifest says ${m.bytes}`,
        );
      }
      const { header, partitions } = await readLayout(h, { snapshotId: m.snapshotId, checksum: m.checksum });
      const verifier = new BodyVerifier(header, partitions);
      const started = this.now();
      let done = 0;
      while (verifier.position < verifier.end) {
        const from = verifier.position;
        await verifyFromFile(h, verifier, Math.min(verifier.end, from + STEP_BYTES));
        done += verifier.position - from;
        if (bytesPerSecond === undefined) continue;
        this.scrubbedBytes += verifier.position - from;
        // Keep to the rate: sleep until `done` bytes are due.
        const due = started + (done / bytesPerSecond) * 1000;
        if (due > this.now()) await this.sleep(due - this.now(), this.stop.signal);
        if (this.stop.signal.aborted) throw new Stopped();
      }
    } finally {
      await h.close();
    }
  }
}

/** The scrub was stopped in the middle of a file (at close): not a finding. */
class Stopped extends Error {}

function corruptError(version: number, check: VersionCheck): AppError {
  const why = check.error === null ? '' : ` (${check.error.code}: ${check.error.message})`;
  return new AppError(
    'SNAPSHOT_CORRUPT',
    `version ${version}'s file on the leader's disk is corrupt${why}; it cannot be made current nor sent. ` +
      'Activate another kept version, or ingest the file again',
    { version, check },
  );
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
