/**
 * Browser-style uploads: `POST /promotions` with `multipart/form-data`, one file field (any name) and an optional
 * field `force=true`. koa-body (formidable) streams the file into a fresh folder under UPLOAD_DIR/forms with the
 * MAX_UPLOAD_BYTES limit; the file is then ingested like any other and the folder deleted whatever happens
 * (formidable leaves the partial file behind after a 413: docs/design.md §8).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Koa from 'koa';
import { koaBody } from 'koa-body';
import type { LeaderConfig } from '../common/config.js';
import { AppError, storageErrorOf } from '../common/errors.js';
import { keepOpenAfterBody } from '../common/http.js';
import type { Ingestor } from './ingest.js';

/** The folder form uploads use; emptied at start (leftovers of a crash). */
export async function resetFormsDir(uploadDir: string): Promise<string> {
  const dir = join(uploadDir, 'forms');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/** formidable's errors carry the HTTP status they mean; a full or forbidden UPLOAD_DIR is said so. */
function formError(err: Error, maxUploadBytes: number, formsDir: string): AppError {
  const storage = storageErrorOf(err, { setting: 'UPLOAD_DIR', path: formsDir });
  if (storage !== undefined) return storage;
  if ((err as { httpCode?: number }).httpCode === 413) {
    return new AppError(
      'REQUEST_TOO_LARGE',
      `the form is larger than MAX_UPLOAD_BYTES (${maxUploadBytes} bytes) or holds more than one file: ${err.message}`,
    );
  }
  return new AppError('REQUEST_BAD', `the multipart form cannot be read: ${err.message}`);
}

/** `POST /promotions` for multipart forms (the token is checked before it). */
export function formUploadRoute(
  settings: Pick<LeaderConfig, 'maxUploadBytes'>,
  formsDir: string,
  ingestor: Ingestor,
): Koa.Middleware {
  return async (ctx) => {
    if (!ctx.is('multipart/form-data')) {
      throw new AppError(
        'REQUEST_BAD',
        'POST /promotions takes multipart/form-data with one file field; send a raw CSV body with PUT /promotions',
      );
    }
    keepOpenAfterBody(ctx.req, ctx.res);
    const dir = await mkdtemp(join(formsDir, 'form-'));
    try {
      const parse = koaBody({
        multipart: true,
        json: false,
        urlencoded: false,
        text: false,
        patchNode: false,
        formidable: {
          uploadDir: dir,
          maxFiles: 1,
          maxFileSize: settings.maxUploadBytes,
          maxTotalFileSize: settings.maxUploadBytes,
          maxFields: 10,
          maxFieldsSize: 64 * 1024,
          allowEmptyFiles: true,
          minFileSize: 0,
        },
        onError: (err) => {
          throw formError(err, settings.maxUploadBytes, formsDir);
        },
      });
      await parse(ctx, async () => undefined);
      const files = Object.values(ctx.request.files ?? {}).flat();
      if (files.length !== 1) {
        throw new AppError('REQUEST_BAD', `the form must hold exactly one file field, found ${files.length}`);
      }
      const fields = (ctx.request.body ?? {}) as Record<string, unknown>;
      const name = files[0].originalFilename;
      ctx.body = await ingestor.ingestFile(files[0].filepath, {
        force: fields.force === 'true' || ctx.query.force === 'true',
        source: `form upload${name ? ` (${name})` : ''}`,
      });
      ctx.status = 201;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
}
