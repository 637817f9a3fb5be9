import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import {
  D,
  DIRECTORY_ENTRY_BYTES,
  EMPTY_SLOT,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  H,
  HEADER_BYTES,
  homeSlot,
  LOAD_FACTOR,
  MAGIC,
  MAX_PARTITION_BITS,
  MAX_SHARD_BITS,
  partitionOf,
  SLOT_BYTES,
  TARGET_PARTITION_ROWS,
} from '../../../../common/snapshot/format.js';
import { keyHash1, keyHash1Bytes, slotHash } from '../../../../common/snapshot/key-hash.js';
import { MAX_RECORD_BYTES } from '../../../../common/snapshot/record-codec.js';

const spec = await readFile(new URL('../../../../common/snapshot/FORMAT.md', import.meta.url), 'utf8');

/** Rows of the markdown table that follows `heading`: [offset, size, field]. */
function tableAfter(heading: string): [number, number, string][] {
  const start = spec.indexOf(heading);
  expect(start, heading).to.be.greaterThan(-1);
  const rows: [number, number, string][] = [];
  for (const line of spec.slice(start).split('\n').slice(1)) {
    const m = /^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\w+)\s*\|/.exec(line);
    if (m) rows.push([Number(m[1]), Number(m[2]), m[3]]);
    else if (rows.length > 0 && !line.startsWith('|')) break;
  }
  return rows;
}

describe('common/snapshot/format matches FORMAT.md', () => {
  it('names the constants with their values', () => {
    const constants: Record<string, number | string> = {
      HEADER_BYTES,
      DIRECTORY_ENTRY_BYTES,
      SLOT_BYTES,
      FORMAT_MAJOR,
      FORMAT_MINOR,
      MAX_PARTITION_BITS,
      MAX_SHARD_BITS,
      LOAD_FACTOR,
      TARGET_PARTITION_ROWS,
      MAX_RECORD_BYTES,
    };
    for (const [name, value] of Object.entries(constants)) {
      expect(spec, name).to.match(new RegExp(`\`${name}\` = ${String(value).replace('.', '\\.')}\\b`));
    }
    expect(spec).to.include(`\`EMPTY_SLOT\` = 0x${EMPTY_SLOT.toString(16).toUpperCase()}`);
    expect(spec).to.include(`ASCII \`${MAGIC}\``);
  });

  it('lists every header field at its offset', () => {
    const rows = tableAfter('## Header');
    const named = Object.fromEntries(rows.map(([off, , name]) => [name, off]));
    for (const [name, off] of Object.entries(H)) expect(named[name], name).to.equal(off);
    const last = rows[rows.length - 1];
    expect(last[0] + last[1]).to.equal(HEADER_BYTES);
  });

  it('lists every directory field at its offset', () => {
    const rows = tableAfter('## Directory');
    const named = Object.fromEntries(rows.map(([off, , name]) => [name, off]));
    for (const [name, off] of Object.entries(D)) expect(named[name], name).to.equal(off);
    const last = rows[rows.length - 1];
    expect(last[0] + last[1]).to.equal(DIRECTORY_ENTRY_BYTES);
  });

  it('hashes as specified: MurmurHash3 x86_32 seed 0, and fmix32 of it for the slot', () => {
    // Reference values of MurmurHash3_x86_32(seed 0).
    expect(keyHash1('')).to.equal(0);
    expect(keyHash1('hello')).to.equal(0x248bfa47);
    expect(keyHash1('The quick brown fox jumps over the lazy dog')).to.equal(0x2e4ff723);
    // The bytes variant (the parse workers' route) agrees, at any offset and for every tail length.
    for (const s of [
      '',
      'a',
      'ab',
      'abc',
      'hello',
      'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118',
      'x'.repeat(127),
    ]) {
      const bytes = Buffer.from(`..${s}..`, 'latin1');
      expect(keyHash1Bytes(bytes, 2, s.length), s).to.equal(keyHash1(s));
    }
    // fmix32(0x9E3779B9): MurmurHash3's finaliser of the constant, computed by hand from its definition.
    expect(slotHash(0)).to.equal(slotHash(0x9e3779b9 ^ 0x9e3779b9));
    expect(slotHash(1)).to.not.equal(slotHash(2));
    expect(partitionOf(0xffffffff, 0)).to.equal(0);
    expect(partitionOf(0xffffffff, 4)).to.equal(15);
    expect(homeSlot(0xffffffff, 10)).to.equal(9);
  });

  it('spreads ids evenly over partitions', () => {
    const counts = new Array(16).fill(0);
    for (let i = 0; i < 16000; i++) counts[partitionOf(keyHash1(`id-${i}`), 4)]++;
    for (const c of counts) expect(c).to.be.within(850, 1150);
  });
});
