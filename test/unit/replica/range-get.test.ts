/**
 * replica/range-get against small node:http servers on loopback: a range handed over in order with the caller's
 * pace, other answers refused by status, cut and stalled transfers reported as cuts.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { expect } from 'chai';
import { getRange, RangeRefused, TransferCut } from '../../../replica/range-get.js';
import { cleanup, fakeServer } from '../../helpers.js';

const FILE = randomBytes(3 * 1024 * 1024 + 17);

/** A server that answers every request with `handle`; returns the URL of its file. */
async function server(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<URL> {
  return new URL(`${await fakeServer(handle)}/file`);
}

/** Answers `Range: bytes=a-b` from FILE as the leader's file route does (206, Content-Length, Content-Range). */
function ranges(seen: string[] = []) {
  return (req: IncomingMessage, res: ServerResponse) => {
    seen.push(`${req.headers.range} ${req.headers.authorization} ${req.headers.connection}`);
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m === null) return void res.writeHead(200, { 'content-length': FILE.length }).end(FILE);
    const [start, end] = [Number(m[1]), Number(m[2])];
    res
      .writeHead(206, {
        'content-range': `bytes ${start}-${end}/${FILE.length}`,
        'content-length': end - start + 1,
      })
      .end(FILE.subarray(start, end + 1));
  };
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('replica/range-get', () => {
  afterEach(cleanup);

  it('hands the range over in order, reading the next chunk only once the caller is done', async () => {
    const seen: string[] = [];
    const url = await server(ranges(seen));
    const got: Buffer[] = [];
    let busy = false;
    await getRange(
      { url, headers: { authorization: 'Bearer t' }, start: 100, end: FILE.length - 5, idleMs: 5000 },
      (chunk) => {
        expect(busy, 'a chunk while the previous one is in hand').to.equal(false);
        busy = true;
        // The chunk's memory is reused after this settles: keep a copy.
        got.push(Buffer.from(chunk));
        return new Promise<void>((r) =>
          setImmediate(() => {
            busy = false;
            r();
          }),
        );
      },
    );
    expect(Buffer.concat(got).equals(FILE.subarray(100, FILE.length - 5))).to.equal(true);
    expect(got.length).to.be.greaterThan(3);
    expect(seen).to.deep.equal([`bytes=100-${FILE.length - 6} Bearer t close`]);
  });

  it('refuses any answer but a 206 for the range asked, with its status', async () => {
    const url = await server((req, res) => {
      if (req.headers.range === 'bytes=0-9')
        return void res.writeHead(404).end('{"error":"SNAPSHOT_NOT_FOUND"}');
      if (req.headers.range === 'bytes=1-9')
        return void res.writeHead(200, { 'content-length': 3 }).end('abc');
      // More bytes than asked.
      if (req.headers.range === 'bytes=3-9') {
        return void res
          .writeHead(206, { 'content-range': `bytes 3-20/${FILE.length}`, 'content-length': 18 })
          .end(FILE.subarray(3, 21));
      }
      // A 206 for another range than the one asked.
      res
        .writeHead(206, { 'content-range': `bytes 0-9/${FILE.length}`, 'content-length': 10 })
        .end(FILE.subarray(0, 10));
    });
    const get = (start: number) =>
      getRange({ url, headers: {}, start, end: 10, idleMs: 5000 }, () => undefined);
    for (const [start, status] of [
      [0, 404],
      [1, 200],
      [2, 206],
      [3, 206],
    ]) {
      const err = await refusal(get(start));
      expect(err).to.be.instanceOf(RangeRefused);
      expect((err as RangeRefused).status).to.equal(status);
    }
  });

  it('reports a transfer cut midway, a stalled one and an unreachable server as cuts', async () => {
    const cut = await server((_req, res) => {
      res.writeHead(206, { 'content-range': `bytes 0-999999/${FILE.length}`, 'content-length': 1_000_000 });
      res.write(FILE.subarray(0, 300_000), () => res.socket?.destroy());
    });
    const stalled = await server((_req, res) => {
      res.writeHead(206, { 'content-range': `bytes 0-999999/${FILE.length}`, 'content-length': 1_000_000 });
      res.write(FILE.subarray(0, 1000));
    });
    let received = 0;
    const count = (c: Buffer) => {
      received += c.length;
    };
    const e1 = await refusal(
      getRange({ url: cut, headers: {}, start: 0, end: 1_000_000, idleMs: 5000 }, count),
    );
    expect(e1).to.be.instanceOf(TransferCut);
    expect(received).to.be.at.most(300_000);
    const e2 = await refusal(
      getRange({ url: stalled, headers: {}, start: 0, end: 1_000_000, idleMs: 200 }, count),
    );
    expect(e2).to.be.instanceOf(TransferCut);
    expect(e2.message).to.match(/no bytes for 200 ms/);
    // Port 9 (discard) has no listener here: the connection is refused.
    const closed = new URL('http://127.0.0.1:9/file');
    const e3 = await refusal(getRange({ url: closed, headers: {}, start: 0, end: 10, idleMs: 5000 }, count));
    expect(e3).to.be.instanceOf(TransferCut);
  });

  it('passes on what the caller throws, and stops reading', async () => {
    const url = await server(ranges());
    let calls = 0;
    const err = await refusal(
      getRange({ url, headers: {}, start: 0, end: FILE.length, idleMs: 5000 }, () => {
        calls++;
        throw new Error('bad bytes');
      }),
    );
    expect(err.message).to.equal('bad bytes');
    expect(calls).to.equal(1);
  });
});
