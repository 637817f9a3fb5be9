/**
 * Resumable uploads under /uploads: tus 1.0 (core, creation, termination), served by @tus/server with its file
 * store, so any tus client works (decision 003). Each upload is two files in UPLOAD_DIR/tus: the bytes so far and
 * a JSON record of its length and metadata; a leader restarted mid-upload answers HEAD with the offset on disk and
 * the client sends the rest.
 *
 * When the last byte arrives, the upload is ingested like any other file (waiting its turn behind a running
 * ingest) and the final PATCH answers with the ingest report (200) or the refusal (its 4xx and error body); a POST that
 * carried the whole file (creation-with-upload) answers 201 with Location, Upload-Offset and the report; either
 * way the upload's bytes are deleted then. A complete upload found at start (the leader stopped before its ingest
 * committed) is ingested then. An upload that receives nothing for UPLOAD_IDLE_EXPIRY_MS is deleted by a periodic
 * sweep. Metadata `force` = `true` passes the shrink guard.
 *
 * Concurrency: @tus/server locks an upload while a request writes to it; `finish` runs once per upload (a second
 * finishing PATCH shares the first one's outcome).
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FileStore } from '@tus/file-store';
import { Server, type Upload } from '@tus/server';
import type { LeaderConfig } from '../common/config.js';
import { AppError, type ErrorCode, errorBody, storageErrorOf } from '../common/errors.js';
import { isClientGone } from '../common/http.js';
import type { Logger } from '../common/logger.js';
import type { Ingestor } from './ingest.js';

/** Where the routes are mounted. */
export const UPLOADS_PATH = '/uploads';

type HookAnswer = { status_code?: number; headers?: Record<string, string>; body?: string };

/** An error thrown to @tus/server: it answers with this status and body. */
function tusError(err: AppError): { status_code: number; body: string } {
  return { status_code: err.status, body: JSON.stringify(errorBody(err)) };
}

/** Codes for the errors @tus/server answers by itself (offset conflicts, unknown uploads, sizes). */
function codeForStatus(status: number): ErrorCode {
  if (status === 404 || status === 410) return 'UPLOAD_NOT_FOUND';
  if (status === 409) return 'UPLOAD_OFFSET_MISMATCH';
  if (status === 413) return 'REQUEST_TOO_LARGE';
  if (status === 429) return 'UPLOAD_LIMIT';
  return status >= 500 ? 'INTERNAL' : 'REQUEST_BAD';
}

export type UploadSettings = Pick<
  LeaderConfig,
  'uploadDir' | 'maxUploadBytes' | 'maxUploads' | 'uploadIdleExpiryMs'
>;

