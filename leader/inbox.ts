/**
 * The inbox: chokidar reports files dropped into INBOX_DIR; each is ingested once its size and modification time
 * have not changed for INBOX_STABLE_MS (checked here, not with chokidar's awaitWriteFinish, which does not apply to
 * the files found at start: one half-copied then must wait too), then moved to `done/` or `rejected/`
 * under a name prefixed with the time, with `<name>.report.json` beside it: the ingest report, or the refusal with
 * the bad rows. Names starting with `.` or ending in `.tmp`, `.part` or `.partial` are ignored: a writer that
 * copies under such a name and renames when done is never ingested early, however slow it is.
 *
 * A crash mid-ingest leaves the file in the inbox; it is ingested again at start. Partner files are large, so
 * a folder keeps the newest INBOX_KEEP_FILES files, and older ones only while they are younger than INBOX_KEEP_MS:
 * a burst of refused files must not delete the reports someone is about to read (their age is the time in their
 * name, when they were handled).
 *
 * Concurrency: files are ingested one at a time in the order they became stable; each waits its turn behind an
 * upload being ingested.
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FSWatcher, watch } from 'chokidar';
import type { LeaderConfig } from '../common/config.js';
import { writeFileAtomic } from '../common/durable-file.js';
import { AppError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type Ingestor, rejectionOf } from './ingest.js';

const IGNORED_NAME = /^\.|\.(tmp|part|partial)$/i;
const REPORT_SUFFIX = '.report.json';
/** How long a file waits before trying again when the ingest queue is full. */
const BUSY_RETRY_MS = 1000;

export type InboxSettings = Pick<
  LeaderConfig,
  'inboxDir' | 'inboxStableMs' | 'inboxKeepFiles' | 'inboxKeepMs'
>;

/** `2026-12-01T09-00-00-000Z-name.csv`: the time a file was handled, as `process` stamps it. */
const STAMP = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z-/;

/** When a handled file was stamped, ms since the epoch; NaN for a name that is not ours. */
function stampedAt(name: string): number {
  const m = STAMP.exec(name);
  return m === null ? Number.NaN : Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}.${m[5]}Z`);
}

export class Inbox {
  private watcher: FSWatcher | undefined;
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private draining = false;
  private closed = false;

  constructor(
    private readonly settings: InboxSettings,
    private readonly ingestor: Pick<Ingestor, 'ingestFile'>,
    private readonly logger: Logger,
    /** The clock that stamps and ages handled files, ms since the epoch; a fake in tests. */
    private readonly now: () => number = Date.now,
    /**
     * The clock that times how long a file has not changed (INBOX_STABLE_MS), in ms from any origin; a fake in
     * tests, so that a slow machine can never make a file being written look stable.
     */
    private readonly elapsedMs: () => number = () => performance.now(),
  ) {}

  /** Creates the folders and starts watching; resolves once the files already there are known. */
  async start(): Promise<void> {
    const dir = this.settings.inboxDir;
    await mkdir(join(dir, 'done'), { recursive: true });
    await mkdir(join(dir, 'rejected'), { recursive: true });
    const watcher = watch(dir, {
      depth: 0,
      ignoreInitial: false,
      ignored: (path, stats) =>
        path !== dir && (IGNORED_NAME.test(basename(path)) || stats?.isDirectory() === true),
    });
    this.watcher = watcher;
    watcher.on('add', (path) => void this.whenStable(path));
    watcher.on('error', (err) => this.logger.error({ err }, 'inbox watcher failed'));
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
    this.logger.info({ dir, stableMs: this.settings.inboxStableMs }, 'watching the inbox');
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watcher?.close();
  }

  /** Queues `path` once it has stopped changing; forgets it if it goes away first. */
  private async whenStable(path: string): Promise<void> {
    if (this.queued.has(path)) return;
    this.queued.add(path);
    const poll = Math.max(10, Math.min(250, Math.floor(this.settings.inboxStableMs / 4)));
    let last = await stat(path).catch(() => undefined);
    let since = this.elapsedMs();
    while (last !== undefined && !this.closed) {
      await sleep(poll, undefined, { ref: false });
      const now = await stat(path).catch(() => undefined);
      if (now === undefined) break;
      if (now.size !== last.size || now.mtimeMs !== last.mtimeMs) {
        last = now;
        since = this.elapsedMs();
      } else if (this.elapsedMs() - since >= this.settings.inboxStableMs) {
        this.queue.push(path);
        void this.drain();
        return;
      }
    }
    this.queued.delete(path);
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const path = this.queue[0];
        if ((await this.process(path)) === 'retry') {
          await sleep(BUSY_RETRY_MS, undefined, { ref: false });
          continue;
        }
        this.queue.shift();
        this.queued.delete(path);
      }
    } finally {
      this.draining = false;
    }
  }

  private async process(path: string): Promise<'done' | 'retry'> {
    const name = basename(path);
    try {
      await stat(path);
    } catch {
      return 'done'; // Taken away before its turn.
    }
    let folder: 'done' | 'rejected';
    let report: Record<string, unknown>;
    try {
      const accepted = await this.ingestor.ingestFile(path, { source: `inbox ${name}` });
      folder = 'done';
      report = { file: name, accepted: true, ...accepted };
    } catch (err) {
      if (err instanceof AppError && err.code === 'INGEST_BUSY') return 'retry';
      const refused = rejectionOf(err);
      if (refused.status >= 500) this.logger.error({ err, file: name }, 'inbox ingest failed');
      folder = 'rejected';
      report = { file: name, accepted: false, ...refused };
    }
    const stamped = `${new Date(this.now()).toISOString().replace(/[:.]/g, '-')}-${name}`;
    const target = join(this.settings.inboxDir, folder);
    // The report first: if the leader dies between the two, the file is still in the inbox and goes again.
    await writeFileAtomic(target, stamped + REPORT_SUFFIX, `${JSON.stringify(report, null, 2)}\n`);
    await rename(path, join(target, stamped));
    this.logger.info({ file: name, to: `${folder}/${stamped}` }, 'inbox file handled');
    await this.prune(target).catch((err: unknown) => this.logger.warn({ err }, 'inbox prune failed'));
    return 'done';
  }

  /**
   * Removes the files (and their reports) of a folder that are past the newest INBOX_KEEP_FILES and older than
   * INBOX_KEEP_MS; names start with the time. A name that is not ours carries no time and is left alone.
   */
  private async prune(folder: string): Promise<void> {
    const files = (await readdir(folder)).filter((n) => !n.endsWith(REPORT_SUFFIX)).sort();
    const beyondCount = files.slice(0, Math.max(0, files.length - this.settings.inboxKeepFiles));
    const oldest = this.now() - this.settings.inboxKeepMs;
    for (const old of beyondCount.filter((n) => stampedAt(n) <= oldest)) {
      await rm(join(folder, old), { force: true });
      await rm(join(folder, old + REPORT_SUFFIX), { force: true });
    }
  }
}
