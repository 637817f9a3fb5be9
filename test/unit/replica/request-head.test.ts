import { expect } from 'chai';
import {
  CONNECTION_CLOSE,
  CONNECTION_KEEP,
  CONNECTION_OTHER,
  connectionOptions,
  parseReadHead,
  readHead,
} from '../../../replica/request-head.js';

/** parseReadHead over a whole head given as its lines (the closing CRLF CRLF added). */
function parse(...lines: string[]): boolean {
  const s = `${lines.join('\r\n')}\r\n\r\n`;
  return parseReadHead(s, 0, s.length - 4);
}

const ID = 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118';

describe('replica/request-head: the heads the read fast path takes', () => {
  it('reads method, target, If-None-Match, X-Request-Id and Connection: close from a read it takes', () => {
    expect(
      parse(
        `HEAD /promotions/${ID} HTTP/1.1`,
        'Host: x',
        'If-None-Match:  "abc" ',
        'X-Request-Id: r-1',
        'Connection: keep-alive, close',
      ),
    ).to.equal(true);
    expect(readHead).to.deep.equal({
      method: 'HEAD',
      url: `/promotions/${ID}`,
      ifNoneMatch: '"abc"',
      requestId: 'r-1',
      close: true,
    });
    // The next head starts from nothing: nothing of the last one stays.
    expect(parse(`GET /promotions/${ID}?a=1 HTTP/1.1`, 'host: x')).to.equal(true);
    expect(readHead).to.deep.equal({
      method: 'GET',
      url: `/promotions/${ID}?a=1`,
      ifNoneMatch: undefined,
      requestId: undefined,
      close: false,
    });
  });

  it('keeps the first of repeated headers and cuts a request id to 128 characters', () => {
    expect(
      parse(
        `GET /promotions/${ID} HTTP/1.1`,
        'Host: x',
        `X-Request-Id: ${'r'.repeat(300)}`,
        'X-Request-Id: second',
        'If-None-Match: "1"',
        'If-None-Match: "2"',
      ),
    ).to.equal(true);
    expect(readHead.requestId).to.equal('r'.repeat(128));
    expect(readHead.ifNoneMatch).to.equal('"1"');
  });

  it('finds a head in the middle of a longer string (a pipelined burst)', () => {
    const first = `GET /promotions/a HTTP/1.1\r\nHost: x\r\n\r\n`;
    const s = `${first}GET /promotions/b HTTP/1.1\r\nHost: x\r\n\r\n`;
    expect(parseReadHead(s, first.length, s.length - 4)).to.equal(true);
    expect(readHead.url).to.equal('/promotions/b');
  });

  const refused: [string, string[]][] = [
    ['no Host', [`GET /promotions/${ID} HTTP/1.1`, 'Accept: */*']],
    ['another route', ['GET /snapshots HTTP/1.1', 'Host: x']],
    ['another method', [`POST /promotions/${ID} HTTP/1.1`, 'Host: x']],
    ['HTTP/1.0', [`GET /promotions/${ID} HTTP/1.0`, 'Host: x']],
    ['a target with a space', ['GET /promotions/a b HTTP/1.1', 'Host: x']],
    ['a target with a non-ASCII byte', ['GET /promotions/\u00e9 HTTP/1.1', 'Host: x']],
    ['whitespace before a colon', [`GET /promotions/${ID} HTTP/1.1`, 'Host : x']],
    ['a header name outside tchar', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'X(y): 1']],
    ['an empty header name', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', ': 1']],
    ['a line without a colon', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'junk']],
    ['a control character in a value', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x\u0001']],
    ['Content-Length', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'Content-Length: 0']],
    ['Transfer-Encoding', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'transfer-encoding: chunked']],
    ['Expect', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'Expect: 100-continue']],
    ['Upgrade', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'Upgrade: h2c']],
    ['Proxy-Connection', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'Proxy-Connection: close']],
    ['Connection: upgrade', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'Connection: Upgrade']],
    ['an odd Connection list', [`GET /promotions/${ID} HTTP/1.1`, 'Host: x', 'Connection: close,,']],
  ];
  for (const [name, lines] of refused) {
    it(`refuses ${name}, for node:http to parse`, () => expect(parse(...lines)).to.equal(false));
  }

  it('reads Connection as a case-insensitive token list with optional whitespace', () => {
    const of = (v: string) => connectionOptions(v, 0, v.length);
    expect(of('close')).to.equal(CONNECTION_CLOSE);
    expect(of(' keep-alive ,\tCLOSE ')).to.equal(CONNECTION_CLOSE);
    expect(of('keep-alive')).to.equal(CONNECTION_KEEP);
    expect(of('x-custom, keep-alive')).to.equal(CONNECTION_KEEP);
    for (const odd of [
      '',
      ' ',
      'close,',
      ',close',
      'close;x',
      'clo se',
      'upgrade',
      'close, Upgrade',
      'cl\u00f6se',
    ]) {
      expect(of(odd), JSON.stringify(odd)).to.equal(CONNECTION_OTHER);
    }
  });
});
