/**
 * Building blocks of the two roles' OpenAPI 3.1 documents (leader/openapi.ts, replica/openapi.ts): the error body,
 * error answers that name the codes they may carry, the manifest, and the route that serves a document. Each
 * document lists every route its app serves; test/unit/common/openapi.test.ts validates both documents and checks
 * both ways that the routes served and the routes documented are the same, and that every error code is
 * documented with its status.
 *
 * Plain data and pure functions; safe to call from anywhere.
 */
import type Koa from 'koa';
import { ERROR_CODES, type ErrorCode } from './errors.js';

/** An OpenAPI object: plain JSON (typed loosely: the validator in the tests checks the shape). */
export type OpenApiObject = Record<string, unknown>;

export const OPENAPI_VERSION = '3.1.0';

/** The path every role serves its document on. */
export const OPENAPI_PATH = '/openapi.json';

/** The JSON error body every error answer has (common/errors.ts). */
export const ERROR_SCHEMA: OpenApiObject = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', enum: Object.keys(ERROR_CODES), description: 'stable error code' },
    message: { type: 'string', description: 'what went wrong and what to do, for people' },
  },
  additionalProperties: true,
};

/** A snapshot version as the leader publishes it (common/protocol.ts). */
export const MANIFEST_SCHEMA: OpenApiObject = {
  type: 'object',
  required: [
    'version',
    'snapshotId',
    'checksum',
    'rows',
    'duplicates',
    'badRows',
    'bytes',
    'sourceSha256',
    'createdAt',
  ],
  properties: {
    version: { type: 'integer', minimum: 1 },
    snapshotId: {
      type: 'string',
      pattern: '^[0-9a-f]+$',
      description: 'random id of the file, in its header',
    },
    checksum: {
      type: 'string',
      pattern: '^[0-9a-f]+$',
      description: 'SHA-256 covering every byte of the file',
    },
    rows: { type: 'integer', minimum: 0 },
    duplicates: { type: 'integer', minimum: 0 },
    badRows: { type: 'integer', minimum: 0 },
    bytes: { type: 'integer', minimum: 0, description: 'size of the snapshot file' },
    sourceSha256: { type: 'string', pattern: '^[0-9a-f]+$', description: 'SHA-256 of the source CSV' },
    createdAt: { type: 'string', format: 'date-time' },
  },
};

/**
 * An error answer carrying one of `codes` (all of the same status), described for people: the body is the error
 * schema with `error` narrowed to those codes. `headers` are extra response headers (Retry-After, Allow...).
 */
export function errorAnswer(
  description: string,
  codes: readonly ErrorCode[],
  headers?: Record<string, OpenApiObject>,
): OpenApiObject {
  const statuses = new Set(codes.map((c) => ERROR_CODES[c]));
  if (statuses.size !== 1) throw new Error(`codes of one answer must share a status: ${codes.join(', ')}`);
  return {
    description: `${description} (${codes.join(', ')})`,
    ...(headers === undefined ? {} : { headers }),
    content: {
      'application/json': {
        schema: {
          allOf: [{ $ref: '#/components/schemas/Error' }, { properties: { error: { enum: [...codes] } } }],
        },
      },
    },
  };
}

/** Responses keyed by status for error answers: `errors(['REQUEST_BAD'], ...)` → `{ '400': ... }`. */
export function errors(
  ...answers: [string, readonly ErrorCode[], Record<string, OpenApiObject>?][]
): OpenApiObject {
  const out: OpenApiObject = {};
  for (const [description, codes, headers] of answers) {
    out[String(ERROR_CODES[codes[0]])] = errorAnswer(description, codes, headers);
  }
  return out;
}

/** A JSON answer with `schema`. */
export function jsonAnswer(
  description: string,
  schema: OpenApiObject,
  headers?: Record<string, OpenApiObject>,
) {
  return {
    description,
    ...(headers === undefined ? {} : { headers }),
    content: { 'application/json': { schema } },
  };
}

/** A header object of type string. */
export function header(description: string, schema: OpenApiObject = { type: 'string' }): OpenApiObject {
  return { description, schema };
}

/** The routes both roles have: liveness, readiness, metrics, and the document itself. */
export function commonPaths(readiness: OpenApiObject): OpenApiObject {
  return {
    '/healthz': {
      get: {
        summary: 'Alive (never depends on data)',
        operationId: 'healthz',
        responses: {
          '200': jsonAnswer('alive', { type: 'object', properties: { status: { const: 'ok' } } }),
        },
      },
    },
    '/readyz': { get: readiness },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics, text format',
        operationId: 'metrics',
        responses: {
          '200': { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
    [OPENAPI_PATH]: {
      get: {
        summary: "This role's OpenAPI document",
        operationId: 'openapi',
        responses: { '200': jsonAnswer('the document', { type: 'object' }) },
      },
    },
  };
}

/** Koa middleware answering the document (the same object every time: it is built once, at start). */
export function openApiRoute(doc: OpenApiObject): Koa.Middleware {
  const body = JSON.stringify(doc);
  return (ctx) => {
    ctx.type = 'application/json';
    ctx.body = body;
  };
}

/**
 * A role's document: the OpenAPI version, its `info`, its own `paths` followed by the routes both roles have
 * (commonPaths, with its `readiness` operation), and its `components` with the schemas both roles name (Error,
 * Manifest) before its own.
 */
export function roleDoc(
  readiness: OpenApiObject,
  doc: { info: OpenApiObject; paths: OpenApiObject; components: { schemas: OpenApiObject } & OpenApiObject },
): OpenApiObject {
  const { schemas, ...components } = doc.components;
  return {
    openapi: OPENAPI_VERSION,
    info: doc.info,
    paths: { ...doc.paths, ...commonPaths(readiness) },
    components: { schemas: { Error: ERROR_SCHEMA, Manifest: MANIFEST_SCHEMA, ...schemas }, ...components },
  };
}
