/**
 * The replica's OpenAPI 3.1 document, served at GET /openapi.json and written to docs/openapi/replica.json by
 * scripts/openapi.ts. Every route the replica serves (the fast path's, read-handler.ts's and the Koa app's) is
 * here; test/unit/common/openapi.test.ts checks that both ways.
 */
import { errorAnswer, errors, header, jsonAnswer, type OpenApiObject, roleDoc } from '../common/openapi.js';

const VERSION_HEADER = header('the snapshot version that produced the answer', {
  type: 'string',
  pattern: '^\\d+$',
});
const ETAG = header(
  'strong entity tag of the answer bytes: the same across versions and replicas while the answer is the same',
);
const CACHE_CONTROL = header('`max-age=N` when READ_MAX_AGE_S is set; absent otherwise');
const REQUEST_ID = header('the X-Request-Id of the request, echoed');
const RETRY_AFTER = header('seconds to wait before retrying', { type: 'integer' });
const ALLOW = header('the methods the path answers');

/** An optional request header, a string. */
function headerParam(name: string, description: string) {
  return { name, in: 'header', required: false, description, schema: { type: 'string' } };
}

const REQUEST_ID_PARAM = headerParam('X-Request-Id', 'a request id (at most 128 characters) to echo and log');
const IF_NONE_MATCH = headerParam(
  'If-None-Match',
  'entity tags (strong or `W/` weak, comma-separated) or `*`, compared the weak way (RFC 9110 §13.1.2): a match answers 304',
);
const ACCEPT = headerParam(
  'Accept',
  'application/json (default) or application/msgpack / application/vnd.msgpack, with q-values',
);

const OVERLOAD = errorAnswer(
  'no version loaded yet, or over the in-flight and queue limits',
  ['REPLICA_NOT_READY', 'REPLICA_OVERLOADED'],
  { 'Retry-After': RETRY_AFTER },
);
const INTERNAL = errorAnswer('the snapshot could not be read', ['INTERNAL']);
const NOT_ALLOWED_NOTE =
  'Other methods on this path answer 405 REQUEST_METHOD_NOT_ALLOWED with `Allow` (components/responses/MethodNotAllowed).';

const PROMOTION: OpenApiObject = {
  type: 'object',
  required: ['id', 'price', 'expiration_date'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    price: { type: 'number', description: 'every digit the partner gave (e.g. 60.683466 or 17.481390)' },
    expiration_date: {
      type: 'string',
      pattern: '^\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}$',
      description: "the file's own clock time, offset and zone dropped",
    },
  },
};

const BATCH_ANSWER = (price: OpenApiObject): OpenApiObject => ({
  type: 'object',
  required: ['promotions', 'notFound', 'invalid'],
  properties: {
    promotions: {
      type: 'array',
      description: 'promotions found, in the order first asked for (an id asked twice is answered once)',
      items: { ...PROMOTION, properties: { ...(PROMOTION.properties as OpenApiObject), price } },
    },
    notFound: {
      type: 'array',
      items: { type: 'string' },
      description: 'ids the served version does not have',
    },
    invalid: {
      type: 'array',
      description: 'ids no promotion can have, with the reason',
      items: {
        type: 'object',
        required: ['id', 'reason'],
        properties: { id: { type: 'string' }, reason: { type: 'string' } },
      },
    },
  },
});

const BATCH_OK = {
  description: 'the batch answer',
  headers: {
    ETag: ETAG,
    Vary: header('`accept`'),
    'X-Snapshot-Version': VERSION_HEADER,
    'X-Request-Id': REQUEST_ID,
  },
  content: {
    'application/json': {
      schema: BATCH_ANSWER({ type: 'number', description: 'every digit the partner gave' }),
    },
    'application/msgpack': {
      schema: BATCH_ANSWER({
        type: 'string',
        description: "the price as its JSON number's text: exact digits",
      }),
    },
    'application/vnd.msgpack': {
      schema: BATCH_ANSWER({
        type: 'string',
        description: "the price as its JSON number's text: exact digits",
      }),
    },
  },
};

