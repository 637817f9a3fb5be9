/** The builder's row format, and its byte fast path proved equal to the string path. */
import { expect } from 'chai';
import fc from 'fast-check';
import { keyHash1, slotHash } from '../../../../common/snapshot/key-hash.js';
import { decodeRecord } from '../../../../common/snapshot/record-codec.js';
import {
  encodeRow,
  encodeUuidRowBytes,
  forEachRow,
  MAX_ROW_BYTES,
  ROW_PREFIX,
} from '../../../../leader/snapshot-build/row-encoding.js';

const price = fc
  .tuple(fc.nat({ max: 99_999 }), fc.option(fc.nat({ max: 9999 })))
  .map(([i, f]) => (f === null ? String(i) : `${i}.${f}`));
// Seconds from year 0 to year 9999: the full range the record's five date bytes hold.
const expiresAt = fc.integer({ min: -62_167_219_200, max: 253_402_300_799 });

describe('leader/snapshot-build/row-encoding', () => {
  it('prefixes the record with both key hashes of its id', () => {
    const buf = Buffer.alloc(MAX_ROW_BYTES);
    const p = { id: 'promo-1', price: '12.50', expiresAt: 1_533_353_551 };
    const len = encodeRow(p, buf, 0);
    expect(buf.readUInt32LE(0)).to.equal(keyHash1(p.id));
    expect(buf.readUInt32LE(4)).to.equal(slotHash(keyHash1(p.id)));
    expect(decodeRecord(buf, ROW_PREFIX)).to.deep.equal(p);
    const rows: [number, number][] = [];
    forEachRow(Buffer.concat([buf.subarray(0, len), buf.subarray(0, len)]), (off, n) => rows.push([off, n]));
    expect(rows).to.deep.equal([
      [0, len],
      [len, len],
    ]);
  });

  it('the byte path (encodeUuidRowBytes) writes exactly what encodeRow writes, for any canonical UUID row', () => {
    fc.assert(
      fc.property(fc.uuid(), price, expiresAt, fc.nat({ max: 40 }), (id, priceText, t, at) => {
        const line = Buffer.from(`${' '.repeat(at)}${id},${priceText},`, 'latin1');
        const fast = Buffer.alloc(MAX_ROW_BYTES + 7);
        const slow = Buffer.alloc(MAX_ROW_BYTES + 7);
        const n = encodeUuidRowBytes(line, at, at + 37, priceText.length, t, fast, 7);
        const m = encodeRow({ id, price: priceText, expiresAt: t }, slow, 7);
        expect(n).to.equal(m);
        expect(fast.subarray(7, 7 + n).equals(slow.subarray(7, 7 + m))).to.equal(true);
      }),
    );
  });

  it('the byte path declines an id that is not a lowercase UUID (the caller takes the string path)', () => {
    fc.assert(
      fc.property(fc.uuid(), fc.nat({ max: 35 }), fc.constantFrom('G', 'x', '-', 'A', 'é'), (id, i, c) => {
        const bad = id.slice(0, i) + c + id.slice(i + 1);
        fc.pre(bad !== id);
        const line = Buffer.from(`${bad},1.0,`, 'latin1');
        const out = Buffer.alloc(MAX_ROW_BYTES);
        expect(encodeUuidRowBytes(line, 0, 37, 3, 0, out, 0)).to.equal(-1);
      }),
    );
  });
});
