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
      ['GET', '/promotions'],
      ['GET', '/healthz'],
      ['POST', '/promotions/a'],
      ['DELETE', '/promotions/a'],
    ]) {
      const res = await http(`${server.url}${path}`, { method });
      expect(res.text, `${method} ${path}`).to.equal(`fallback ${method} ${path} HTTP/1.1`);
    }
  });
});
