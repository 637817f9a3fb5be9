/**
 * Hit ratio of disk mode's record cache (common/snapshot/record-cache.ts) under Zipfian reads, against the best any
 * cache of as many entries can do: the oracle that holds the `capacity` hottest ids, whose hit ratio is their share
 * of the Zipfian probability mass. In-process and deterministic (seeded draws through the real RecordCache, no
 * server, no timing), so its figures do not depend on the machine.
 *   node --import tsx scripts/bench/cache-hits.ts [--ids 1000000] [--zipf 0.99] [--cache-mib 64]
 *                                                 [--slice 1000000] [--slices 24] [--help]
 *
 * `--ids` UUIDs, ranked; `--slices` slices of `--slice` reads each, whose ranks are drawn as the wrk script of
 * disk.ts draws them (YCSB's Zipfian generator, Gray et al.); a miss offers the id's record (a UUID id, a 9-digit
 * price) to the cache, as a disk read does. Reported: the hit ratio and entries in use after each slice, the
 * oracle's, and their ratio at the last slice (the steady state, once the hit ratio stops rising).
 */

import { keyHash1 } from '../../common/snapshot/key-hash.js';
import { ENTRY_BYTES, RecordCache } from '../../common/snapshot/record-cache.js';
import { encodeRecord } from '../../common/snapshot/record-codec.js';
import { mulberry32, uuid } from '../generate.js';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { log, printJson, printTable, round } from './lib/report.js';
import { runBench } from './lib/run.js';

/** Draws ranks in [0, n) from a Zipfian distribution of exponent `theta` (YCSB's ZipfianGenerator). */
function zipfRanks(n: number, theta: number, random: () => number): { next: () => number; zetan: number } {
  let zetan = 0;
  for (let i = 1; i <= n; i++) zetan += 1 / i ** theta;
  const zeta2 = 1 + 1 / 2 ** theta;
  const alpha = 1 / (1 - theta);
  const eta = (1 - (2 / n) ** (1 - theta)) / (1 - zeta2 / zetan);
  const half = 1 + 0.5 ** theta;
  const next = () => {
    const u = random();
    const uz = u * zetan;
    if (uz < 1) return 0;
    if (uz < half) return 1;
    return Math.min(n - 1, Math.floor(n * (eta * u - eta + 1) ** alpha));
  };
  return { next, zetan };
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ids: { type: 'string', default: '1000000' },
        zipf: { type: 'string', default: '0.99' },
        'cache-mib': { type: 'string', default: '64' },
        slice: { type: 'string', default: '1000000' },
        slices: { type: 'string', default: '24' },
      },
    },
    headerUsage(import.meta.url),
  );
  const n = Number(values.ids);
  const theta = Number(values.zipf);
  const budget = Number(values['cache-mib']) * 1024 * 1024;
  const slice = Number(values.slice);
  const slices = Number(values.slices);
  if (!(theta > 0 && theta < 1)) throw new Error('--zipf must be between 0 and 1 (exclusive)');

  const idRandom = mulberry32(7);
  const ids = Array.from({ length: n }, () => uuid(idRandom));
  const draws = mulberry32(9);
  const ranks = zipfRanks(n, theta, () => draws() / 2 ** 32);
  const cache = new RecordCache(budget);
  let oracleMass = 0;
  for (let i = 1; i <= Math.min(n, cache.capacity); i++) oracleMass += 1 / i ** theta;
  const oracle = round(oracleMass / ranks.zetan, 4);
  log(
    `${n} ids, Zipfian s = ${theta}; cache of ${budget} bytes: ${cache.capacity} entries of ${ENTRY_BYTES} bytes`,
  );

  const scratch = Buffer.alloc(256);
  const rows: (string | number)[][] = [];
  const perSlice: { reads: number; hitRatio: number; used: number }[] = [];
  for (let s = 1; s <= slices; s++) {
    let hits = 0;
    for (let i = 0; i < slice; i++) {
      const id = ids[ranks.next()];
      const h1 = keyHash1(id);
      if (cache.find(h1, id) !== -1) {
        hits++;
        continue;
      }
      const length = encodeRecord({ id, price: '60.683466', expiresAt: 63_700_000_000 }, scratch, 0);
      cache.insert(h1, scratch, 0, length);
    }
    const hitRatio = round(hits / slice, 4);
    perSlice.push({ reads: s * slice, hitRatio, used: cache.size });
    rows.push([s * slice, hitRatio, cache.size, oracle, round(hitRatio / oracle, 3)]);
  }
  printTable(['reads so far', 'hit ratio (slice)', 'entries used', 'oracle', 'ratio to oracle'], rows);
  const last = perSlice[perSlice.length - 1];
  printJson('cache-hits', {
    ids: n,
    theta,
    cacheBytes: budget,
    entryBytes: ENTRY_BYTES,
    capacity: cache.capacity,
    oracleHitRatio: oracle,
    hitRatio: last.hitRatio,
    ratioToOracle: round(last.hitRatio / oracle, 3),
    slices: perSlice,
  });
}

await runBench(main);
