import { expect } from 'chai';
import fc from 'fast-check';
import { HEAD_INCOMPLETE, HEAD_NOT_READ, HeadScanner, scanWork } from '../../../replica/head-scanner.js';

const START = 'GET /promotions/';
const HEAD = 'GET /promotions/a HTTP/1.1\r\nHost: x\r\n\r\n';

/** Feeds `s` to a new scanner in pieces of the given sizes: the result of the last feed, and where the head ended in `s`. */
function feedInPieces(s: string, sizes: readonly number[]): { result: number; endAt: number } {
  const scanner = new HeadScanner([START]);
  let at = 0;
  let k = 0;
  while (at < s.length) {
    const piece = s.slice(at, at + Math.max(1, sizes[k++ % Math.max(1, sizes.length)] ?? 1));
    const r = scanner.feed(piece);
    if (r === HEAD_NOT_READ) return { result: r, endAt: -1 };
    if (r >= 0) return { result: r, endAt: at + r };
    at += piece.length;
  }
  return { result: HEAD_INCOMPLETE, endAt: -1 };
}

describe('replica/head-scanner: the incremental scan of an unfinished head', () => {
  it('finds the end of a head, whatever pieces it arrives in', () => {
    expect(feedInPieces(HEAD, [HEAD.length])).to.deep.equal({ result: HEAD.length, endAt: HEAD.length });
    expect(feedInPieces(HEAD, [1]).endAt).to.equal(HEAD.length);
    expect(feedInPieces(`${HEAD}GET /next`, [7]).endAt).to.equal(HEAD.length);
    expect(feedInPieces(HEAD.slice(0, -1), [1]).result).to.equal(HEAD_INCOMPLETE);
  });

  it('refuses at the first byte that no read head can hold', () => {
    for (const bad of [
      'POST /',
      'GET /healthz',
      'GET /promotions/a HTTP/1.1\nHost: x',
      'GET /promotions/a HTTP/1.1\r\nHost: x\rX',
      'GET /promotions/a HTTP/1.1\r\nHost: \x00',
      'GET /promotions/a HTTP/1.1\r\nHost: caf\xe9',
      'GET /promotions/a HTTP/1.1\r\nHost: \x7f',
      '\r\nGET /promotions/a',
    ]) {
      expect(feedInPieces(bad, [1]).result, JSON.stringify(bad)).to.equal(HEAD_NOT_READ);
      expect(feedInPieces(bad, [bad.length]).result, JSON.stringify(bad)).to.equal(HEAD_NOT_READ);
    }
    // A prefix of a read is not refused: more bytes may make it one.
    expect(feedInPieces('GET /promo', [1]).result).to.equal(HEAD_INCOMPLETE);
    expect(feedInPieces('GET /promotions/a HTTP/1.1\r', [1]).result).to.equal(HEAD_INCOMPLETE);
  });

  it('gives the same answer in pieces as in one piece, on random heads', () => {
    const char = fc.constantFrom('a', ' ', '\t', ':', '\r', '\n', '\r\n', '\r\n\r\n', '\x00', '\xe9', 'G');
    fc.assert(
      fc.property(
        fc.array(char, { maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 }),
        (chars, sizes) => {
          const s = START + chars.join('');
          expect(feedInPieces(s, sizes).endAt).to.equal(feedInPieces(s, [s.length]).endAt);
          expect(feedInPieces(s, sizes).result === HEAD_NOT_READ).to.equal(
            feedInPieces(s, [s.length]).result === HEAD_NOT_READ,
          );
        },
      ),
    );
  });

  it('looks at each byte once when a head arrives a byte at a time', () => {
    const head = `GET /promotions/a HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(10_000)}\r\n\r\n`;
    const before = scanWork.chars;
    expect(feedInPieces(head, [1]).endAt).to.equal(head.length);
    expect(scanWork.chars - before).to.equal(head.length);
  });
});
