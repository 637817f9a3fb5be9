/**
 * Ingest: a CSV byte stream becomes a new current snapshot version, or is refused whole with a report.
 * The live version is touched only by the final commit, so a refused or failed ingest changes nothing.
 *
 * Concurrency: one ingest at a time per leader. A stream (PUT) that finds one running gets INGEST_BUSY (409) at
 * once: its sender cannot be held. A file already on disk (a finished upload, an inbox file) waits its turn in a
 * short queue (`maxWaiting`), first come first served; past it, INGEST_BUSY too.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { LeaderConfig } from '../common/config.js';
import { AppError, storageErrorOf } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { SnapshotManifest } from '../common/protocol.js';
import { type BadRow, isBadRow, isHeader, parseRow } from '../common/record.js';
import type { SnapshotHeader } from '../common/snapshot/format.js';
import { CsvSyntaxError, readCsv } from './csv-reader.js';
import type { IngestMetrics } from './metrics.js';
import type { ParsePool } from './parse-pool.js';
import { SnapshotBuilder } from './snapshot-build/snapshot-builder.js';
import type { SnapshotStore } from './snapshot-store.js';

/** Bad rows listed in a report; the rest are only counted. */
export const REPORTED_BAD_ROWS = 100;

export interface IngestOptions {
  /** Replace the current version even when the new file is much smaller (docs/design.md §2 shrink guard). */
  readonly force?: boolean;
  /** Expected size of the source in bytes, when known. */
  readonly sizeHintBytes?: number;
  /** Where the file came from, for logs and reports (an upload, an inbox file name). */
  readonly source: string;
}

/** What an accepted ingest reports. */
export interface IngestReport {
  readonly version: number;
  readonly snapshotId: string;
  readonly checksum: string;
  readonly rows: number;
  readonly duplicates: number;
  readonly badRowCount: number;
  readonly badRows: readonly BadRow[];
  readonly sourceBytes: number;
  readonly sourceSha256: string;
  readonly durationMs: number;
  readonly rowsPerSecond: number;
}

/** What a refused ingest reports: the error's code and message, and the bad rows when there are any. */
export interface IngestRejection {
  readonly error: string;
  readonly message: string;
  readonly status: number;
  readonly badRowCount: number;
  readonly badRows: readonly BadRow[];
}

/** The report of a refused ingest, from the error it threw. */
export function rejectionOf(err: unknown): IngestRejection {
  const known = err instanceof AppError ? err : new AppError('INTERNAL', (err as Error).message);
  const badRows = (known.details?.badRows as BadRow[] | undefined) ?? [];
  const badRowCount = (known.details?.badRowCount as number | undefined) ?? 0;
  return { error: known.code, message: known.message, status: known.status, badRowCount, badRows };
}

export type IngestSettings = Pick<
  LeaderConfig,
  'maxBadRows' | 'minRowsRatio' | 'buildMemoryBytes' | 'maxUploadBytes'
> & {
  /** Files that may wait for the running ingest; more get INGEST_BUSY. */
  readonly maxWaiting: number;
};

/** A CSV of `rows` valid rows shaped like a partner's file (UUID-like ids, decimal prices, Go-style dates). */
function* warmUpCsv(rows: number): Generator<Buffer> {
  for (let start = 0; start < rows; start += 4096) {
    let text = '';
    for (let i = start; i < Math.min(rows, start + 4096); i++) {
      text += `d018ef0b-dbd9-48f1-ac1a-${i.toString(16).padStart(12, '0')},${i}.683466,2018-08-04 05:32:31 +0200 CEST\n`;
    }
    yield Buffer.from(text);
  }
}

/** Read size for files ingested from disk. */
const FILE_READ_BYTES = 1 << 20;

function describe(badRows: readonly BadRow[], count: number): string {
  const first = badRows[0];
  const more = count > 1 ? ` (and ${count - 1} more bad row${count > 2 ? 's' : ''})` : '';
  return `line ${first.line}: ${first.reason}${more}`;
}

export class Ingestor {
  private running: { source: string; startedAt: Date } | undefined;
  /** The warm-up build while it runs, and its input: a file that arrives stops it (see `warmUp`). */
  private warming: { readonly done: Promise<void>; readonly input: Readable } | undefined;
  /** Files waiting for the lock, oldest first; `release` hands the lock to the first. */
  private readonly waiting: { source: string; resolve: () => void }[] = [];

  constructor(
    private readonly store: SnapshotStore,
    private readonly settings: IngestSettings,
    private readonly logger: Logger,
    /** Called after a version becomes current (the leader notifies replicas). */
    private readonly onCommitted: (manifest: SnapshotManifest) => void,
    /** Parse workers for the fast path; undefined sends every file through csv-parse. */
    private readonly pool: ParsePool | undefined,
    private readonly metrics: IngestMetrics,
    /** Overrides for tests: smaller partitions, forced spilling. */
    private readonly buildTuning: { targetPartitionRows?: number; spillBuckets?: number } = {},
  ) {}

