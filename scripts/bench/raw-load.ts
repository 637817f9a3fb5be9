/**
 * A closed-loop HTTP/1.1 load over raw keep-alive connections, for what wrk cannot measure: wrk waits for the
 * Content-Length bytes of a HEAD answer, which never come, so it hangs on HEAD. Each connection keeps `depth`
 * requests in flight (pipelined, so that the server, not this client, is the bottleneck and reads several requests
 * per wake-up, as it does under wrk's 50 connections), reads each whole answer (headers, then the body unless the
 * request was a HEAD or the status 304 or 204) and sends one more; requests are picked at random from a list of
 * pre-formatted ones. It runs in the benchmark's own
 * process, so its figures are only compared with each other (one client for every kind of request), never with
 * wrk's.
 */
import { connect, type Socket } from 'node:net';

/** What one run did. */
export interface RawLoadRun {
  readonly requests: number;
  readonly durationS: number;
  /** Answers whose status was not the one expected. */
  readonly unexpected: number;
}

function pick(requests: readonly string[], seed: { v: number }): string {
  seed.v = (Math.imul(seed.v, 1103515245) + 12345) >>> 0;
  return requests[seed.v % requests.length];
}

/**
 * Sends `requests` (raw request heads, picked at random) over `connections` connections to `port` for `seconds`.
 * `head`: the requests are HEADs (their answers have no body). `status`: the status every answer should have.
 * `depth`: requests in flight per connection.
 */
export async function rawLoad(
  port: number,
  requests: readonly string[],
  connections: number,
  seconds: number,
  head: boolean,
  status: number,
  depth = 8,
): Promise<RawLoadRun> {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  let unexpected = 0;
  const started = performance.now();
  const one = (k: number) =>
    new Promise<void>((resolve, reject) => {
      const socket: Socket = connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      const seed = { v: 42 + k };
      let buffered = '';
      let inFlight = 0;
      const send = (n: number) => {
        let out = '';
        for (let i = 0; i < n; i++) out += pick(requests, seed);
        inFlight += n;
        socket.write(out, 'latin1');
      };
      socket.on('connect', () => send(depth));
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        for (;;) {
          const end = buffered.indexOf('\r\n\r\n');
          if (end === -1) return;
          const code = Number(buffered.slice(9, 12));
          const m = /\r\ncontent-length: *(\d+)/i.exec(buffered.slice(0, end));
          const length = head || code === 304 || code === 204 ? 0 : Number(m?.[1] ?? 0);
          if (buffered.length < end + 4 + length) return;
          buffered = buffered.slice(end + 4 + length);
          done++;
          inFlight--;
          if (code !== status) unexpected++;
          if (performance.now() < deadline) {
            send(1);
          } else if (inFlight === 0) {
            socket.end();
            resolve();
            return;
          }
        }
      });
    });
  await Promise.all(Array.from({ length: connections }, (_, k) => one(k)));
  return { requests: done, durationS: (performance.now() - started) / 1000, unexpected };
}
