import { expect } from 'chai';
import fc from 'fast-check';
import { bodyTag, ifNoneMatchMatches } from '../../../replica/etag.js';

const BODY = '{"id":"a","price":1.5,"expiration_date":"2018-01-01 00:00:00"}';

describe('replica/etag', () => {
  it('tags an answer by its bytes: a strong tag, the same for the same bytes, another for any other bytes', () => {
    const tag = bodyTag(BODY);
    expect(tag).to.match(/^"[0-9a-f]{16}"$/);
    expect(bodyTag(`${BODY}`)).to.equal(tag);
    // One digit of the price, one second of the date, one character of the id, or one byte more.
    for (const other of [
      BODY.replace('1.5', '1.6'),
      BODY.replace('1.5', '1.50'),
      BODY.replace(':00"', ':01"'),
      BODY.replace('"a"', '"b"'),
      `${BODY} `,
      '',
    ]) {
      expect(bodyTag(other), other).to.not.equal(tag);
    }
  });

  it('gives distinct tags to distinct bodies (no collision among many near-identical answers)', () => {
    const tags = new Set<string>();
    for (let i = 0; i < 100_000; i++) tags.add(bodyTag(BODY.replace('1.5', `1.${i}`)));
    expect(tags.size).to.equal(100_000);
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }), (a, b) => {
        if (a !== b) expect(bodyTag(a)).to.not.equal(bodyTag(b));
      }),
    );
  });

  it('matches If-None-Match as RFC 9110 §13.1.2 says: weak comparison, lists, *', () => {
    const tag = bodyTag(BODY);
    const cases: [string, boolean][] = [
      [tag, true],
      [`W/${tag}`, true],
      [`"other", ${tag}`, true],
      [`"other",${tag}`, true],
      [`  "other" ,\tW/${tag} , "more"`, true],
      ['*', true],
      [' * ', true],
      ['"other"', false],
      ['W/"other", "more"', false],
      [tag.slice(0, -1), false], // unterminated
      [tag.slice(1, -1), false], // not quoted: not an entity tag
      [`x${tag}`, false],
      ['', false],
      [',,', false],
    ];
    for (const [header, expected] of cases) {
      expect(ifNoneMatchMatches(header, tag), header).to.equal(expected);
    }
    // No current representation (a 404): nothing matches, not even *.
    expect(ifNoneMatchMatches('*', undefined)).to.equal(false);
  });
});
