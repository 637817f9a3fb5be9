/** The pure partition build: what a range of partitions holds, however the range is cut. */
import { expect } from 'chai';
import { LOAD_FACTOR, partitionOf, partitionSha } from '../../../../common/snapshot/format.js';
import { decodeRecord } from '../../../../common/snapshot/record-codec.js';
import { type BuiltPartition, buildRange } from '../../../../leader/snapshot-build/partition-build.js';
import { encodeRow, forEachRow, MAX_ROW_BYTES } from '../../../../leader/snapshot-build/row-encoding.js';
import { mixedRows, promotion, type Row } from '../../../snapshot-file.js';

const BITS = 4;

/** Encoded rows of `all` (repeated ids included) whose partition is in [first, first + count). */
function encoded(all: readonly Row[], first = 0, count = 2 ** BITS): { buf: Buffer; rows: number } {
  const buf = Buffer.alloc(all.length * MAX_ROW_BYTES);
  let at = 0;
  let rows = 0;
  for (const [i, r] of all.entries()) {
    const len = encodeRow(promotion(r, i + 1), buf, at);
    const p = partitionOf(buf.readUInt32LE(at), BITS);
    if (p < first || p >= first + count) continue;
    at += len;
    rows++;
  }
  return { buf: buf.subarray(0, at), rows };
}

/** The records a partition holds, decoded, by id. */
function records(part: BuiltPartition): Map<string, string> {
  const b = Buffer.from(part.bytes);
  const out = new Map<string, string>();
  for (let s = 0; s < part.slotCount; s++) {
    const at = b.readUInt32LE(8 * s + 4);
    if (at === 0xffffffff) continue;
    const r = decodeRecord(b, part.slotCount * 8 + at);
    out.set(r.id, `${r.price} ${r.expiresAt}`);
  }
  return out;
}

describe('leader/snapshot-build/partition-build', () => {
  it('keeps the last row of each id, once, and describes each partition truly', () => {
    const rows = mixedRows(2000);
    const { buf, rows: n } = encoded(rows);
    const built = buildRange([buf], n, 0, 2 ** BITS, BITS);
    const last = new Map<string, string>();
    for (const r of rows) {
      const p = promotion(r);
      last.set(p.id, `${p.price} ${p.expiresAt}`);
    }
    expect(built.first).to.equal(0);
    expect(built.parts).to.have.length(2 ** BITS);
    expect(built.duplicates).to.equal(rows.length - last.size);
    const seen = new Map<string, string>();
    for (const part of built.parts) {
      expect(Buffer.from(part.sha256).equals(partitionSha(Buffer.from(part.bytes)))).to.equal(true);
      expect(part.maxProbe).to.be.within(1, part.slotCount);
      const held = records(part);
      expect(held.size).to.equal(part.rows);
      // Home slots sized for the rows given (duplicates included) at the load factor.
      expect(part.homeSlots).to.be.at.least(Math.ceil(part.rows / LOAD_FACTOR));
      for (const [id, v] of held) seen.set(id, v);
    }
    expect(seen).to.deep.equal(last);
  });

  it('builds the same partitions from one range or from its halves, from one buffer or several', () => {
    const rows = mixedRows(1500);
    const whole = encoded(rows);
    const one = buildRange([whole.buf], whole.rows, 0, 16, BITS);
    const low = encoded(rows, 0, 8);
    const high = encoded(rows, 8, 8);
    // The low half handed over in two buffers, cut between two rows.
    let cut = 0;
    forEachRow(low.buf, (off) => {
      if (off < low.buf.length / 2) cut = off;
    });
    const halves = [
      buildRange([low.buf.subarray(0, cut), low.buf.subarray(cut)], low.rows, 0, 8, BITS),
      buildRange([high.buf], high.rows, 8, 8, BITS),
    ];
    expect(halves[1].first).to.equal(8);
    const parts = [...halves[0].parts, ...halves[1].parts];
    expect(parts.map((p) => Buffer.from(p.bytes).toString('hex'))).to.deep.equal(
      one.parts.map((p) => Buffer.from(p.bytes).toString('hex')),
    );
    expect(halves[0].duplicates + halves[1].duplicates).to.equal(one.duplicates);
  });

  it('builds an empty range as empty partitions', () => {
    const built = buildRange([], 0, 4, 2, BITS);
    expect(built).to.deep.include({ first: 4, duplicates: 0 });
    expect(built.parts.map((p) => p.rows)).to.deep.equal([0, 0]);
  });
});
