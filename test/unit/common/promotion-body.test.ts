import { expect } from 'chai';
import { formatExpiration, renderPromotion, writeExpiration } from '../../../common/promotion-body.js';
import { parseExpiration } from '../../../common/record.js';

describe('common/promotion-body', () => {
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
