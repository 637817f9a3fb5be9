/**
 * The leader's notice campaigns (leader/replica-notices.ts), driven through the registry against fake replicas:
 * notices retried with growing waits, given up on, refused, superseded by a later publish; failures recorded and
 * cleared; answers read only up to their limit.
 */

import { expect } from 'chai';
import { MAX_NOTICE_REPLY_BYTES } from '../../../leader/replica-notices.js';
import { cleanup, fakeServer, REPLICA_TOKEN, waitFor } from '../../helpers.js';
import { FAST, fakeReplica, manifest, ok, refusedFile, registry, statusOf } from './replica-fixtures.js';

describe('leader/replica-notices', () => {
  afterEach(cleanup);

  it('retries a failed notice with growing waits until the replica takes it', async () => {
    const replica = await fakeReplica((v, n) => (n <= 3 ? refusedFile : ok(v)));
    const r = registry([replica.url], { retry: { ...FAST, maxAttempts: 6 } });
    await r.notifyAll(manifest(4));

    expect(replica.notices.map((n) => n.version)).to.deep.equal([4, 4, 4, 4]);
    expect(replica.notices.every((n) => n.authorization === `Bearer ${REPLICA_TOKEN}`)).to.equal(true);
    const gaps = replica.notices.slice(1).map((n, i) => n.at - replica.notices[i].at);
    // The k-th wait is base*2^(k-1) less up to half as jitter: at least 20, 40, 80 ms (a busy machine adds).
    expect(gaps).to.have.length(3);
    for (const [k, gap] of gaps.entries()) {
      expect(gap, `wait ${k + 1}`).to.be.at.least((FAST.baseDelayMs * 2 ** k) / 2 - 2);
    }
    expect(statusOf(r, replica.url, 4)).to.deep.include({
      version: 4,
      lastError: null,
      lag: 0,
      notice: { version: 4, state: 'done', attempts: 4, nextAttemptAt: null },
    });
  });

  it('gives up after the last attempt, keeping the status and code the replica gave', async () => {
    const replica = await fakeReplica(() => refusedFile);
    const r = registry([replica.url], { retry: { ...FAST, maxAttempts: 3 } });
    r.seen(replica.url, 1);
    await r.notifyAll(manifest(2));
    expect(replica.notices).to.have.length(3);
    const s = statusOf(r, replica.url, 2);
    expect(s).to.deep.include({ version: 1, lag: 1 });
    expect(s.lastError).to.equal('version 2: 502 SNAPSHOT_CHECKSUM_MISMATCH');
    expect(s.notice).to.deep.include({ version: 2, state: 'failed', attempts: 3 });
    expect(s.lastContact).to.be.a('string');

    // Its own poll brings it to version 2 later: the failure is over.
    r.seen(replica.url, 2);
    expect(statusOf(r, replica.url, 2)).to.deep.include({ version: 2, lastError: null, lag: 0 });
  });

  it('does not retry a notice the replica refuses as wrong (401)', async () => {
    const replica = await fakeReplica(() => ({
      status: 401,
      body: { error: 'AUTH_REQUIRED', message: 'this route needs an Authorization: Bearer token' },
    }));
    const r = registry([replica.url]);
    await r.notifyAll(manifest(1));
    expect(replica.notices).to.have.length(1);
    expect(statusOf(r, replica.url).lastError).to.match(/^version 1: 401 AUTH_REQUIRED/);
    expect(statusOf(r, replica.url).notice?.state).to.equal('failed');
  });

  it('reaches a replica that was down when the version was published, once it is back', async () => {
    const probe = await fakeReplica(ok);
    const port = probe.port;
    await probe.close();
    const url = `http://127.0.0.1:${port}`;
    const r = registry([url], { retry: { ...FAST, maxAttempts: 10 } });
    const done = r.notifyAll(manifest(7));
    await waitFor(() => statusOf(r, url).lastError ?? undefined, 5000, 'the first failure');
    expect(statusOf(r, url).lastError).to.match(/^version 7: ECONNREFUSED/);
    const back = await fakeReplica(ok, port);
    await done;
    expect(back.notices.map((n) => n.version)).to.deep.equal([7]);
    expect(statusOf(r, url, 7)).to.deep.include({ version: 7, lastError: null, lag: 0 });
  });

  it('stops retrying an older version once a newer one is published', async () => {
    const replica = await fakeReplica((v) => (v === 1 ? refusedFile : ok(v)));
    // Backoff timers that fire only when the test says, so that "no more retries" is checked, not waited for.
    const timers = new Map<number, () => void>();
    let id = 0;
    const setTimer = (fn: () => void) => {
      const key = ++id;
      timers.set(key, fn);
      return () => void timers.delete(key);
    };
    const r = registry([replica.url], {
      retry: { baseDelayMs: 200, maxDelayMs: 200, maxAttempts: 20 },
      setTimer,
    });
    const first = r.notifyAll(manifest(1));
    await waitFor(
      () => (statusOf(r, replica.url).notice?.state === 'waiting' ? true : undefined),
      5000,
      'a retry',
    );
    expect(timers.size).to.equal(1);
    await r.notifyAll(manifest(2));
    await first;
    // The publish cancelled version 1's backoff: nothing is left to fire, so it can send no more.
    expect(timers.size).to.equal(0);
    expect(replica.notices.at(-1)?.version).to.equal(2);
    expect(replica.notices.filter((n) => n.version === 1)).to.have.length(1);
    expect(statusOf(r, replica.url, 2)).to.deep.include({ version: 2, lastError: null });
  });

  it('ends pending retries when the replica reports the version by its own poll', async () => {
    const replica = await fakeReplica(() => refusedFile);
    const r = registry([replica.url], { retry: { baseDelayMs: 200, maxDelayMs: 200, maxAttempts: 20 } });
    const done = r.notifyAll(manifest(3));
    await waitFor(
      () => (statusOf(r, replica.url).notice?.state === 'waiting' ? true : undefined),
      5000,
      'a retry',
    );
    r.seen(replica.url, 3);
    await done;
    expect(replica.notices).to.have.length(1);
    expect(statusOf(r, replica.url, 3)).to.deep.include({ version: 3, lastError: null });
    expect(statusOf(r, replica.url).notice?.state).to.equal('done');
  });

  it('shows only the status and a well-formed error code of a failed notice, never the text of the answer', async () => {
    const refused = await fakeReplica(() => ({
      status: 502,
      body: { error: 'SNAPSHOT_ID_MISMATCH', message: '<script>secret internal page</script>' },
    }));
    const odd = await fakeReplica(() => ({
      status: 400,
      body: { error: 'not a code <b>', message: 'hello' },
    }));
    const page = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/html' }).end('<html>secret admin page</html>');
    });
    const r = registry([refused.url, odd.url, page], { retry: { ...FAST, maxAttempts: 1 } });
    await r.notifyAll(manifest(1));
    expect([refused.url, odd.url, page].map((u) => statusOf(r, u).lastError)).to.deep.equal([
      'version 1: 502 SNAPSHOT_ID_MISMATCH',
      'version 1: 400',
      'version 1: 404',
    ]);
    expect(JSON.stringify(r.list(1)))
      .not.to.include('secret')
      .and.not.to.include('hello');
  });

  it('never follows a redirect from a replica, so the token is not sent elsewhere', async () => {
    const elsewhere: string[] = [];
    const target = await fakeServer((req, res) => {
      elsewhere.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
      res.end('{}');
    });
    const replica = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(307, { location: `${target}/steal?x=` }).end();
    });
    const r = registry([replica]);
    await r.notifyAll(manifest(1));
    expect(elsewhere).to.deep.equal([]);
    expect(statusOf(r, replica)).to.deep.include({ lastError: 'version 1: 307' });
    expect(statusOf(r, replica).notice).to.deep.include({ state: 'failed', attempts: 1 });
  });

  it('stops reading an answer past MAX_NOTICE_REPLY_BYTES, declared or streamed, and does not retry it', async () => {
    let sent = 0;
    const endless = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      // Writes as long as the leader reads; the leader must cancel after about MAX_NOTICE_REPLY_BYTES.
      const more = () => {
        while (!res.destroyed && sent < 1024 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
      };
      more();
    });
    const declared = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(500, { 'content-length': String(10 * 1024 * 1024) }).write('x');
    });
    const r = registry([endless, declared]);
    await r.notifyAll(manifest(1));
    expect(statusOf(r, endless).lastError).to.equal(
      `version 1: 200 reply larger than ${MAX_NOTICE_REPLY_BYTES} bytes`,
    );
    expect(statusOf(r, declared).lastError).to.equal(
      `version 1: 500 reply larger than ${MAX_NOTICE_REPLY_BYTES} bytes`,
    );
    for (const url of [endless, declared]) {
      expect(statusOf(r, url).notice).to.deep.include({ state: 'failed', attempts: 1 });
    }
    // What the sockets buffer on the way is a few MiB at most; the leader did not read the gigabyte.
    expect(sent).to.be.below(32 * 1024 * 1024);
  });
});
