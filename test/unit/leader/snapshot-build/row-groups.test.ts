/** Grouping a parsed block by hash: every row once, in its group, in input order inside the group. */
import { expect } from 'chai';
import fc from 'fast-check';
import { encodeRow, forEachRow, MAX_ROW_BYTES } from '../../../../leader/snapshot-build/row-encoding.js';
import { GROUP_BITS, groupRows } from '../../../../leader/snapshot-build/row-groups.js';

const row = fc.record({
  id: fc.oneof(fc.uuid(), fc.stringMatching(/^[a-z0-9-]{1,20}$/)),
  price: fc.nat({ max: 9999 }).map(String),
  expiresAt: fc.nat({ max: 2_000_000_000 }),
});

describe('leader/snapshot-build/row-groups', () => {
  it('puts each row in the group of its top hash bits, keeping input order inside a group', () => {
    fc.assert(
      fc.property(fc.array(row, { maxLength: 300 }), (rows) => {
        const src = Buffer.alloc(rows.length * MAX_ROW_BYTES);
        const starts = new Uint32Array(rows.length);
        let end = 0;
        const byGroup = new Map<number, Buffer[]>();
        for (const [i, p] of rows.entries()) {
          starts[i] = end;
          const len = encodeRow(p, src, end);
          const g = src.readUInt32LE(end) >>> (32 - GROUP_BITS);
          byGroup.set(g, [...(byGroup.get(g) ?? []), Buffer.from(src.subarray(end, end + len))]);
          end += len;
        }
        const { rows: out, groups } = groupRows(src, end, starts, rows.length);
        expect(out.length).to.equal(end);
        expect(groups.rows[2 ** GROUP_BITS]).to.equal(rows.length);
        for (let g = 0; g < 2 ** GROUP_BITS; g++) {
          const got: Buffer[] = [];
          forEachRow(out.subarray(groups.bytes[g], groups.bytes[g + 1]), (off, len) =>
            got.push(out.subarray(groups.bytes[g] + off, groups.bytes[g] + off + len)),
          );
          const want = byGroup.get(g) ?? [];
          expect(got.length, `group ${g}`).to.equal(want.length);
          expect(groups.rows[g + 1] - groups.rows[g]).to.equal(want.length);
          for (const [k, b] of want.entries()) expect(got[k].equals(b), `group ${g} row ${k}`).to.equal(true);
        }
      }),
    );
  });
});
