/**
 * Property: for random rows (duplicates, non-UUID ids, odd characters) built into many partitions, every id
 * answers its last row and absent ids answer 404, through HTTP, in memory mode and in disk mode.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { cleanup, putCsv, rawGet, startLeader, startReplica, waitFor } from '../helpers.js';

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

  for (const mode of ['memory', 'disk'] as const) {
    it(`in ${mode} mode`, async () => {
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
            const replica = await startReplica(leader.url, { SERVE_MODE: mode });
            await waitFor(() => replica.index.current, 10_000, 'the version');
            expect(replica.index.current?.snapshot.mode).to.equal(mode);
            for (const [id, { price, date }] of last) {
              const res = await rawGet(replica.url, `/promotions/${encodeURIComponent(id)}`);
              expect(res.status, id).to.equal(200);
              expect(res.text).to.equal(
                `{"id":${JSON.stringify(id)},"price":${price},"expiration_date":"${date}"}`,
              );
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
});
