/**
 * Every error the service reports, with a stable code and the HTTP status it maps to.
 * Codes are prefixed by area and never reused for a new meaning; docs/errors.md lists them all
 * (a unit test checks both ways).
 */
export const ERROR_CODES = {
  REQUEST_BAD: 400,
  REQUEST_NOT_FOUND: 404,
  REQUEST_TOO_LARGE: 413,
  AUTH_REQUIRED: 401,
  PROMOTION_BAD_ID: 400,
  PROMOTION_NOT_FOUND: 404,
  PROMOTION_WRONG_SHARD: 421,
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
