/**
 * The leader on a disk that fills up or turns read-only, for real: small tmpfs mounts (the tests run as root, as
 * CI does). A failed write answers 507 with a named code and the directory, and the live version stays.
 */
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { AppError, storageErrorOf } from '../../../common/errors.js';
import { generateLines } from '../../../scripts/generate.js';
import {
  cleanup,
  http,
  ingest,
  LEADER_AUTH,
  LEADER_TOKEN,
  onCleanup,
  putCsv,
  startLeader,
  tempDir,
} from '../../helpers.js';

/** A tmpfs of `size` (mount's syntax, e.g. 1m) on a fresh directory, unmounted by cleanup(). */
async function smallDisk(size: string): Promise<string> {
  const dir = await tempDir('promotions-disk-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  onCleanup(async () => execFileSync('umount', ['-l', dir]));
  return dir;
}

const rows = (n: number, seed: number) => `${[...generateLines({ rows: n, seed })].join('\n')}\n`;

describe('leader/storage errors: a full or read-only disk', function () {
  this.timeout(120_000);
  afterEach(cleanup);

  it('answers 507 STORAGE_FULL naming DATA_DIR when the disk fills during a build; the live version stays', async () => {
    const dataDir = await smallDisk('1m');
    const leader = await startLeader({ DATA_DIR: dataDir, UPLOAD_DIR: await tempDir(), INBOX_DIR: '' });
    await ingest(leader.url, rows(100, 1));
    const full = await putCsv(leader.url, rows(40_000, 2));
    expect([full.status, full.json.error], full.text).to.deep.equal([507, 'STORAGE_FULL']);
    expect(full.json.message).to.include(`DATA_DIR (${dataDir})`).and.include('ENOSPC');
    expect(full.json.directory).to.equal(dataDir);
    // Nothing moved: version 1 is current and served to replicas; the build's files are gone.
    expect(leader.store.current()?.version).to.equal(1);
    expect((await http(`${leader.url}/snapshots/1/file`, { headers: LEADER_AUTH })).status).to.equal(200);
    expect(await readdir(join(dataDir, 'tmp'))).to.deep.equal([]);
    const metrics = (await http(`${leader.url}/metrics`)).text;
    expect(metrics)
      .to.match(/status="507"/)
      .and.not.to.match(/status="500"/);
    // The space came back with the failed build's files: a file that fits goes in.
    await ingest(leader.url, rows(120, 3), '?force=true');
  });

  it('answers 507 STORAGE_FULL naming UPLOAD_DIR to a tus PATCH that does not fit; what fits stays to resume', async () => {
    const uploadDir = await smallDisk('256k');
    const leader = await startLeader({ UPLOAD_DIR: uploadDir, INBOX_DIR: '' });
    const tus = { authorization: `Bearer ${LEADER_TOKEN}`, 'tus-resumable': '1.0.0' };
    const body = Buffer.from(rows(20_000, 4));
    const created = await http(`${leader.url}/uploads`, {
      method: 'POST',
      headers: { ...tus, 'upload-length': String(body.length) },
    });
    const url = `${leader.url}${created.headers.get('location')}`;
    const res = await http(url, {
      method: 'PATCH',
      headers: { ...tus, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' },
      body: new Uint8Array(body),
    });
    expect([res.status, res.json.error], res.text).to.deep.equal([507, 'STORAGE_FULL']);
    expect(res.json.message).to.include(`UPLOAD_DIR (${uploadDir})`);
    const head = await http(url, { method: 'HEAD', headers: tus });
    expect(Number(head.headers.get('upload-offset'))).to.be.within(1, body.length - 1);
    expect(leader.store.current()).to.equal(undefined);
  });

  it('answers 507 STORAGE_READ_ONLY when DATA_DIR turns read-only; the live version stays', async () => {
    const dataDir = await smallDisk('4m');
    const leader = await startLeader({ DATA_DIR: dataDir, UPLOAD_DIR: await tempDir(), INBOX_DIR: '' });
    await ingest(leader.url, rows(100, 5));
    execFileSync('mount', ['-o', 'remount,ro', dataDir]);
    const res = await putCsv(leader.url, rows(100, 6));
    expect([res.status, res.json.error], res.text).to.deep.equal([507, 'STORAGE_READ_ONLY']);
    expect(res.json.message).to.include(`DATA_DIR (${dataDir})`).and.include('EROFS');
    expect(leader.store.current()?.version).to.equal(1);
  });

  it('names the directory of the failing path when the caller did not say, and leaves other errors alone', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device'), {
      code: 'ENOSPC',
      path: '/data/inbox/done/x.csv',
    });
    const named = storageErrorOf(enospc);
    expect(named).to.be.instanceOf(AppError);
    expect([named?.code, named?.status, named?.details?.directory]).to.deep.equal([
      'STORAGE_FULL',
      507,
      '/data/inbox/done/x.csv',
    ]);
    // A file outside the directory the caller gave is named by its own path.
    const read = Object.assign(new Error('EACCES'), { code: 'EACCES', path: '/elsewhere/in.csv' });
    expect(storageErrorOf(read, { setting: 'DATA_DIR', path: '/data' })?.message).to.include(
      'the directory of /elsewhere/in.csv',
    );
    expect(storageErrorOf(Object.assign(new Error('x'), { code: 'EDQUOT' }))?.code).to.equal('STORAGE_FULL');
    expect(storageErrorOf(Object.assign(new Error('x'), { code: 'EPERM' }))?.code).to.equal('STORAGE_DENIED');
    expect(storageErrorOf(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).to.equal(undefined);
    expect(storageErrorOf(new AppError('INGEST_EMPTY', 'x'))).to.equal(undefined);
  });
});
