/**
 * The leader's OpenAPI 3.1 document, served at GET /openapi.json and written to docs/openapi/leader.json by
 * scripts/openapi.ts. Every route of leader/app.ts is here; test/unit/common/openapi.test.ts checks that both ways.
 */
import { errorAnswer, errors, header, jsonAnswer, type OpenApiObject, roleDoc } from '../common/openapi.js';

const BAD_ROW = {
  type: 'object',
  required: ['line', 'column', 'value', 'reason'],
  properties: {
    line: { type: 'integer', minimum: 1 },
    column: { enum: ['row', 'id', 'price', 'expiration_date'] },
    value: { type: 'string', description: 'the offending value, cut to 80 characters' },
    reason: { type: 'string' },
  },
};

const INGEST_REPORT = {
  type: 'object',
  properties: {
    version: { type: 'integer' },
    snapshotId: { type: 'string' },
    checksum: { type: 'string' },
    rows: { type: 'integer' },
    duplicates: { type: 'integer' },
    badRowCount: { type: 'integer' },
    badRows: { type: 'array', items: { $ref: '#/components/schemas/BadRow' } },
    sourceBytes: { type: 'integer' },
    sourceSha256: { type: 'string' },
    durationMs: { type: 'number' },
    rowsPerSecond: { type: 'number' },
  },
};

const AUTH = errors([
  'no token, or a token not accepted',
  ['AUTH_REQUIRED'],
  { 'WWW-Authenticate': header('`Bearer`, or `Bearer error="invalid_token"` for a refused token') },
]);

const VERSION_PARAM = {
  name: 'version',
  in: 'path',
  required: true,
  description: 'a version number',
  schema: { type: 'integer', minimum: 0 },
};

/** The answers of an ingest that did not make the file current (every way a file comes in over HTTP). */
const INGEST_REFUSALS: OpenApiObject = errors(
  ['a malformed request (form without exactly one file, bad query)', ['REQUEST_BAD']],
  ['another ingest is running, or too many files wait', ['INGEST_BUSY']],
  ['the file is larger than MAX_UPLOAD_BYTES', ['REQUEST_TOO_LARGE']],
  [
    'the file is refused; the live version stays (bad rows are listed with line, column, value and reason)',
    ['INGEST_BAD_ROWS', 'INGEST_EMPTY', 'INGEST_NOT_CSV', 'INGEST_SHRINK'],
  ],
  [
    'a parse worker died (crash, out of memory) or something unexpected happened; the live version stays',
    ['INGEST_WORKER_FAILED', 'INTERNAL'],
  ],
  [
    'the leader could not write its files (disk full or over quota, read-only, permission denied); nothing changed',
    ['STORAGE_FULL', 'STORAGE_READ_ONLY', 'STORAGE_DENIED'],
  ],
);

const INGEST_ANSWERS: OpenApiObject = {
  '201': jsonAnswer('the file is the current version now', { $ref: '#/components/schemas/IngestReport' }),
  ...INGEST_REFUSALS,
  ...AUTH,
};

const FORCE_PARAM = {
  name: 'force',
  in: 'query',
  required: false,
  description: '`true` replaces the data set even with under MIN_ROWS_RATIO of the current rows',
  schema: { enum: ['true', '1', 'false'] },
};

const TUS_HEADERS = {
  'Tus-Resumable': header('`1.0.0`'),
  'Upload-Offset': header('bytes received so far', { type: 'integer' }),
  'Upload-Expires': header('when an idle upload is deleted (UPLOAD_IDLE_EXPIRY_MS)'),
};

function tus(summary: string, operationId: string, responses: OpenApiObject, withId = true): OpenApiObject {
  return {
    summary,
    operationId,
    description:
      'tus 1.0 resumable upload protocol (core, creation, creation-with-upload, creation-defer-length, termination, expiration): see https://tus.io/protocols/resumable-upload',
    security: [{ leaderToken: [] }],
    parameters: [
      ...(withId ? [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }] : []),
      { name: 'Tus-Resumable', in: 'header', required: true, schema: { const: '1.0.0' } },
    ],
    responses: { ...responses, ...AUTH },
  };
}

const UPLOAD_GONE = errors(['no such upload (finished, deleted or expired)', ['UPLOAD_NOT_FOUND']]);

const SNAPSHOT_MISSING = errors(
  ['not a version number', ['REQUEST_BAD']],
  ['no such version is kept', ['SNAPSHOT_NOT_FOUND']],
);

/** The internal reads (kept versions, replicas, files): the replica token or the leader token. */
const READ_SECURITY = [{ replicaToken: [] }, { leaderToken: [] }];