  /** Files waiting for the ingest lock now (each behind the running ingest). */
  get waitingFiles(): number {
    return this.waiting.length;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /**
   * Validates and builds a stream into a new version and makes it current; throws an AppError when refused.
   * Refused at once with INGEST_BUSY while another ingest runs.
   */
  async ingest(input: Readable, options: IngestOptions): Promise<IngestReport> {
    await this.stopWarmUp();
    if (this.running !== undefined) {
      input.resume();
      throw this.busyError();
    }
    this.running = { source: options.source, startedAt: new Date() };
    return this.measured(() => this.run(input, options));
  }

  /** Like `ingest`, for a complete file on disk: waits its turn behind a running ingest (up to `maxWaiting`). */
  async ingestFile(path: string, options: Omit<IngestOptions, 'sizeHintBytes'>): Promise<IngestReport> {
    await this.stopWarmUp();
    if (this.running !== undefined) {
      if (this.waiting.length >= this.settings.maxWaiting) throw this.busyError();
      await new Promise<void>((resolve) => this.waiting.push({ source: options.source, resolve }));
    } else {
      this.running = { source: options.source, startedAt: new Date() };
    }
    return this.measured(async () => {
      const { size } = await stat(path);
      const input = createReadStream(path, { highWaterMark: FILE_READ_BYTES });
      try {
        return await this.run(input, { ...options, sizeHintBytes: size });
      } finally {
        input.destroy();
      }
    });
  }

  /**
   * Starts every parse worker and runs a generated file of `rows` rows through the whole ingest path (workers,
   * builder, partition writer, hashing) into a throwaway file, committing nothing, so that the first real file
   * after a start finds the code loaded and compiled: it ingested at about a third of the warm rate before
   * (issue 13: 1.49 s against 0.44 s for 200K rows). A file that arrives first stops it, so no file ever waits
   * for it. Called once at start; never rejects.
   */
  warmUp(rows: number): Promise<void> {
    if (this.warming !== undefined) return this.warming.done;
    const path = join(this.store.tmpDir, `warm-up-${process.pid}.snap`);
    const started = performance.now();
    const input = Readable.from(warmUpCsv(rows));
    // Stopped before the build reads it, the stream's error has no other listener yet; the build sees it anyway.
    input.on('error', () => undefined);
    const done = (async () => {
      let failure: unknown;
      try {
        await this.pool?.warm();
        await this.build(input, { source: 'warm-up' }, 1, path);
      } catch (err) {
        failure = err;
      } finally {
        // Removed before anything is said, so that whoever reads the log finds tmp/ as the warm-up left it.
        await rm(path, { force: true }).catch((err) =>
          this.logger.warn({ err, path }, 'could not remove the ingest warm-up file'),
        );
        this.warming = undefined;
      }
      if (failure === undefined)
        this.logger.info({ rows, ms: Math.round(performance.now() - started) }, 'ingest path warmed up');
      else if (input.destroyed) this.logger.info('ingest warm-up stopped: a file arrived first');
      else
        this.logger.warn(
          { err: failure },
          'the ingest warm-up failed; the first file pays for the start-up instead',
        );
    })();
    this.warming = { done, input };
    return done;
  }

  /** Stops a warm-up still running and waits for it to let go of the workers. */
  private async stopWarmUp(): Promise<void> {
    const w = this.warming;
    if (w === undefined) return;
    w.input.destroy(new Error('a file arrived'));
    await w.done;
  }

  private busyError(): AppError {
    const r = this.running as { source: string; startedAt: Date };
    return new AppError(
      'INGEST_BUSY',
      `another ingest (${r.source}, started ${r.startedAt.toISOString()}) is running` +
        (this.waiting.length > 0 ? ` and ${this.waiting.length} more wait` : '') +
        '; retry when it ends',
    );
  }

  /** Runs one ingest that holds the lock, with its metrics; then hands the lock to the next waiting file. */
  private async measured(work: () => Promise<IngestReport>): Promise<IngestReport> {
    this.metrics.inProgress.inc();
    const started = performance.now();
    try {
      const report = await work();
      this.metrics.ingests.labels('ok').inc();
      this.metrics.rows.inc(report.rows);
      this.metrics.badRows.inc(report.badRowCount);
      return report;
    } catch (err) {
      this.metrics.ingests.labels(err instanceof AppError ? err.code : 'INTERNAL').inc();
      const bad = err instanceof AppError ? err.details?.badRowCount : undefined;
      if (typeof bad === 'number') this.metrics.badRows.inc(bad);
      throw err;
    } finally {
      this.metrics.duration.observe((performance.now() - started) / 1000);
      this.metrics.inProgress.dec();
      const next = this.waiting.shift();
      this.running = next === undefined ? undefined : { source: next.source, startedAt: new Date() };
      next?.resolve();
    }
  }

  private async run(input: Readable, options: IngestOptions): Promise<IngestReport> {
    const started = performance.now();
    const version = this.store.nextVersion();
    const path = join(this.store.tmpDir, `build-v${version}-${process.pid}.snap`);
    try {
      const { header, badRowCount, badRows, sourceBytes, rowsAdded } = await this.build(
        input,
        options,
        version,
        path,
      );
      const current = this.store.current();
      if (
        options.force !== true &&
        current !== undefined &&
        header.rowCount < current.rows * this.settings.minRowsRatio
      ) {
        throw new AppError(
          'INGEST_SHRINK',
          `the file has ${header.rowCount} rows, under ${Math.round(this.settings.minRowsRatio * 100)}% of the ` +
            `current version's ${current.rows}; a truncated feed must not replace the data set. Upload again with force=true to replace it anyway`,
        );
      }
      const manifest = await this.store.commit(path, header);
      const durationMs = Math.round(performance.now() - started);
      const report: IngestReport = {
        version: manifest.version,
        snapshotId: manifest.snapshotId,
        checksum: manifest.checksum,
        rows: manifest.rows,
        duplicates: manifest.duplicates,
        badRowCount,
        badRows,
        sourceBytes,
        sourceSha256: manifest.sourceSha256,
        durationMs,
        rowsPerSecond: Math.round(rowsAdded / Math.max(durationMs / 1000, 0.001)),
      };
      this.logger.info({ ...report, badRows: undefined, source: options.source }, 'ingested a new version');
      this.onCommitted(manifest);
      return report;
    } catch (err) {
      if (err instanceof AppError && err.status < 500) {
        this.logger.warn({ source: options.source, code: err.code, message: err.message }, 'ingest refused');
      }
      // The build writes its run files and the new snapshot under DATA_DIR: a full or read-only disk there is
      // said so (507), not a bare 500. What was written is removed below; the live version never moved.
      throw storageErrorOf(err, { setting: 'DATA_DIR', path: this.store.dataDir }) ?? err;
    } finally {
      await rm(path, { force: true });
    }
  }

  /** Reads, validates and builds `input` into the snapshot file `path` (not yet a version); throws when refused. */
  private async build(
    input: Readable,
    options: IngestOptions,
    version: number,
    path: string,
  ): Promise<{
    header: SnapshotHeader;
    badRowCount: number;
    badRows: BadRow[];
    sourceBytes: number;
    rowsAdded: number;
  }> {
    const builder = new SnapshotBuilder({
      path,
      tmpDir: this.store.tmpDir,
      memoryBytes: this.settings.buildMemoryBytes,
      sizeHintBytes: options.sizeHintBytes,
      // Partition ranges build on the pool's workers too: a worker each, plus one being written.
      rangeBuilder:
        this.pool === undefined ? undefined : (...args) => (this.pool as ParsePool).build(...args),
      buildConcurrency: (this.pool?.size ?? 0) + 1,
      ...this.buildTuning,
    });
    const sha = createHash('sha256');
    let sourceBytes = 0;
    const badRows: BadRow[] = [];
    let badRowCount = 0;
    let first = true;
    const noteBad = (b: BadRow) => {
      badRowCount++;
      if (badRows.length < REPORTED_BAD_ROWS) badRows.push(b);
    };
    try {
      try {
        await readCsv(input, {
          pool: this.pool,
          reportLimit: REPORTED_BAD_ROWS,
          onBytes: (chunk) => {
            sha.update(chunk);
            sourceBytes += chunk.length;
            if (sourceBytes > this.settings.maxUploadBytes) {
              throw new AppError(
                'REQUEST_TOO_LARGE',
                `the file is larger than MAX_UPLOAD_BYTES (${this.settings.maxUploadBytes} bytes)`,
              );
            }
          },
          onBlock: (block, baseLine) => {
            if (block.lines > 0) first = false;
            for (const b of block.badRows) noteBad({ ...b, line: b.line + baseLine });
            badRowCount += block.badRowCount - block.badRows.length;
            // Past the tolerance the file is refused: keep counting bad rows, stop building.
            return badRowCount > this.settings.maxBadRows
              ? undefined
              : builder.addEncoded(block.encoded, block.rows, block.groups);
          },
          onRow: (fields, line) => {
            if (first) {
              first = false;
              if (isHeader(fields)) return undefined;
            }
            const r = parseRow(fields, line);
            if (isBadRow(r)) {
              noteBad(r);
              return undefined;
            }
            return badRowCount > this.settings.maxBadRows ? undefined : builder.add(r);
          },
        });
      } catch (err) {
        if (!(err instanceof CsvSyntaxError)) throw err;
        noteBad({ line: err.line, column: 'row', value: '', reason: `CSV syntax: ${err.message}` });
        badRowCount = Math.max(badRowCount, this.settings.maxBadRows + 1);
      }
      if (badRowCount > this.settings.maxBadRows) {
        throw new AppError('INGEST_BAD_ROWS', describe(badRows, badRowCount), { badRowCount, badRows });
      }
      if (builder.stats.rowsAdded === 0) {
        throw new AppError(
          'INGEST_EMPTY',
          'the file has no rows: expected lines of id,price,expiration_date',
        );
      }
      const header = await builder.finish({ version, sourceSha256: sha.digest('hex'), badRowCount });
      return { header, badRowCount, badRows, sourceBytes, rowsAdded: builder.stats.rowsAdded };
    } finally {
      await builder.abort();
    }
  }
}
