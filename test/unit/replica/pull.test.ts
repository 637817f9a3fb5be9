/**
 * A pull from a fake leader serving a real snapshot file: over Range, verified while it arrives, on http (range-get)
 * and https (node:https); from a leader that ignores Range (the whole file, to be verified from disk); and refused,
 * leaving nothing, when a byte is wrong.
 */
import { execFileSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { globalAgent } from 'node:https';
import { join } from 'node:path';
import { expect } from 'chai';
import { SnapshotError } from '../../../common/errors.js';
import { manifestOf, type SnapshotManifest } from '../../../common/protocol.js';
import { memorySnapshotOf } from '../../../common/snapshot/memory-arena.js';
import { loadSnapshot } from '../../../common/snapshot/reader.js';
import { type PullContext, pullSnapshot } from '../../../replica/pull.js';
import { cleanup, fakeServer, onCleanup, quietLogger, REPLICA_TOKEN, tempDir } from '../../helpers.js';
import { buildFile, expectedAnswers, mixedRows } from '../../snapshot-file.js';

/** A leader's file route: 206 for a Range (unless `ignoreRange`), the whole file otherwise; 401 without the token. */
function fileRoute(file: Buffer, version: number, ignoreRange = false) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== `/snapshots/${version}/file`) return void res.writeHead(404).end();
    if (req.headers.authorization !== `Bearer ${REPLICA_TOKEN}`) return void res.writeHead(401).end();
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m === null || ignoreRange) {
      res.writeHead(200, { 'content-length': file.length });
      return void res.end(file);
    }
    const [start, end] = [Number(m[1]), Math.min(Number(m[2]), file.length - 1)];
    res.writeHead(206, {
      'content-range': `bytes ${start}-${end}/${file.length}`,
      'content-length': end - start + 1,
    });
    res.end(file.subarray(start, end + 1));
  };
}

describe('replica/pull', () => {
  let dir: string;
  let file: Buffer;
  let manifest: SnapshotManifest;
  let answers: Map<string, string>;
  let received: number;

  beforeEach(async () => {
    dir = await tempDir();
    const rows = mixedRows(600);
    const built = await buildFile(dir, rows, { targetPartitionRows: 32 }, 'leader.snap');
    file = await readFile(built.path);
    manifest = { ...manifestOf(built.header), bytes: file.length };
    answers = expectedAnswers(rows);
    received = 0;
  });
  afterEach(cleanup);

  const context = (leaderUrl: string): PullContext => ({
    leaderUrl,
    replicaToken: REPLICA_TOKEN,
    logger: quietLogger(),
    onBytes: (n) => {
      received += n;
    },
    readsReceived: () => 0,
  });
  const expected = () => ({ snapshotId: manifest.snapshotId, checksum: manifest.checksum });

  it('pulls over Range, verifying and keeping the bytes as they arrive: the part file is the file, read once', async () => {
    const url = await fakeServer(fileRoute(file, manifest.version));
    const part = join(dir, 'pulled.part');
    const verifier = await pullSnapshot(context(url), manifest, expected(), part, true);
    expect(verifier).to.not.equal('unverified');
    if (verifier === 'unverified') return;
    expect(verifier.done).to.equal(true);
    expect((await readFile(part)).equals(file)).to.equal(true);
    expect(received).to.equal(file.length);
    const snap = memorySnapshotOf(verifier);
    for (const [id, body] of answers) expect(snap.lookup(id), id).to.equal(body);
  });

  it('takes the whole file from a leader that ignores Range, to be verified from disk', async () => {
    const url = await fakeServer(fileRoute(file, manifest.version, true));
    const part = join(dir, 'whole.part');
    expect(await pullSnapshot(context(url), manifest, expected(), part, true)).to.equal('unverified');
    expect((await readFile(part)).equals(file)).to.equal(true);
    const snap = await loadSnapshot(part, expected());
    for (const [id, body] of answers) expect(snap.lookup(id), id).to.equal(body);
  });

  it('refuses a file with a wrong byte (SNAPSHOT_CHECKSUM_MISMATCH) and leaves no part file', async () => {
    const bad = Buffer.from(file);
    bad[300] ^= 0x01;
    const url = await fakeServer(fileRoute(bad, manifest.version));
    const part = join(dir, 'bad.part');
    const err = await pullSnapshot(context(url), manifest, expected(), part, true).then(
      () => expect.fail('expected a refusal'),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(SnapshotError);
    expect((err as SnapshotError).code).to.equal('SNAPSHOT_CHECKSUM_MISMATCH');
    expect(await stat(part).catch(() => 'gone')).to.equal('gone');
  });

  it('pulls from an https leader through node:https', async function () {
    this.timeout(30_000);
    // A self-signed certificate for 127.0.0.1, trusted for this test only.
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    const ca = await readFile(cert);
    const url = await fakeServer(fileRoute(file, manifest.version), { key: await readFile(key), cert: ca });
    const before = globalAgent.options.ca;
    globalAgent.options.ca = ca;
    onCleanup(async () => {
      globalAgent.options.ca = before;
    });
    const part = join(dir, 'tls.part');
    const verifier = await pullSnapshot(context(url), manifest, expected(), part, false);
    expect(verifier).to.not.equal('unverified');
    expect((await readFile(part)).equals(file)).to.equal(true);
    expect(received).to.equal(file.length);
  });
});
