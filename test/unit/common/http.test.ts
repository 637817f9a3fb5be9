import { expect } from 'chai';
import { listen } from '../../../common/http.js';
import {
  cleanup,
  csvOf,
  LEADER_TOKEN,
  onCleanup,
  putCsv,
  rawExchange,
  startLeader,
  waitFor,
} from '../../helpers.js';

const LIMITS = { maxHeaderBytes: 4096, headersTimeoutMs: 200, idleTimeoutMs: 300, keepAliveTimeoutMs: 5000 };

describe('common/http server limits', () => {
  afterEach(cleanup);

  async function server() {
    const s = await listen((_req, res) => res.end('ok'), '127.0.0.1', 0, LIMITS);
    onCleanup(() => s.close(0));
    return s;
  }

  it('answers a request head over MAX_HEADER_BYTES with 431', async () => {
    const s = await server();
    const res = await fetch(`${s.url}/`, { headers: { 'x-big': 'a'.repeat(5000) } });
    expect(res.status).to.equal(431);
    expect((await fetch(`${s.url}/`, { headers: { 'x-small': 'a'.repeat(1000) } })).status).to.equal(200);
  });

  it('disconnects a client that sends its head too slowly (slowloris)', async () => {
    const s = await server();
    const { text } = await rawExchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n');
    expect(text).to.match(/^HTTP\/1.1 408/);
  });

  it('disconnects a client whose body stalls, and the live version stays', async () => {
    const leader = await startLeader({ IDLE_TIMEOUT_MS: '300', HEADERS_TIMEOUT_MS: '1000' });
    expect((await putCsv(leader.url, csvOf([['a', '1', '2018-01-04 06:01:20']]))).status).to.equal(201);
    const head =
      'PUT /promotions HTTP/1.1\r\nHost: x\r\n' +
      `Authorization: Bearer ${LEADER_TOKEN}\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\n`;
    const { text } = await rawExchange(leader.server.port, `${head}b,2,2018-01-04 06:01:20\nc,3,`);
    expect(text).to.equal('');
    await waitFor(async () => (leader.ingestor.busy ? undefined : true), 5000, 'the stalled ingest to end');
    expect(leader.store.current()?.version).to.equal(1);
    expect(leader.store.list()).to.have.length(1);
  });
});