export class ResumableUploads {
  readonly server: Server;
  readonly directory: string;
  private readonly store: FileStore;
  private readonly finishing = new Map<string, Promise<HookAnswer>>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly settings: UploadSettings,
    private readonly ingestor: Ingestor,
    private readonly logger: Logger,
  ) {
    this.directory = join(settings.uploadDir, 'tus');
    // No creation-based expiry: an upload of hundreds of gigabytes may take days; idleness is what counts (sweep).
    this.store = new FileStore({ directory: this.directory, expirationPeriodInMilliseconds: 0 });
    this.server = new Server({
      path: UPLOADS_PATH,
      datastore: this.store,
      maxSize: settings.maxUploadBytes,
      relativeLocation: true,
      onUploadCreate: async (_req, upload) => {
        if ((await this.ids()).length >= settings.maxUploads) {
          throw tusError(
            new AppError(
              'UPLOAD_LIMIT',
              `${settings.maxUploads} uploads are in progress (MAX_UPLOADS); finish or delete one, or retry later`,
            ),
          );
        }
        this.logger.info({ upload: upload.id, bytes: upload.size }, 'upload created');
        return {};
      },
      onUploadFinish: async (req, upload) => {
        const answer = await this.finish(upload);
        // A POST that carried the whole file (creation-with-upload) created the upload: tus 1.0 answers a creation
        // 201 with Location and Upload-Offset, which the library adds for a 201 only. Clients read the offset and
        // are done; without Location, tus-js-client fails although the version was made.
        return req.method === 'POST' ? { ...answer, status_code: 201 } : answer;
      },
      onResponseError: (_req, err) => {
        if (err instanceof Error && isClientGone(err as Error & { code?: string })) {
          // The client went away mid-upload: what arrived is kept for it to resume; nobody reads this answer.
          this.logger.info({ code: (err as { code?: string }).code }, 'upload cut by its client');
          return tusError(new AppError('REQUEST_BAD', 'the upload was cut; resume it'));
        }
        const storage = storageErrorOf(err, { setting: 'UPLOAD_DIR', path: this.settings.uploadDir });
        if (storage !== undefined) {
          // The bytes that fit are kept: once there is room, HEAD tells the client where to resume.
          this.logger.error({ err, code: storage.code }, 'upload cannot be stored');
          return tusError(storage);
        }
        if (err instanceof Error && !('status_code' in err)) {
          this.logger.error({ err }, 'upload failed');
          return tusError(new AppError('INTERNAL', 'the upload failed on the leader; resume it'));
        }
        const { status_code, body } = err as { status_code: number; body: string };
        // Ours are JSON already; the library's own are plain sentences: give them a code like every other error.
        if (body.startsWith('{')) return { status_code, body };
        return tusError(new AppError(codeForStatus(status_code), body.trim()));
      },
    });
  }

  /**
   * Creates the directory, starts the idle sweep, and queues the ingest of every complete upload found on disk:
   * a leader stopped after an upload's last byte but before its ingest committed (a crash, or SIGTERM outlasting
   * SHUTDOWN_TIMEOUT_MS) left it there, and its client, asking the offset, would find it complete and never send
   * it again. Resolves once they are queued, not ingested.
   */
  async start(): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    const every = Math.max(10, Math.min(60_000, Math.floor(this.settings.uploadIdleExpiryMs / 4)));
    this.sweeper = setInterval(() => void this.sweep(), every);
    this.sweeper.unref();
    for (const upload of await this.complete()) {
      this.logger.info({ upload: upload.id, bytes: upload.size }, 'ingesting an upload found complete');
      // Its outcome is logged by the ingest; nobody waits for this answer.
      this.finish(upload).catch(() => undefined);
    }
  }

  /** The uploads on disk that have all their bytes (a declared length, reached). */
  private async complete(): Promise<Upload[]> {
    const found: Upload[] = [];
    for (const id of await this.ids()) {
      const upload = await this.store.getUpload(id).catch(() => undefined);
      if (upload?.size !== undefined && upload.offset === upload.size) found.push(upload);
    }
    return found;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  /** When an upload that receives its last byte now expires, unless more bytes arrive. */
  expiresAt(now = Date.now()): Date {
    return new Date(now + this.settings.uploadIdleExpiryMs);
  }

  /** Ids of the uploads on disk. */
  private ids(): Promise<string[]> {
    return (this.store.configstore.list as () => Promise<string[]>)();
  }

  /** Deletes uploads that received no byte for UPLOAD_IDLE_EXPIRY_MS; returns how many went. */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const id of await this.ids().catch(() => [])) {
      if (this.finishing.has(id)) continue;
      try {
        const { mtimeMs, size } = await stat(join(this.directory, id));
        if (now - mtimeMs < this.settings.uploadIdleExpiryMs) continue;
        await this.store.remove(id);
        removed++;
        this.logger.info({ upload: id, bytes: size }, 'expired an idle upload');
      } catch {
        // Gone meanwhile (finished, deleted by its client): nothing to expire.
      }
    }
    return removed;
  }

  private finish(upload: Upload): Promise<HookAnswer> {
    let answer = this.finishing.get(upload.id);
    if (answer === undefined) {
      answer = this.ingest(upload).finally(() => this.finishing.delete(upload.id));
      this.finishing.set(upload.id, answer);
    }
    return answer;
  }

  private async ingest(upload: Upload): Promise<HookAnswer> {
    const name = upload.metadata?.filename;
    const source = `upload ${upload.id}${name ? ` (${name})` : ''}`;
    try {
      const report = await this.ingestor.ingestFile(join(this.directory, upload.id), {
        force: upload.metadata?.force === 'true',
        source,
      });
      await this.remove(upload.id);
      return {
        status_code: 200,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(report),
      };
    } catch (err) {
      // Also when busy (more finished files than the ingest queue holds): a kept, complete upload would look done
      // to a client that retries (HEAD answers offset = length), while a deleted one makes it upload again.
      await this.remove(upload.id);
      if (err instanceof AppError && err.status < 500) throw tusError(err);
      this.logger.error({ err, upload: upload.id }, 'ingest of an upload failed');
      throw tusError(new AppError('INTERNAL', `the ingest of upload ${upload.id} failed; upload it again`));
    }
  }

  private async remove(id: string): Promise<void> {
    await this.store
      .remove(id)
      .catch((err: unknown) => this.logger.warn({ err, upload: id }, 'could not delete'));
  }
}