const BATCH_ERRORS = errors(
  [
    'ids missing, an unknown query parameter or body field, a body that is not JSON or not {"ids": [strings]}, or more than MAX_BATCH_IDS ids',
    ['REQUEST_BAD', 'REQUEST_BAD_JSON', 'BATCH_TOO_MANY_IDS'],
  ],
  ['Accept allows neither JSON nor MessagePack', ['REQUEST_NOT_ACCEPTABLE']],
  [
    'an id belongs to another shard than the one this replica serves: split the batch by shard',
    ['PROMOTION_WRONG_SHARD'],
  ],
);

function singleRead(method: 'get' | 'head'): OpenApiObject {
  return {
    summary: method === 'get' ? 'One promotion' : "One promotion's headers, no body",
    operationId: method === 'get' ? 'getPromotion' : 'headPromotion',
    parameters: [
      {
        name: 'id',
        in: 'path',
        required: true,
        description: 'the id, percent-encoded; matched exactly (case-sensitive)',
        schema: { type: 'string', minLength: 1, maxLength: 128 },
      },
      IF_NONE_MATCH,
      REQUEST_ID_PARAM,
    ],
    responses: {
      '200': jsonAnswer(method === 'get' ? 'the promotion' : 'the GET answer without its body', PROMOTION, {
        ETag: ETAG,
        'Cache-Control': CACHE_CONTROL,
        'X-Snapshot-Version': VERSION_HEADER,
        'X-Request-Id': REQUEST_ID,
      }),
      '304': {
        description: "If-None-Match matched: the client's copy is current",
        headers: { ETag: ETAG, 'Cache-Control': CACHE_CONTROL, 'X-Snapshot-Version': VERSION_HEADER },
      },
      ...errors(
        [
          'no promotion can have this id (empty, too long, a comma, not printable ASCII, bad percent-encoding)',
          ['PROMOTION_BAD_ID'],
        ],
        ['no promotion with this id in the served version', ['PROMOTION_NOT_FOUND']],
        [
          'the id belongs to another shard than the one this replica serves (SHARD=k/S)',
          ['PROMOTION_WRONG_SHARD'],
        ],
      ),
      '500': INTERNAL,
      '503': OVERLOAD,
    },
  };
}

function batchByQuery(method: 'get' | 'head'): OpenApiObject {
  return {
    summary: method === 'get' ? 'Batch lookup by query' : "Batch lookup's headers, no body",
    description: 'The URL is limited by MAX_HEADER_BYTES; larger batches use POST /promotions:batchGet.',
    operationId: method === 'get' ? 'batchGetPromotions' : 'headBatchGetPromotions',
    parameters: [
      {
        name: 'id',
        in: 'query',
        required: true,
        description: 'an id to look up, form-encoded (`+` is a space); repeat for each, up to MAX_BATCH_IDS',
        schema: { type: 'array', items: { type: 'string' } },
        style: 'form',
        explode: true,
      },
      ACCEPT,
      IF_NONE_MATCH,
      REQUEST_ID_PARAM,
    ],
    responses: {
      '200': {
        ...BATCH_OK,
        headers: { ...BATCH_OK.headers, 'Cache-Control': CACHE_CONTROL },
      },
      '304': {
        description: 'If-None-Match matched',
        headers: { ETag: ETAG, Vary: header('`accept`'), 'X-Snapshot-Version': VERSION_HEADER },
      },
      ...BATCH_ERRORS,
      '500': INTERNAL,
      '503': OVERLOAD,
    },
  };
}

const WRONG_WAY = (method: string) => ({
  summary: `Not here: ${method} /promotions is the leader's`,
  operationId: `${method.toLowerCase()}PromotionsOnReplica`,
  responses: errors([
    `a replica only serves reads: ${method} /promotions goes to the leader`,
    ['REQUEST_NOT_FOUND'],
  ]),
});

/** GET /readyz of the replica. */
const REPLICA_READINESS: OpenApiObject = {
  summary: 'Ready: a verified version is loaded',
  operationId: 'readyz',
  responses: {
    '200': jsonAnswer('serving', {
      type: 'object',
      properties: {
        status: { const: 'ready' },
        version: { type: 'integer' },
        rows: { type: 'integer' },
        mode: { enum: ['memory', 'disk'] },
        loadedAt: { type: 'string', format: 'date-time' },
        sync: { type: 'object' },
        behind: {
          type: 'boolean',
          description: 'serving an older version because loading the wanted one failed',
        },
        wantedVersion: { type: ['integer', 'null'] },
      },
    }),
    '503': errorAnswer('no version loaded yet, or shutting down', ['REPLICA_NOT_READY']),
  },
};

