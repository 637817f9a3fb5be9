import { expect } from 'chai';
import { cleanup, http } from '../../helpers.js';
import { bodyOf, memorySnapshot, readServer } from './fakes.js';

describe('replica/read-handler: the read path on node:http', () => {
  afterEach(cleanup);

  it('answers GET /promotions/{id} itself and passes everything else to the fallback (Koa)', async () => {
    const { server } = await readServer(memorySnapshot(['a']), { transport: 'node' });
    const read = await http(`${server.url}/promotions/a`, { headers: { 'x-request-id': 'r-1' } });
    expect(read.status).to.equal(200);
    expect(read.text).to.equal(bodyOf('a'));
    expect(read.headers.get('x-snapshot-version')).to.equal('7');
    expect(read.headers.get('x-request-id')).to.equal('r-1');
    const cached = await http(`${server.url}/promotions/a`, {
      headers: { 'if-none-match': read.headers.get('etag') as string },
    });
    expect(cached.status).to.equal(304);
    for (const [method, path] of [
      ['GET', '/healthz'],
      ['GET', '/promotionsx'],
      ['POST', '/internal/snapshots'],
    ]) {
      const res = await http(`${server.url}${path}`, { method });
      expect(res.text, `${method} ${path}`).to.equal(`fallback ${method} ${path} HTTP/1.1`);
    }
  });

  it('answers HEAD like GET without the body, and 405 with Allow for other methods on a read route', async () => {
    const { server } = await readServer(memorySnapshot(['a']), { transport: 'node' });
    const got = await http(`${server.url}/promotions/a`);
    const head = await http(`${server.url}/promotions/a`, { method: 'HEAD' });
    expect(head.status).to.equal(200);
    expect(head.text).to.equal('');
    expect(head.headers.get('content-length')).to.equal(String(bodyOf('a').length));
    for (const name of ['content-type', 'etag', 'x-snapshot-version']) {
      expect(head.headers.get(name), name).to.equal(got.headers.get(name));
    }
    for (const [method, path, allow] of [
      ['POST', '/promotions/a', 'GET, HEAD'],
      ['DELETE', '/promotions/a', 'GET, HEAD'],
      ['PATCH', '/promotions/a', 'GET, HEAD'],
      ['DELETE', '/promotions', 'GET, HEAD'],
      ['GET', '/promotions:batchGet', 'POST'],
    ]) {
      const res = await http(`${server.url}${path}`, { method, body: method === 'POST' ? 'x' : undefined });
      expect(res.status, `${method} ${path}`).to.equal(405);
      expect(res.headers.get('allow')).to.equal(allow);
      expect(res.json.error).to.equal('REQUEST_METHOD_NOT_ALLOWED');
      expect(res.json.message).to.contain(`${method} is not allowed`);
    }
  });

  it('answers a write sent to a replica with 404 saying that writes go to the leader', async () => {
    const { server } = await readServer(memorySnapshot(['a']), { transport: 'node' });
    for (const method of ['PUT', 'POST']) {
      const res = await http(`${server.url}/promotions`, {
        method,
        body: 'id,price,expiration_date\n',
        headers: { 'content-type': 'text/csv' },
      });
      expect(res.status, method).to.equal(404);
      expect(res.json.error).to.equal('REQUEST_NOT_FOUND');
      expect(res.json.message).to.equal(
        `this is a replica, which only serves reads: ${method} /promotions (a new file) goes to the leader`,
      );
    }
  });
});
