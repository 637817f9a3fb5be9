/**
 * Property: for random rows (duplicates, non-UUID ids, odd characters) built into many partitions, every id
 * answers its last row and absent ids answer 404, through HTTP, in memory mode and in disk mode (with its cache of
 * hot records and slot tables in memory, and with neither). And across swaps, disk mode's cache never answers
 * with a record of the version it served before.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  cleanup,
  csvOf,
  http,
  ingest,
  putCsv,
  rawGet,
  startLeader,
  startReplica,
  waitFor,
  waitForVersion,
} from '../helpers.js';

const idArb = fc.oneof(
  fc.uuid(),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.stringMatching(/^[!-+\--~ ]{1,20}$/),
);
const rowArb = fc.tuple(
  idArb,
  fc.oneof(
    fc.constantFrom('0', '-1.5', '60.683466', '17.481390'),
    fc.integer({ min: 0, max: 10 ** 6 }).map(String),
  ),
  fc.date({
    min: new Date('1970-01-01T00:00:00Z'),
    max: new Date('2999-12-31T00:00:00Z'),
    noInvalidDate: true,
  }),
);

describe('serving modes: every id answers its last row through HTTP (property)', function () {
  this.timeout(180_000);
  afterEach(cleanup);

  const variants = [
    { name: 'memory mode', mode: 'memory', env: { SERVE_MODE: 'memory' } },
    { name: 'disk mode, cache on, slot tables in memory', mode: 'disk', env: { SERVE_MODE: 'disk' } },
    {
      name: 'disk mode, cache off, slot tables on disk',
      mode: 'disk',
      env: { SERVE_MODE: 'disk', DISK_CACHE_BYTES: '0' },
    },
  ] as const;
  for (const { name, mode, env } of variants) {
    it(`in ${name}`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(rowArb, { minLength: 1, maxLength: 300 }),
          fc.array(idArb, { maxLength: 20 }),
          async (raw, probes) => {
            const rows = raw.map(([id, price, d]) => [
              id,
              price,
              `${d.toISOString().slice(0, 19).replace('T', ' ')} +0200 CEST`,
            ]);
            const last = new Map(rows.map(([id, price, date]) => [id, { price, date: date.slice(0, 19) }]));
            const leader = await startLeader({}, { targetPartitionRows: 8 });
            const csvField = (f: string) => (f.includes('"') ? `"${f.replaceAll('"', '""')}"` : f);
            const put = await putCsv(
              leader.url,
              `${rows.map((r) => r.map(csvField).join(',')).join('\n')}\n`,
            );
            expect(put.status, put.text).to.equal(201);
            expect(put.json.rows).to.equal(last.size);
            const replica = await startReplica(leader.url, env);
            await waitFor(() => replica.index.current, 10_000, 'the version');
            expect(replica.index.current?.snapshot.mode).to.equal(mode);
            // Twice: in disk mode the second answer comes from the cache when it is on.
            for (let round = 0; round < 2; round++) {
              for (const [id, { price, date }] of last) {
                const res = await rawGet(replica.url, `/promotions/${encodeURIComponent(id)}`);
                expect(res.status, id).to.equal(200);
                expect(res.text).to.equal(
                  `{"id":${JSON.stringify(id)},"price":${price},"expiration_date":"${date}"}`,
                );
              }
            }
            for (const id of probes.filter((p) => !last.has(p))) {
              const res = await rawGet(replica.url, `/promotions/${encodeURIComponent(id)}`);
              expect(res.status, id).to.equal(404);
            }
            await cleanup();
          },
        ),
        {
          numRuns: 15,
          // Dot segments: ids a WHATWG client cannot ask for, which must still answer when the path is sent as is.
          examples: [
            [
              [
                ['.', '0', new Date(0)],
                ['..', '1', new Date(0)],
              ],
              ['...'],
            ],
          ],
        },
      );
    });
  }

  it('disk mode holds slot tables only within DISK_SLOT_TABLE_BYTES, says how many in /metrics, and answers every id', async () => {
    const ids = Array.from({ length: 2000 }, (_, i) => `id-${i}`);
    const leader = await startLeader();
    expect(
      (await putCsv(leader.url, csvOf(ids.map((id, i) => [id, String(i), '2020-01-01 00:00:00'])))).status,
    ).to.equal(201);
    const partitions = async (url: string) => {
      const text = (await http(`${url}/metrics`)).text;
      const of = (state: string) =>
        Number(
          new RegExp(
            `^promotions_disk_slot_table_partitions\\{[^}]*state="${state}"[^}]*\\} (\\d+)`,
            'm',
          ).exec(text)?.[1],
        );
      return { held: of('held'), file: of('file') };
    };
    // 2000 ids take ~10 KB of packed tables: 2 KiB holds some partitions' only.
    const small = await startReplica(leader.url, { SERVE_MODE: 'disk', DISK_SLOT_TABLE_BYTES: '2048' });
    const roomy = await startReplica(leader.url, { SERVE_MODE: 'disk' });
    await waitFor(() => small.index.current && roomy.index.current, 10_000, 'version 1');
    const few = await partitions(small.url);
    const all = await partitions(roomy.url);
    expect(few.held, 'held within 2 KiB').to.be.greaterThan(0);
    expect(few.file, 'read from the file within 2 KiB').to.be.greaterThan(0);
    expect(all).to.deep.equal({ held: few.held + few.file, file: 0 });
    for (const [i, id] of ids.entries()) {
      expect((await http(`${small.url}/promotions/${id}`)).json.price, id).to.equal(i);
    }
    expect((await http(`${small.url}/promotions/id-absent`)).status).to.equal(404);
  });

  it('disk mode: after a swap, no answer comes from the cache of the version served before', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `id-${i}`);
    const version = (price: string) => csvOf(ids.map((id) => [id, price, '2020-01-01 00:00:00']));
    const leader = await startLeader();
    await ingest(leader.url, version('1'));
    const replica = await startReplica(leader.url, { SERVE_MODE: 'disk' });
    await waitFor(() => replica.index.current, 10_000, 'version 1');
    const hits = async () => {
      const text = (await http(`${replica.url}/metrics`)).text;
      return Number(/^promotions_disk_cache_hits_total\{[^}]*\} (\d+)/m.exec(text)?.[1]);
    };
    const before = await hits();
    for (let round = 0; round < 2; round++) {
      for (const id of ids) expect((await http(`${replica.url}/promotions/${id}`)).json.price).to.equal(1);
    }
    expect((await hits()) - before).to.equal(ids.length);
    for (const [i, price] of ['2', '3', '1'].entries()) {
      await ingest(leader.url, version(price), '?force=true');
      await waitForVersion(replica, i + 2);
      for (const id of ids) {
        const res = await http(`${replica.url}/promotions/${id}`);
        expect(res.json.price, id).to.equal(Number(price));
        expect(res.headers.get('x-snapshot-version')).to.equal(String(i + 2));
      }
    }
  });
});
