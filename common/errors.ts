/**
 * Every error the service reports, with a stable code and the HTTP status it maps to.
 * Codes are prefixed by area and never reused for a new meaning; docs/errors.md lists them all
 * (a unit test checks both ways).
 */
export const ERROR_CODES = {
  REQUEST_BAD: 400,
  REQUEST_NOT_FOUND: 404,
  REQUEST_TOO_LARGE: 413,
  REQUEST_BAD_JSON: 400,
  REQUEST_BAD_ENCODING: 400,
  REQUEST_UNSUPPORTED_ENCODING: 415,
  REQUEST_METHOD_NOT_ALLOWED: 405,
  REQUEST_NOT_ACCEPTABLE: 406,
  REQUEST_PRECONDITION_FAILED: 412,
  REQUEST_UNSUPPORTED_TYPE: 415,
  AUTH_REQUIRED: 401,
  PROMOTION_BAD_ID: 400,
  PROMOTION_NOT_FOUND: 404,
  PROMOTION_WRONG_SHARD: 421,
  BATCH_TOO_MANY_IDS: 400,
  INGEST_BAD_ROWS: 422,
  INGEST_EMPTY: 422,
  INGEST_NOT_CSV: 422,
  INGEST_SHRINK: 422,
  INGEST_BUSY: 409,
  INGEST_WORKER_FAILED: 500,
  UPLOAD_NOT_FOUND: 404,
  UPLOAD_OFFSET_MISMATCH: 409,
  UPLOAD_LIMIT: 429,
  SNAPSHOT_NOT_FOUND: 404,
  SNAPSHOT_CORRUPT: 409,
  SNAPSHOT_BAD_MAGIC: 502,
  SNAPSHOT_BAD_VERSION: 502,
  SNAPSHOT_BAD_LAYOUT: 502,
  SNAPSHOT_TRUNCATED: 502,
  SNAPSHOT_CHECKSUM_MISMATCH: 502,
  SNAPSHOT_ID_MISMATCH: 502,
  REPLICA_NOT_READY: 503,
  REPLICA_OVERLOADED: 503,
  REPLICA_SYNC_FAILED: 502,
  STORAGE_FULL: 507,
  STORAGE_READ_ONLY: 507,
  STORAGE_DENIED: 507,
  INTERNAL: 500,
  /** Answered by the nginx router (k8s/router/nginx.conf), not by node: no replica of the id's shard answered. */
  ROUTER_SHARD_UNAVAILABLE: 502,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error the service expects and knows how to answer: a stable code, a message for people, an HTTP status. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra fields merged into the JSON error body (for example the bad rows of a rejected file). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
  }
}

/** A snapshot file that cannot be trusted: wrong magic, unknown version, bad offsets, checksum mismatch. */
export class SnapshotError extends AppError {
  constructor(
    code: Extract<ErrorCode, `SNAPSHOT_${string}`>,
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(code, message, details);
    this.name = 'SnapshotError';
  }
}

/** The JSON body of an error answer: `{"error": CODE, "message": ...}` plus details. */
export function errorBody(err: AppError): Record<string, unknown> {
  return { error: err.code, message: err.message, ...err.details };
}

/** A directory the service writes to, and the setting that names it (for messages an operator can act on). */
export interface StorageDir {
  readonly setting: string;
  readonly path: string;
}

/** errno codes of write failures an operator can fix, with their code and what to do. */
const STORAGE_ERRNOS: Record<string, { code: ErrorCode; what: string; fix: string }> = {
  ENOSPC: { code: 'STORAGE_FULL', what: 'no space left on the device', fix: 'free space or grow the volume' },
  EDQUOT: { code: 'STORAGE_FULL', what: 'the disk quota is used up', fix: 'free space or raise the quota' },
  EROFS: { code: 'STORAGE_READ_ONLY', what: 'the file system is read-only', fix: 'mount it read-write' },
  EACCES: { code: 'STORAGE_DENIED', what: 'permission denied', fix: "give the service's user write access" },
  EPERM: {
    code: 'STORAGE_DENIED',
    what: 'operation not permitted',
    fix: "give the service's user write access",
  },
};

/**
 * The named error for a file-system failure an operator can act on (a full disk, a read-only or forbidden
 * directory), saying which directory: `dir` when the caller knows what it was writing, else the directory of the
 * error's own path. Undefined for any other error.
 */
export function storageErrorOf(err: unknown, dir?: StorageDir): AppError | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  const known = typeof e?.code === 'string' ? STORAGE_ERRNOS[e.code] : undefined;
  if (known === undefined || err instanceof AppError) return undefined;
  const path = typeof e?.path === 'string' ? e.path : undefined;
  // The caller's directory, unless the error names a file elsewhere (a file being read, say).
  const inDir = dir !== undefined && (path === undefined || path.startsWith(dir.path));
  const where = inDir
    ? `${dir.setting} (${dir.path})`
    : path !== undefined
      ? `the directory of ${path}`
      : 'a directory of the service';
  return new AppError(
    known.code,
    `cannot write to ${where}: ${known.what} (${e?.code}); ${known.fix}, then send the file again. Nothing was changed: the live version stays`,
    { directory: inDir ? dir.path : (path ?? null), errno: e?.code },
  );
}
