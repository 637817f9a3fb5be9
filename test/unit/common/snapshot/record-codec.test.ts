import { expect } from 'chai';
import fc from 'fast-check';
import { renderPromotion } from '../../../../common/promotion-body.js';
import type { Promotion } from '../../../../common/record.js';
import {
  decodeRecord,
  encodeRecord,
  MAX_RECORD_BYTES,
  recordHasId,
  renderRecord,
} from '../../../../common/snapshot/record-codec.js';

const id = fc.oneof(
  fc.uuid(),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.stringMatching(/^[\x20-\x2b\x2d-\x7e]{1,128}$/),
  fc.constantFrom('a"b', 'back\\slash', '"', '\\'),
);
const price = fc.constantFrom('60.683466', '0', '-1.5', '1e3', '12345678901234567890.5');
// Seconds since 0000-01-01 up to the end of 9999.
const expiresAt = fc.integer({ min: 0, max: 315_537_897_599 });

describe('common/snapshot/record-codec', () => {
  it('renders a stored record exactly as renderPromotion renders the row', () => {
    const buf = Buffer.alloc(3 + MAX_RECORD_BYTES);
    fc.assert(
      fc.property(id, price, expiresAt, fc.nat(2), (i, p, t, off) => {
        const row: Promotion = { id: i, price: p, expiresAt: t };
        encodeRecord(row, buf, off);
        expect(recordHasId(buf, off, i)).to.equal(true);
        expect(decodeRecord(buf, off)).to.deep.equal(row);
        expect(renderRecord(buf, off, i)).to.equal(renderPromotion(i, p, t));
      }),
      { numRuns: 3000 },
    );
  });
});
