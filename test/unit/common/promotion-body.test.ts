import { expect } from 'chai';
import fc from 'fast-check';
import {
  formatExpiration,
  promotionText,
  renderPromotion,
  writeExpiration,
} from '../../../common/promotion-body.js';
import { idProblem, parseExpiration } from '../../../common/record.js';

describe('common/promotion-body', () => {
  it('reads the fields back from a rendered body, the price as its exact text (promotionText)', () => {
    const at = parseExpiration('2018-08-04 05:32:31 +0200 CEST') as number;
    expect(
      promotionText(renderPromotion('d018ef0b-dbd9-48f1-ac1a-eb4d90e57118', '17.481390', at)),
    ).to.deep.equal({
      id: 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118',
      price: '17.481390',
      expiration_date: '2018-08-04 05:32:31',
    });
    const printable = fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    });
    fc.assert(
      fc.property(
        printable.filter((id) => idProblem(id) === undefined),
        fc.constantFrom('1', '-0.5', '60.683466', '1e3', '17.481390', '123456789012345678901234567890.5'),
        fc.integer({ min: 0, max: 315_000_000_000 }), // years 0000 to 9981: four digits, as parsed
        (id, price, expiresAt) => {
          const body = renderPromotion(id, price, expiresAt);
          expect(promotionText(body)).to.deep.equal({
            id,
            price,
            expiration_date: (JSON.parse(body) as { expiration_date: string }).expiration_date,
          });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('renders a promotion as JSON, the price as the number literal given, the id escaped only when it must be', () => {
    expect(renderPromotion('a-1', '60.683466', parseExpiration('2018-08-04 05:32:31') as number)).to.equal(
      '{"id":"a-1","price":60.683466,"expiration_date":"2018-08-04 05:32:31"}',
    );
    const odd = 'say "hi" \\ bye';
    expect(JSON.parse(renderPromotion(odd, '-0.5e3', 0))).to.deep.equal({
      id: odd,
      price: -500,
      expiration_date: '0000-01-01 00:00:00',
    });
  });

  it('formats every clock time it parses back to the same text', () => {
    for (const d of [
      '0000-01-01 00:00:00',
      '0999-12-31 23:59:59',
      '1970-01-01 00:00:00',
      '2018-08-04 05:32:31',
      '9999-12-31 23:59:59',
    ]) {
      expect(formatExpiration(parseExpiration(d) as number)).to.equal(d);
    }
    const bytes = Buffer.alloc(21);
    for (let days = 0; days < 3_000_000; days += 997) {
      const s = days * 86400 + 3723 + (days % 86400);
      expect(parseExpiration(formatExpiration(s))).to.equal(s);
      // The bytes variant (the read path's) writes the same text.
      expect(writeExpiration(s, bytes, 1)).to.equal(20);
      expect(bytes.toString('latin1', 1, 20)).to.equal(formatExpiration(s));
    }
  });
});
