import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { cleanup, csvOf, http, ingest, LEADER_TOKEN, startLeader } from '../../helpers.js';

const AUTH = { authorization: `Bearer ${LEADER_TOKEN}` };
const ROWS = [
  ['d018ef0b-dbd9-48f1-ac1a-eb4d90e57118', '60.683466', '2018-08-04 05:32:31 +0200 CEST'],
  ['b', '2', '2018-01-04 06:01:20'],
];

function formWith(csv: string, fields: Record<string, string> = {}): FormData {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', new Blob([csv], { type: 'text/csv' }), 'promotions.csv');
  return form;
}

describe('leader form uploads (multipart)', () => {
  afterEach(cleanup);

  it('ingests the file of a browser-style form and leaves nothing behind', async () => {
    const leader = await startLeader();
    const res = await http(`${leader.url}/promotions`, {
      method: 'POST',
      headers: AUTH,
      body: formWith(csvOf(ROWS)),
    });
    expect(res.status, res.text).to.equal(201);
    expect(res.json).to.include({ version: 1, rows: 2 });
    expect(await readdir(join(leader.config.uploadDir, 'forms'))).to.deep.equal([]);
  });

  it('refuses a form over MAX_UPLOAD_BYTES with 413, keeps the live version, removes the partial file', async () => {
    const leader = await startLeader({ MAX_UPLOAD_BYTES: '2KiB' });
    await ingest(leader.url, csvOf(ROWS));
    const big = csvOf(Array.from({ length: 100 }, (_, i) => [`id-${i}`, '1.5', '2018-01-04 06:01:20']));
    const res = await http(`${leader.url}/promotions`, {
      method: 'POST',
      headers: AUTH,
      body: formWith(big),
    });
    expect(res.status).to.equal(413);
    expect(res.json.error).to.equal('REQUEST_TOO_LARGE');
    expect(res.json.message).to.include('MAX_UPLOAD_BYTES (2048 bytes)');
    expect(leader.store.current()?.version).to.equal(1);
    expect(await readdir(join(leader.config.uploadDir, 'forms'))).to.deep.equal([]);
  });

  it('answers a bad file with 422 naming the line, and honours the force field', async () => {
    const leader = await startLeader();
    await ingest(leader.url, csvOf([...ROWS, ['c', '3', '2018-01-04 06:01:20']]));
    const bad = await http(`${leader.url}/promotions`, {
      method: 'POST',
      headers: AUTH,
      body: formWith(csvOf([['x', '1e400', '2018-01-04 06:01:20']])),
    });
    expect(bad.status).to.equal(422);
    expect(bad.json.message).to.match(/^line 1: /);
    const small = csvOf([ROWS[0]]);
    const shrink = await http(`${leader.url}/promotions`, {
      method: 'POST',
      headers: AUTH,
      body: formWith(small),
    });
    expect(shrink.json.error).to.equal('INGEST_SHRINK');
    const forced = await http(`${leader.url}/promotions`, {
      method: 'POST',
      headers: AUTH,
      body: formWith(small, { force: 'true' }),
    });
    expect(forced.status, forced.text).to.equal(201);
    expect(forced.json).to.include({ version: 2, rows: 1 });
  });

  it('refuses a POST that is not a form, and a form without exactly one file', async () => {
    const leader = await startLeader();
    const raw = await http(`${leader.url}/promotions`, { method: 'POST', headers: AUTH, body: csvOf(ROWS) });
    expect([raw.status, raw.json.error]).to.deep.equal([400, 'REQUEST_BAD']);
    const empty = new FormData();
    empty.append('force', 'true');
    const none = await http(`${leader.url}/promotions`, { method: 'POST', headers: AUTH, body: empty });
    expect([none.status, none.json.error]).to.deep.equal([400, 'REQUEST_BAD']);
    expect(leader.store.current()).to.equal(undefined);
  });
});
