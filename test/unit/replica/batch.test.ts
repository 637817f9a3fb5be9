import { expect } from 'chai';
import { unpack } from 'msgpackr';
import { idsFromQuery, negotiateBatchFormat } from '../../../replica/batch.js';
import { bodyTag } from '../../../replica/etag.js';
import { capturingLogger, cleanup, http } from '../../helpers.js';
import { bodyOf, memorySnapshot, readServer } from './fakes.js';

const IDS = ['a', 'b', 'c', 'with space', 'plus+sign', 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118'];

/** Present, absent, duplicate and malformed ids, mixed. */
const ASKED = ['b', 'absent', 'a', 'b', 'a,b', '', 'with space', 'absent', 'plus+sign', 'x'.repeat(129)];
const EXPECTED = {
  promotions: ['b', 'a', 'with space', 'plus+sign'].map((id) => JSON.parse(bodyOf(id))),
  notFound: ['absent'],
  invalid: [
    { id: 'a,b', reason: 'id has a comma at position 2' },
    { id: '', reason: 'id is empty' },
    { id: 'x'.repeat(129), reason: 'id is 129 characters long, at most 128 are allowed' },
  ],
};

function query(ids: readonly string[]): string {
  return new URLSearchParams(ids.map((id) => ['id', id])).toString();
}

function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return http(`${url}/promotions:batchGet`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function bytes(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

describe('replica/batch: parsing and negotiation', () => {
  it('reads ids from a form-encoded query, and refuses other parameters or none', () => {
    expect(idsFromQuery('id=a&id=with+space&id=plus%2Bsign&id=%E0%A4%A&&id=a', 10)).to.deep.equal({
      asked: 5,
      valid: ['a', 'with space', 'plus+sign'],
      invalid: [{ id: '%E0%A4%A', reason: 'the id is not valid percent-encoding' }],
    });
    const unknown = idsFromQuery('id=a&ids=b', 10);
    expect(unknown).to.have.property('code', 'REQUEST_BAD');
    expect((unknown as Error).message).to.equal(
      'unknown query parameter "ids": ask for promotions as ?id=A&id=B',
    );
    expect(idsFromQuery('', 10)).to.have.property('code', 'REQUEST_BAD');
    expect(idsFromQuery('id=a&id=b&id=c', 2)).to.have.property('code', 'BATCH_TOO_MANY_IDS');
  });

  it('picks JSON or MessagePack by Accept (RFC 9110 §12.5.1), JSON when nothing is said', () => {
    const cases: [string | undefined, string | undefined][] = [
      [undefined, 'json'],
      ['', 'json'],
      ['*/*', 'json'],
      ['application/*', 'json'],
      ['application/json', 'json'],
      ['application/msgpack', 'msgpack'],
      ['application/x-msgpack', 'msgpack'],
      ['application/vnd.msgpack', 'vnd.msgpack'],
      ['application/json;q=0.5, application/msgpack', 'msgpack'],
      ['application/msgpack;q=0.2, */*;q=0.9', 'json'],
      ['APPLICATION/MSGPACK', 'msgpack'],
      ['application/json;q=0, */*', 'msgpack'],
      ['text/html', undefined],
      ['application/json;q=0', undefined],
    ];
    for (const [accept, format] of cases)
      expect(negotiateBatchFormat(accept), String(accept)).to.equal(format);
  });
});

for (const transport of ['fast', 'node'] as const) {
  describe(`replica/batch: batch lookups (${transport} transport)`, () => {
    afterEach(cleanup);

    it('answers present, absent, duplicate and malformed ids in request order, by GET and by POST, in JSON', async () => {
      const { server } = await readServer(memorySnapshot(IDS), { transport });
      const got = await http(`${server.url}/promotions?${query(ASKED)}`);
      expect(got.status).to.equal(200);
      expect(got.headers.get('content-type')).to.equal('application/json');
      expect(got.headers.get('x-snapshot-version')).to.equal('7');
      expect(got.headers.get('vary')).to.equal('accept');
      expect(got.json).to.deep.equal(EXPECTED);
      // The promotions are the single reads' bodies, byte for byte.
      expect(got.text).to.equal(
        `{"promotions":[${['b', 'a', 'with space', 'plus+sign'].map(bodyOf).join(',')}],"notFound":["absent"],"invalid":${JSON.stringify(EXPECTED.invalid)}}`,
      );
      expect(got.headers.get('etag')).to.equal(bodyTag(got.text));
      const posted = await post(server.url, { ids: ASKED });
      expect(posted.status).to.equal(200);
      expect(posted.text).to.equal(got.text);
      expect(posted.headers.get('etag')).to.equal(got.headers.get('etag'));
      // Nothing found is still an answer.
      expect((await post(server.url, { ids: ['nope'] })).json).to.deep.equal({
        promotions: [],
        notFound: ['nope'],
        invalid: [],
      });
    });

    it('answers the same values in MessagePack, the price as its exact JSON number text', async () => {
      const { server } = await readServer(memorySnapshot(IDS), { transport });
      for (const accept of ['application/msgpack', 'application/vnd.msgpack']) {
        const got = await bytes(`${server.url}/promotions?${query(ASKED)}`, { headers: { accept } });
        expect(got.status).to.equal(200);
        expect(got.headers.get('content-type')).to.equal(accept);
        expect(got.headers.get('etag')).to.equal(bodyTag(got.body.toString('latin1')));
        const decoded = unpack(got.body);
        expect(decoded).to.deep.equal({
          ...EXPECTED,
          promotions: EXPECTED.promotions.map((p) => ({ ...p, price: '1.5' })),
        });
        const posted = await bytes(`${server.url}/promotions:batchGet`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept },
          body: JSON.stringify({ ids: ASKED }),
        });
        expect(posted.body.equals(got.body)).to.equal(true);
        const json = await http(`${server.url}/promotions?${query(ASKED)}`);
        expect(got.body.length).to.be.lessThan(Buffer.byteLength(json.text));
        expect(got.headers.get('etag')).to.not.equal(json.headers.get('etag'));
      }
      const refused = await http(`${server.url}/promotions?id=a`, { headers: { accept: 'text/html' } });
      expect(refused.status).to.equal(406);
      expect(refused.json.error).to.equal('REQUEST_NOT_ACCEPTABLE');
    });

    it('refuses more than MAX_BATCH_IDS ids, and malformed bodies, naming the problem', async () => {
      const { server } = await readServer(memorySnapshot(IDS), { transport, maxBatchIds: 3 });
      const tooMany = await http(`${server.url}/promotions?${query(['a', 'b', 'c', 'd'])}`);
      expect(tooMany.status).to.equal(400);
      expect(tooMany.json.error).to.equal('BATCH_TOO_MANY_IDS');
      const tooManyPosted = await post(server.url, { ids: ['a', 'b', 'c', 'd'] });
      expect(tooManyPosted.status).to.equal(400);
      expect(tooManyPosted.json).to.deep.equal({
        error: 'BATCH_TOO_MANY_IDS',
        message:
          'a batch may ask for at most 3 ids (MAX_BATCH_IDS), this one asks for 4; split it into several',
      });
      expect((await post(server.url, { ids: ['a', 'b', 'c'] })).status).to.equal(200);
      const cases: [unknown, number, string, string][] = [
        ['{"ids": [', 400, 'REQUEST_BAD_JSON', 'the body is not JSON'],
        [[1], 400, 'REQUEST_BAD', 'the body must be a JSON object'],
        [{ id: ['a'] }, 400, 'REQUEST_BAD', 'unknown field "id"'],
        [{}, 400, 'REQUEST_BAD', 'the body needs "ids"'],
        [{ ids: [] }, 400, 'REQUEST_BAD', '"ids" is empty'],
        [{ ids: ['a', 7] }, 400, 'REQUEST_BAD', 'ids[1] is 7, expected a string'],
        [`{"ids":["${'a'.repeat(5000)}"]}`, 413, 'REQUEST_TOO_LARGE', 'a batch body may have at most'],
      ];
      for (const [body, status, code, message] of cases) {
        const res = await post(server.url, body);
        expect(res.status, JSON.stringify(body).slice(0, 40)).to.equal(status);
        expect(res.json.error).to.equal(code);
        expect(res.json.message).to.contain(message);
      }
      const gzipped = await post(server.url, { ids: ['a'] }, { 'content-encoding': 'gzip' });
      expect(gzipped.status).to.equal(415);
      expect(gzipped.json.error).to.equal('REQUEST_UNSUPPORTED_ENCODING');
      const csv = await post(server.url, 'a,b', { 'content-type': 'text/csv' });
      expect(csv.status).to.equal(415);
      expect(csv.json.error).to.equal('REQUEST_UNSUPPORTED_TYPE');
    });

    it('answers If-None-Match with 304 to GET and HEAD and 412 to POST; HEAD has the headers and no body', async () => {
      const { server } = await readServer(memorySnapshot(IDS), { transport, maxAgeS: 30 });
      const url = `${server.url}/promotions?id=a&id=b`;
      const got = await http(url);
      const etag = got.headers.get('etag') as string;
      expect(got.headers.get('cache-control')).to.equal('max-age=30');
      const head = await http(url, { method: 'HEAD' });
      expect(head.status).to.equal(200);
      expect(head.text).to.equal('');
      for (const name of ['content-type', 'content-length', 'etag', 'vary', 'cache-control']) {
        expect(head.headers.get(name), name).to.equal(got.headers.get(name));
      }
      for (const inm of [etag, `W/${etag}`, `"x", ${etag}`, '*']) {
        for (const method of ['GET', 'HEAD']) {
          const res = await http(url, { method, headers: { 'if-none-match': inm } });
          expect(res.status, `${method} ${inm}`).to.equal(304);
          expect(res.headers.get('etag')).to.equal(etag);
        }
      }
      expect((await http(url, { headers: { 'if-none-match': '"other"' } })).status).to.equal(200);
      const posted = await post(server.url, { ids: ['a', 'b'] }, { 'if-none-match': etag });
      expect(posted.status).to.equal(412);
      expect(posted.json.error).to.equal('REQUEST_PRECONDITION_FAILED');
      expect((await post(server.url, { ids: ['a', 'b'] })).headers.get('cache-control')).to.equal(null);
    });

    it('counts batches in the metrics (ids per batch, duration) and logs them at debug level', async () => {
      const { logger, lines } = capturingLogger();
      const { server, metrics } = await readServer(memorySnapshot(IDS), { transport, logger });
      await http(`${server.url}/promotions?${query(['a', 'b', 'c'])}`, {
        headers: { 'x-request-id': 'batch-1' },
      });
      await post(server.url, { ids: Array.from({ length: 20 }, (_, i) => `id-${i}`) });
      const text = await metrics.registry.metrics();
      expect(text).to.match(/^promotions_batch_ids_count\{role="replica"\} 2$/m);
      expect(text).to.match(/^promotions_batch_ids_sum\{role="replica"\} 23$/m);
      expect(text).to.match(/^promotions_batch_ids_bucket\{le="10",role="replica"\} 1$/m);
      expect(text).to.match(
        /^promotions_http_requests_total\{route="\/promotions:batchGet",method="POST",status="200",role="replica"\} 1$/m,
      );
      expect(text).to.match(
        /^promotions_http_request_duration_seconds_count\{route="\/promotions",role="replica"\} 1$/m,
      );
      const logged = lines.map((l) => JSON.parse(l)).find((l) => l.requestId === 'batch-1');
      expect(logged).to.deep.include({ method: 'GET', path: '/promotions', status: 200, ids: 3 });
    });
  });
}
