import { expect } from 'chai';
import type { Promotion } from '../../../../common/record.js';
import { keyHash1 } from '../../../../common/snapshot/key-hash.js';
import { ENTRY_BYTES, RecordCache } from '../../../../common/snapshot/record-cache.js';
import { encodeRecord, renderRecord } from '../../../../common/snapshot/record-codec.js';
import { mulberry32, uuid } from '../../../../scripts/generate.js';

const scratch = Buffer.alloc(256);

/** Reads id through the cache: a hit, or a miss that offers its record; returns whether it was a hit. */
function touch(cache: RecordCache, id: string, price = '1.5'): boolean {
  const h1 = keyHash1(id);
  if (cache.find(h1, id) !== -1) return true;
  const p: Promotion = { id, price, expiresAt: 63_700_000_000 };
  const n = encodeRecord(p, scratch, 0);
  cache.insert(h1, scratch, 0, n);
  return false;
}

/**
 * Ids from a seeded generator, so that every run sees the same ids: the cache's hashes, and so its collisions in the
 * admission table, are then the same each run (random ids made the scan test's hit ratio vary from run to run).
 */
let randomUUID: () => string;

describe('common/snapshot/record-cache', () => {
  beforeEach(() => {
    const next = mulberry32(20260101);
    randomUUID = () => uuid(next);
  });

  it('answers what it was given, by id, exactly', () => {
    const cache = new RecordCache(1 << 20);
    const ids = Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? `raw-${i}` : randomUUID()));
    for (const id of ids) expect(touch(cache, id, `${id.length}.25`)).to.equal(false);
    expect(cache.size).to.equal(ids.length);
    for (const id of ids) {
      const at = cache.find(keyHash1(id), id);
      expect(at, id).to.not.equal(-1);
      expect(renderRecord(cache.data, at, id)).to.contain(`"price":${id.length}.25`);
    }
    expect(cache.find(keyHash1('absent'), 'absent')).to.equal(-1);
    expect(cache.find(keyHash1(ids[1].toUpperCase()), ids[1].toUpperCase())).to.equal(-1);
  });

  it('stays within its budget when many more ids than it holds are read twice each', () => {
    const budget = 256 * 1024;
    const cache = new RecordCache(budget);
    expect(cache.bytes).to.be.at.most(budget);
    expect(cache.capacity).to.be.greaterThan(budget / (2 * ENTRY_BYTES));
    for (let i = 0; i < 20 * cache.capacity; i++) {
      const id = randomUUID();
      touch(cache, id);
      touch(cache, id);
    }
    expect(cache.size).to.equal(cache.capacity);
    expect(cache.data.length).to.equal(cache.capacity * ENTRY_BYTES);
    // Every entry still in the table is findable: evictions kept the probe sequences whole.
    const ids = Array.from({ length: cache.capacity }, () => randomUUID());
    for (const id of ids) {
      touch(cache, id);
      touch(cache, id);
    }
    for (const id of ids.slice(-cache.capacity / 4)) expect(cache.find(keyHash1(id), id)).to.not.equal(-1);
  });

  it('keeps ids read again and again through a scan of ids read once (scan resistance)', () => {
    const cache = new RecordCache(128 * 1024);
    const hot = Array.from({ length: Math.floor(cache.capacity / 4) }, () => randomUUID());
    // A full cache of ids read twice each, then the hot ids (admitted at their second miss).
    for (let i = 0; i < cache.capacity; i++) {
      const id = randomUUID();
      touch(cache, id);
      touch(cache, id);
    }
    for (let round = 0; round < 3; round++) for (const id of hot) touch(cache, id);
    expect(cache.size).to.equal(cache.capacity);
    let hits = 0;
    let asks = 0;
    // Every hot id is read once per `capacity` scanned ids: under LRU or FIFO the scan would flush them all.
    for (let round = 0; round < 8; round++) {
      const before = Buffer.from(cache.data);
      const scanned = Array.from({ length: cache.capacity }, () => randomUUID());
      for (const id of scanned) touch(cache, id);
      // By construction of the admission rule, not by chance: ids read once take no entry, so the scan wrote
      // nothing and evicted nothing.
      expect(cache.data.equals(before), `round ${round}: the scan changed an entry`).to.equal(true);
      expect(scanned.some((id) => cache.find(keyHash1(id), id) !== -1)).to.equal(false);
      let roundHits = 0;
      for (const id of hot) {
        asks++;
        if (touch(cache, id)) roundHits++;
      }
      hits += roundHits;
      // A hot id that missed (its admission slot was shared) is offered again each round; none was lost to a scan.
      expect(roundHits, `round ${round}`).to.be.greaterThan(0.85 * hot.length);
    }
    expect(hits / asks).to.be.greaterThan(0.9);
  });

  it('once full, admits an id at its second miss: ids read once (a scan) take no entry', () => {
    const cache = new RecordCache(64 * 1024);
    const first = Array.from({ length: cache.capacity }, () => randomUUID());
    for (const id of first) touch(cache, id);
    expect(cache.size).to.equal(cache.capacity);
    for (let i = 0; i < 10 * cache.capacity; i++) touch(cache, randomUUID());
    expect(first.every((id) => cache.find(keyHash1(id), id) !== -1)).to.equal(true);
    const again = randomUUID();
    expect(touch(cache, again)).to.equal(false);
    expect(touch(cache, again)).to.equal(false);
    expect(touch(cache, again)).to.equal(true);
  });

  it('keeps a record of exactly an entry, and never one a byte longer', () => {
    const cache = new RecordCache(64 * 1024);
    // A raw id's record: kind, id length, id, price length, price, 5 date bytes.
    const fits = 'x'.repeat(ENTRY_BYTES - 8 - 3);
    const longer = `${fits}y`;
    expect(encodeRecord({ id: fits, price: '1.5', expiresAt: 0 }, scratch, 0)).to.equal(ENTRY_BYTES);
    for (let i = 0; i < 3; i++) expect(touch(cache, longer)).to.equal(false);
    expect(cache.size).to.equal(0);
    expect(touch(cache, fits)).to.equal(false);
    expect(touch(cache, fits)).to.equal(true);
    // An upper-case UUID is stored as text: with a 12-character price it still fits.
    const upper = randomUUID().toUpperCase();
    expect(encodeRecord({ id: upper, price: '123456.78901', expiresAt: 0 }, scratch, 0)).to.be.at.most(
      ENTRY_BYTES,
    );
    // A UUID record with a 9-digit price, as the partner's file has them, fits with room to spare.
    expect(encodeRecord({ id: randomUUID(), price: '60.683466', expiresAt: 0 }, scratch, 0)).to.be.below(
      ENTRY_BYTES,
    );
  });

  it('frees its arena at release', () => {
    const cache = new RecordCache(64 * 1024);
    const id = randomUUID();
    touch(cache, id);
    touch(cache, id);
    expect(cache.size).to.equal(1);
    cache.release();
    expect(cache.data.buffer.byteLength).to.equal(0);
  });
});
