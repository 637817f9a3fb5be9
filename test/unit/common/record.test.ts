import { expect } from 'chai';
import fc from 'fast-check';
import { renderPromotion } from '../../../common/promotion-body.js';
import {
  type BadRow,
  canonicalPrice,
  canonicalPriceGeneral,
  idProblem,
  isBadRow,
  isHeader,
  type Promotion,
  parseExpiration,
  parseExpirationGeneral,
  parseRow,
} from '../../../common/record.js';

const UUID = 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118';

function good(fields: string[]): Promotion {
  const r = parseRow(fields, 7);
  if (isBadRow(r)) throw new Error(`expected a good row, got ${JSON.stringify(r)}`);
  return r;
}

function badOf(fields: string[]): BadRow {
  const r = parseRow(fields, 7);
  if (!isBadRow(r)) throw new Error(`expected a bad row, got ${JSON.stringify(r)}`);
  expect(r.line).to.equal(7);
  return r;
}

function render(p: Promotion): unknown {
  return JSON.parse(renderPromotion(p.id, p.price, p.expiresAt));
}

describe('common/record', () => {
  describe('a good row', () => {
    it('renders the example of the design exactly', () => {
      const p = good([UUID, '60.683466', '2018-08-04 05:32:31 +0200 CEST']);
      expect(renderPromotion(p.id, p.price, p.expiresAt)).to.equal(
        `{"id":"${UUID}","price":60.683466,"expiration_date":"2018-08-04 05:32:31"}`,
      );
    });

    it('keeps the clock time, dropping the offset and zone (not converted to UTC)', () => {
      expect(render(good([UUID, '1', '2018-06-04 06:01:20 +0200 CEST']))).to.deep.include({
        expiration_date: '2018-06-04 06:01:20',
      });
      expect(render(good([UUID, '1', '2018-01-04 06:01:20 +0100 CET']))).to.deep.include({
        expiration_date: '2018-01-04 06:01:20',
      });
    });

    it('accepts a date without offset, with fractional seconds, or with a numeric zone name', () => {
      for (const d of [
        '2018-06-04 06:01:20',
        '2018-06-04 06:01:20.123456789 +0000 UTC',
        '2018-06-04 06:01:20 -0300 -03',
      ]) {
        expect(render(good([UUID, '1', d]))).to.deep.include({ expiration_date: '2018-06-04 06:01:20' });
      }
    });

    it('accepts Feb 29 in a leap year, and the first and last seconds of a day', () => {
      expect(render(good([UUID, '1', '2020-02-29 00:00:00']))).to.deep.include({
        expiration_date: '2020-02-29 00:00:00',
      });
      expect(render(good([UUID, '1', '2000-02-29 23:59:59']))).to.deep.include({
        expiration_date: '2000-02-29 23:59:59',
      });
    });

    it('keeps every digit of the price, as a JSON number', () => {
      expect(good([UUID, '60.683466', '2018-08-04 05:32:31']).price).to.equal('60.683466');
      expect(good([UUID, '0.100000000000000000001', '2018-08-04 05:32:31']).price).to.equal(
        '0.100000000000000000001',
      );
      expect(good([UUID, '12345678901234567890', '2018-08-04 05:32:31']).price).to.equal(
        '12345678901234567890',
      );
    });

    it('makes an odd but finite price valid JSON without losing digits', () => {
      expect(canonicalPrice('+1.50')).to.equal('1.50');
      expect(canonicalPrice('.5')).to.equal('0.5');
      expect(canonicalPrice('007')).to.equal('7');
      expect(canonicalPrice('5.')).to.equal('5');
      expect(canonicalPrice('-0.25')).to.equal('-0.25');
      expect(canonicalPrice('1e3')).to.equal('1e3');
      for (const p of ['+1.50', '.5', '007', '5.', '-0.25', '1e3', '1E-7']) {
        expect(() => JSON.parse(canonicalPrice(p) as string), p).not.to.throw();
      }
    });

    it('takes any printable ASCII id without commas, case-sensitive, up to 128 characters', () => {
      expect(good(['ABC-def_1 "x"\\', '1', '2018-08-04 05:32:31']).id).to.equal('ABC-def_1 "x"\\');
      expect(good(['x'.repeat(128), '1', '2018-08-04 05:32:31']).id).to.have.length(128);
      expect(render(good(['a"b', '1', '2018-08-04 05:32:31']))).to.deep.include({ id: 'a"b' });
    });
  });

  describe('a bad row', () => {
    it('has the wrong column count', () => {
      expect(badOf([UUID, '1']).reason).to.match(/expected 3 columns.*found 2/);
      expect(badOf([UUID, '1', '2018-08-04 05:32:31', 'x']).reason).to.match(/found 4/);
      expect(badOf([UUID, '1', '2018-08-04 05:32:31', 'x']).column).to.equal('row');
    });

    it('has an empty, over-long, comma-holding or non-ASCII id', () => {
      expect(badOf(['', '1', '2018-08-04 05:32:31'])).to.deep.include({
        column: 'id',
        reason: 'id is empty',
      });
      expect(badOf(['x'.repeat(129), '1', '2018-08-04 05:32:31']).reason).to.match(
        /129 characters long, at most 128/,
      );
      expect(idProblem('a,b')).to.match(/comma/);
      expect(badOf(['caf\u00e9', '1', '2018-08-04 05:32:31']).reason).to.match(
        /not printable ASCII at position 4/,
      );
      expect(badOf(['a\tb', '1', '2018-08-04 05:32:31']).reason).to.match(/not printable ASCII/);
    });

    it('has a price that is not a finite number', () => {
      for (const p of [
        'abc',
        'NaN',
        'Infinity',
        '-Infinity',
        '1e400',
        '',
        '1,5',
        '0x10',
        '1.2.3',
        '.',
        '-',
        '1e',
        ' 1',
      ]) {
        const b = badOf([UUID, p, '2018-08-04 05:32:31']);
        expect(b.column, p).to.equal('price');
        expect(b.reason, p).to.match(/is not a finite decimal number/);
      }
    });

    it('has a date that does not parse or does not exist', () => {
      const cases: [string, RegExp][] = [
        ['2018-02-30 10:00:00', /day 30 does not exist in 2018-02/],
        ['2019-02-29 10:00:00', /day 29 does not exist/],
        ['2018-13-01 10:00:00', /month 13 does not exist/],
        ['2018-06-04 25:00:00', /time 25:00:00 does not exist/],
        ['2018-06-04 10:60:00', /does not exist/],
        ['2018-06-04 06:01:20 +0200 CEST garbage', /expected YYYY-MM-DD HH:MM:SS/],
        ['2018-06-04T06:01:20Z', /expected YYYY-MM-DD HH:MM:SS/],
        ['04/06/2018 06:01:20', /expected YYYY-MM-DD HH:MM:SS/],
        ['2018-06-04', /expected/],
        ['', /expected/],
        ['2018-06-04 06:01:20 +2500 X', /offset \+2500 does not exist/],
      ];
      for (const [d, why] of cases) {
        const b = badOf([UUID, '1', d]);
        expect(b.column, d).to.equal('expiration_date');
        expect(b.reason, d).to.match(why);
      }
    });

    it('cuts the reported value to 80 characters', () => {
      expect(badOf([UUID, '1', 'x'.repeat(500)]).value).to.have.length(80);
    });
  });

  it('recognises the optional header line', () => {
    expect(isHeader(['id', 'price', 'expiration_date'])).to.equal(true);
    expect(isHeader([UUID, '1', '2018-08-04 05:32:31'])).to.equal(false);
  });

  describe('the hot-path shortcuts agree with the general rules', () => {
    const chars = fc.constantFrom(...'0123456789-+. :eEaZC'.split(''));
    const mutate = (base: string) =>
      fc
        .array(fc.tuple(fc.nat(base.length + 2), chars, fc.constantFrom('set', 'insert', 'delete')), {
          maxLength: 3,
        })
        .map((edits) => {
          let t = base;
          for (const [i, c, op] of edits) {
            const at = Math.min(i, t.length);
            t =
              op === 'set'
                ? t.slice(0, at) + c + t.slice(at + 1)
                : op === 'insert'
                  ? t.slice(0, at) + c + t.slice(at)
                  : t.slice(0, at) + t.slice(at + 1);
          }
          return t;
        });

    it('for prices', () => {
      const bases = fc.constantFrom('60.683466', '0.5', '-12', '100', '7.0', '0');
      fc.assert(
        fc.property(bases.chain(mutate), (t) => {
          expect(canonicalPrice(t), t).to.equal(canonicalPriceGeneral(t));
        }),
        { numRuns: 5000 },
      );
    });

    it('for dates', () => {
      const bases = fc.constantFrom(
        '2018-08-04 05:32:31 +0200 CEST',
        '2020-02-29 23:59:59',
        '2018-01-01 00:00:00 -0130 X',
      );
      fc.assert(
        fc.property(bases.chain(mutate), (t) => {
          expect(parseExpiration(t), t).to.equal(parseExpirationGeneral(t));
        }),
        { numRuns: 5000 },
      );
    });
  });
});