/** The replica's OpenAPI 3.1 document. */
export const REPLICA_OPENAPI: OpenApiObject = roleDoc(REPLICA_READINESS, {
  info: {
    title: 'Promotions replica',
    version: '1',
    description:
      "Serves promotions by id from the verified snapshot version it holds. Single reads are answered by a strict HTTP/1.1 fast path; everything else by node:http. A sharded replica answers only its own shard's ids; a batch spanning shards is for the client or proxy to split.",
  },
  paths: {
    '/promotions/{id}': { description: NOT_ALLOWED_NOTE, get: singleRead('get'), head: singleRead('head') },
    '/promotions': {
      description: NOT_ALLOWED_NOTE,
      get: batchByQuery('get'),
      head: batchByQuery('head'),
      put: WRONG_WAY('PUT'),
      post: WRONG_WAY('POST'),
    },
    '/promotions:batchGet': {
      description: NOT_ALLOWED_NOTE,
      post: {
        summary: 'Batch lookup by body, for batches the URL cannot hold',
        operationId: 'batchGetPromotionsByBody',
        parameters: [ACCEPT, IF_NONE_MATCH, REQUEST_ID_PARAM],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['ids'],
                additionalProperties: false,
                properties: { ids: { type: 'array', minItems: 1, items: { type: 'string' } } },
              },
            },
          },
        },
        responses: {
          '200': BATCH_OK,
          ...BATCH_ERRORS,
          ...errors(
            [
              'If-None-Match matched (RFC 9110 §13.1.2: 304 is for GET and HEAD)',
              ['REQUEST_PRECONDITION_FAILED'],
            ],
            ['the body is larger than MAX_BATCH_IDS ids can need', ['REQUEST_TOO_LARGE']],
            [
              'the body is not application/json, or is compressed',
              ['REQUEST_UNSUPPORTED_TYPE', 'REQUEST_UNSUPPORTED_ENCODING'],
            ],
          ),
          '500': INTERNAL,
          '503': OVERLOAD,
        },
      },
    },
    '/internal/snapshots': {
      post: {
        summary: "The leader's notice of a new current version: pull, verify, load, swap, then answer",
        operationId: 'notice',
        security: [{ replicaToken: [] }],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Manifest' } } },
        },
        responses: {
          '200': jsonAnswer('the version now served', {
            type: 'object',
            properties: { version: { type: ['integer', 'null'] }, checksum: { type: ['string', 'null'] } },
          }),
          ...errors(
            [
              'the body is not a manifest, not JSON, or does not decode as its Content-Encoding says',
              ['REQUEST_BAD', 'REQUEST_BAD_JSON', 'REQUEST_BAD_ENCODING'],
            ],
            ['the body is over 16 KiB', ['REQUEST_TOO_LARGE']],
            ['a Content-Encoding or charset this route does not read', ['REQUEST_UNSUPPORTED_ENCODING']],
            [
              'no token, or a token not accepted',
              ['AUTH_REQUIRED'],
              {
                'WWW-Authenticate': header('`Bearer`, or `Bearer error="invalid_token"` for a refused token'),
              },
            ],
            [
              'the version could not be pulled or verified; the replica keeps serving its version',
              [
                'SNAPSHOT_BAD_MAGIC',
                'SNAPSHOT_BAD_VERSION',
                'SNAPSHOT_BAD_LAYOUT',
                'SNAPSHOT_TRUNCATED',
                'SNAPSHOT_CHECKSUM_MISMATCH',
                'SNAPSHOT_ID_MISMATCH',
                'REPLICA_SYNC_FAILED',
              ],
            ],
          ),
          '500': errorAnswer('unexpected; logged with the request id', ['INTERNAL']),
        },
      },
    },
  },
  components: {
    schemas: { Promotion: PROMOTION },
    responses: {
      MethodNotAllowed: errorAnswer('a method this path does not answer', ['REQUEST_METHOD_NOT_ALLOWED'], {
        Allow: ALLOW,
      }),
    },
    securitySchemes: {
      replicaToken: { type: 'http', scheme: 'bearer', description: 'REPLICA_TOKEN' },
    },
  },
});