const VERIFICATION = {
  type: 'object',
  description: "the last verification of the version's file",
  properties: {
    state: { enum: ['unchecked', 'ok', 'corrupt'] },
    checkedAt: { type: ['string', 'null'], format: 'date-time' },
    error: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
};

/** The leader's /readyz body in state `status`. */
function readiness(status: 'ready' | 'draining'): OpenApiObject {
  return {
    type: 'object',
    properties: {
      status: { const: status },
      version: { type: ['integer', 'null'] },
      verification: { enum: ['unchecked', 'ok', 'corrupt', null] },
    },
  };
}

/** GET /readyz of the leader. */
const LEADER_READINESS: OpenApiObject = {
  summary: 'Ready (503 while shutting down)',
  operationId: 'readyz',
  responses: {
    '200': jsonAnswer('ready', readiness('ready')),
    '503': jsonAnswer('shutting down', readiness('draining')),
  },
};

/** The leader's OpenAPI 3.1 document. */
export const LEADER_OPENAPI: OpenApiObject = roleDoc(LEADER_READINESS, {
  info: {
    title: 'Promotions leader',
    version: '1',
    description:
      'Ingests partner CSVs (id,price,expiration_date) into immutable snapshot versions, keeps the last KEEP_VERSIONS for rollback, and tells replicas. Writes need Authorization: Bearer LEADER_TOKEN.',
  },
  paths: {
    '/promotions': {
      put: {
        summary: 'Ingest a complete file (streamed CSV)',
        operationId: 'ingest',
        security: [{ leaderToken: [] }],
        parameters: [FORCE_PARAM],
        requestBody: { required: true, content: { 'text/csv': { schema: { type: 'string' } } } },
        responses: INGEST_ANSWERS,
      },
      post: {
        summary: 'Ingest a file from a browser form (multipart, one file field, optional force=true)',
        operationId: 'ingestForm',
        security: [{ leaderToken: [] }],
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                properties: {
                  file: { type: 'string', contentMediaType: 'text/csv' },
                  force: { type: 'string' },
                },
              },
            },
          },
        },
        responses: INGEST_ANSWERS,
      },
    },
    '/uploads': {
      options: {
        summary: 'tus capabilities (no token)',
        operationId: 'uploadsOptions',
        responses: {
          '204': {
            description: 'capabilities',
            headers: { 'Tus-Version': header('`1.0.0`'), 'Tus-Extension': header('supported extensions') },
          },
        },
      },
      post: tus(
        'Create a resumable upload (Upload-Length or Upload-Defer-Length; optional Upload-Metadata filename and force)',
        'createUpload',
        {
          '201': {
            description:
              'created; Location is the upload. With the whole file in the request (creation-with-upload) the file was ingested too, and the body is the ingest report',
            headers: { Location: header('/uploads/{id}'), ...TUS_HEADERS },
            content: { 'application/json': { schema: { $ref: '#/components/schemas/IngestReport' } } },
          },
          ...INGEST_REFUSALS,
          ...errors(['MAX_UPLOADS uploads exist already', ['UPLOAD_LIMIT']]),
        },
        false,
      ),
    },
    '/uploads/{id}': {
      options: {
        summary: 'tus capabilities (no token)',
        operationId: 'uploadOptions',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { '204': { description: 'capabilities' } },
      },
      head: tus('How much of the upload arrived', 'uploadOffset', {
        '200': {
          description: 'the offset to resume from',
          headers: { ...TUS_HEADERS, 'Upload-Length': header('total bytes', { type: 'integer' }) },
        },
        ...UPLOAD_GONE,
      }),
      patch: tus(
        'Send bytes at Upload-Offset; the PATCH that completes the file waits for its ingest',
        'uploadBytes',
        {
          '204': { description: 'bytes taken', headers: TUS_HEADERS },
          '200': jsonAnswer('the file is complete and was ingested', {
            $ref: '#/components/schemas/IngestReport',
          }),
          ...INGEST_REFUSALS,
          ...errors(["Upload-Offset is not the upload's offset; ask with HEAD", ['UPLOAD_OFFSET_MISMATCH']]),
          ...UPLOAD_GONE,
        },
      ),
      delete: tus('Delete an upload (termination)', 'deleteUpload', {
        '204': { description: 'deleted' },
        ...UPLOAD_GONE,
      }),
    },
    '/snapshots': {
      get: {
        summary: 'Kept versions, newest first (replica or leader token)',
        operationId: 'listSnapshots',
        security: READ_SECURITY,
        responses: {
          ...AUTH,
          '200': jsonAnswer('versions', {
            type: 'object',
            properties: {
              current: { type: ['integer', 'null'] },
              versions: { type: 'array', items: { $ref: '#/components/schemas/KeptVersion' } },
            },
          }),
        },
      },
    },
    '/snapshots/current': {
      get: {
        summary: "The current version's manifest (replicas poll it)",
        operationId: 'currentSnapshot',
        parameters: [
          {
            name: 'X-Replica-Url',
            in: 'header',
            required: false,
            description: "a polling replica's address (with the replica token, it registers)",
            schema: { type: 'string' },
          },
          {
            name: 'X-Replica-Version',
            in: 'header',
            required: false,
            description: 'the version the polling replica serves',
            schema: { type: 'integer' },
          },
        ],
        responses: {
          '200': jsonAnswer('the manifest', { $ref: '#/components/schemas/Manifest' }),
          ...errors(['no version was ingested yet', ['SNAPSHOT_NOT_FOUND']]),
        },
      },
    },
    '/snapshots/{version}': {
      get: {
        summary: "One kept version's manifest (replica or leader token)",
        operationId: 'getSnapshot',
        security: READ_SECURITY,
        parameters: [VERSION_PARAM],
        responses: {
          ...AUTH,
          '200': jsonAnswer('the manifest', { $ref: '#/components/schemas/KeptVersion' }),
          ...SNAPSHOT_MISSING,
        },
      },
    },
    '/snapshots/{version}/file': {
      get: {
        summary: 'The snapshot file, for replicas to pull (REPLICA_TOKEN or LEADER_TOKEN)',
        operationId: 'getSnapshotFile',
        security: READ_SECURITY,
        parameters: [
          VERSION_PARAM,
          {
            name: 'Range',
            in: 'header',
            required: false,
            description: '`bytes=a-b`, `bytes=a-` or `bytes=-n`',
            schema: { type: 'string' },
          },
        ],
        responses: {
          '200': {
            description: 'the whole file',
            headers: { ETag: header('the checksum, quoted'), 'Accept-Ranges': header('`bytes`') },
            content: {
              'application/octet-stream': { schema: { type: 'string', contentEncoding: 'binary' } },
            },
          },
          '206': {
            description: 'the range asked for',
            headers: { 'Content-Range': header('`bytes a-b/size`'), ETag: header('the checksum, quoted') },
            content: {
              'application/octet-stream': { schema: { type: 'string', contentEncoding: 'binary' } },
            },
          },
          '416': {
            ...errorAnswer('the range is outside the file', ['REQUEST_BAD']),
            headers: { 'Content-Range': header('`bytes */size`') },
          },
          ...SNAPSHOT_MISSING,
          ...errors(["the version's file failed its verification: it is not sent", ['SNAPSHOT_CORRUPT']]),
          ...AUTH,
        },
      },
    },
    '/snapshots/{version}/activate': {
      post: {
        summary: 'Make a kept version current (rollback or forward); replicas follow',
        operationId: 'activateSnapshot',
        security: [{ leaderToken: [] }],
        parameters: [VERSION_PARAM],
        responses: {
          '200': jsonAnswer('the version is current', { $ref: '#/components/schemas/KeptVersion' }),
          ...SNAPSHOT_MISSING,
          ...errors([
            'an ingest is running (activate when it ends), or the version failed its verification',
            ['INGEST_BUSY', 'SNAPSHOT_CORRUPT'],
          ]),
          ...AUTH,
        },
      },
    },
    '/replicas': {
      get: {
        summary:
          'Each known replica: address, version served, last contact, lag, notice state (replica or leader token)',
        operationId: 'listReplicas',
        security: READ_SECURITY,
        responses: {
          ...AUTH,
          '200': jsonAnswer('replicas', {
            type: 'object',
            properties: {
              current: { type: ['integer', 'null'] },
              replicas: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    url: { type: 'string' },
                    source: { enum: ['config', 'dns', 'registered'] },
                    version: { type: ['integer', 'null'] },
                    lastContact: { type: ['string', 'null'], format: 'date-time' },
                    stale: { type: 'boolean', description: 'not heard from for 3 of its sync intervals' },
                    lastError: { type: ['string', 'null'] },
                    wantedVersion: {
                      type: ['integer', 'null'],
                      description: 'the version it was told to serve',
                    },
                    behind: {
                      type: 'boolean',
                      description: 'it serves another version because loading that one failed',
                    },
                    lag: { type: ['integer', 'null'] },
                    notice: {
                      type: ['object', 'null'],
                      properties: {
                        version: { type: 'integer' },
                        state: { enum: ['sending', 'waiting', 'done', 'failed', 'superseded'] },
                        attempts: { type: 'integer' },
                        nextAttemptAt: { type: ['string', 'null'], format: 'date-time' },
                      },
                    },
                  },
                },
              },
            },
          }),
        },
      },
    },
  },
  components: {
    schemas: {
      KeptVersion: {
        allOf: [
          { $ref: '#/components/schemas/Manifest' },
          { properties: { current: { type: 'boolean' }, verification: VERIFICATION } },
        ],
      },
      BadRow: BAD_ROW,
      IngestReport: INGEST_REPORT,
    },
    responses: {
      NoRoute: errorAnswer('no such route', ['REQUEST_NOT_FOUND']),
    },
    securitySchemes: {
      leaderToken: { type: 'http', scheme: 'bearer', description: 'LEADER_TOKEN' },
      replicaToken: { type: 'http', scheme: 'bearer', description: 'REPLICA_TOKEN' },
    },
  },
});
