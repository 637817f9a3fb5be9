/**
 * Uploads a CSV file to the leader and prints the ingest report.
 *   LEADER_TOKEN=... node --import tsx scripts/upload.ts FILE [--leader http://127.0.0.1:8080] [--force] [--put]
 *
 * By default it uses the leader's resumable uploads (tus 1.0, with tus-js-client): it shows bytes, rate and ETA (a
 * bar on a terminal, a plain line every few seconds otherwise), retries a dropped link, and after Ctrl-C or a crash
 * resumes where the leader's offset is when run again on the same file (the upload's URL is remembered in
 * ~/.promotions-uploads.json, keyed by the file's path, size and time). `--put` sends one plain streamed PUT.
 * Exits 0 when the file became the current version, 1 when it was refused (the report says why), 2 on bad usage.
 */
import { createReadStream, existsSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { errorText } from '../common/error-text.js';
import { headerUsage, parseCommandLine } from './lib/cli.js';

export interface UploadResult {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

function parseBody(status: number, text: string): UploadResult {
  try {
    return { status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status, body: { error: 'BAD_ANSWER', message: text } };
  }
}

/** Streams `path` to `PUT {leader}/promotions` with its length; resolves with the leader's answer. */
export async function uploadFile(
  leader: string,
  token: string,
  path: string,
  force = false,
): Promise<UploadResult> {
  const size = (await stat(path)).size;
  const url = new URL(`${leader}/promotions${force ? '?force=true' : ''}`);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'text/csv', 'content-length': size },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve(parseBody(res.statusCode ?? 0, text)));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    createReadStream(path).on('error', reject).pipe(req);
  });
}

export interface ResumableOptions {
  readonly leader: string;
  readonly token: string;
  readonly path: string;
  readonly force?: boolean;
  /** JSON file remembering unfinished uploads, so a new run resumes them. */
  readonly storagePath: string;
  /** Bytes per PATCH; unset sends the rest of the file in one request (fastest). Tests make it small. */
  readonly chunkSize?: number;
  readonly onProgress?: (sent: number, total: number) => void;
  /** Told of each retry: why the last try failed, which retry this is, and how long until it starts. */
  readonly onRetry?: (reason: string, attempt: number, delayMs: number) => void;
  /** Called once with the upload, so that the caller can abort it (Ctrl-C). */
  readonly onStart?: (upload: tus.Upload, resumed: boolean) => void;
}

/** Pauses between retries of a dropped link: the leader may be restarting. */
const RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10_000, 20_000, 30_000, 60_000];

/**
 * Sends `path` with tus, resuming an earlier unfinished upload of the same file; resolves with the leader's answer
 * to the last PATCH: 200 and the ingest report, or the refusal (4xx and its error body).
 */
export async function resumableUpload(o: ResumableOptions): Promise<UploadResult> {
  if (!existsSync(o.storagePath)) writeFileSync(o.storagePath, '{}\n');
  const file = createReadStream(o.path);
  // FileUrlStorage is exported for Node but missing from the package's types.
  const { FileUrlStorage } = tus as unknown as { FileUrlStorage: new (path: string) => tus.UrlStorage };
  const storage = new FileUrlStorage(o.storagePath);
  const endpoint = `${o.leader}/uploads`;
  const size = (await stat(o.path)).size;
  try {
    const result = await new Promise<UploadResult>((resolve, reject) => {
      const upload = new tus.Upload(file, {
        endpoint,
        uploadSize: size,
        // Unset means Infinity (the rest of the file in one PATCH); an explicit undefined would break slicing.
        ...(o.chunkSize === undefined ? {} : { chunkSize: o.chunkSize }),
        headers: { authorization: `Bearer ${o.token}` },
        metadata: {
          filename: o.path.split('/').pop() ?? 'upload.csv',
          ...(o.force ? { force: 'true' } : {}),
        },
        urlStorage: storage,
        storeFingerprintForResuming: true,
        retryDelays: RETRY_DELAYS_MS,
        // A refusal of the file is final; anything else (no answer, 5xx, a busy lock) is worth another try.
        onShouldRetry: (err, attempt) => {
          const status = err.originalResponse?.getStatus() ?? 0;
          const retry = (status === 0 || status >= 500 || status === 423) && attempt < RETRY_DELAYS_MS.length;
          if (retry) o.onRetry?.(retryReason(err, status), attempt + 1, RETRY_DELAYS_MS[attempt]);
          return retry;
        },
        onProgress: o.onProgress,
        onSuccess: ({ lastResponse }) => {
          const text = lastResponse.getBody();
          if (typeof text === 'string' && text.startsWith('{')) {
            resolve(parseBody(lastResponse.getStatus(), text));
            return;
          }
          // The upload was complete already (the answer to its last PATCH was lost): its report went with it.
          resolve({
            status: 0,
            body: {
              error: 'NO_REPORT',
              message:
                'the leader had the whole file already, and its answer with the ingest report was lost; ' +
                'see GET /snapshots for the version it made',
            },
          });
        },
        onError: (err) => {
          const res = (err as tus.DetailedError).originalResponse;
          if (res !== null && res !== undefined && res.getStatus() >= 400) {
            resolve(parseBody(res.getStatus(), res.getBody()));
          } else {
            reject(err);
          }
        },
      });
      upload
        .findPreviousUploads()
        .then((previous) => {
          // The newest unfinished upload of this very file (same path, size and time) is resumed.
          const last = previous.sort((a, b) => b.creationTime.localeCompare(a.creationTime))[0];
          if (last !== undefined) upload.resumeFromPreviousUpload(last);
          o.onStart?.(upload, last !== undefined);
          upload.start();
        })
        .catch(reject);
    });
    // An answer to the last PATCH is final either way (the leader deleted the upload): nothing is left to resume.
    const fingerprint = await tus.defaultOptions.fingerprint(file as never, { endpoint });
    for (const u of fingerprint === null ? [] : await storage.findUploadsByFingerprint(fingerprint)) {
      await storage.removeUpload(u.urlStorageKey);
    }
    return result;
  } finally {
    file.destroy();
  }
}

/** Why a try failed, for a person: the leader's status, or the network error under tus-js-client's wrapping. */
function retryReason(err: Error, status: number): string {
  if (status !== 0) return `the leader answered ${status}`;
  const cause = (err as tus.DetailedError).causingError;
  return errorText(cause ?? err);
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function human(bytes: number): string {
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** Shows progress on stderr: a redrawn bar on a terminal, a plain line every `everyMs` otherwise. */
export class ProgressView {
  private readonly samples: [number, number][] = [];
  private lastLine = 0;
  /** When `update` was last called (the ingest wait is measured from it). */
  lastUpdate = 0;

  constructor(
    private readonly out: { write(s: string): unknown; isTTY?: boolean },
    private readonly everyMs = 5000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Rate in bytes/s over the last few seconds (a bounded window of samples). */
  private rate(t: number, sent: number): number {
    this.samples.push([t, sent]);
    while (this.samples.length > 2 && t - this.samples[0][0] > 5000) this.samples.shift();
    const [t0, s0] = this.samples[0];
    return t > t0 ? ((sent - s0) * 1000) / (t - t0) : 0;
  }

  /**
   * Says that every byte is on its way and the leader is ingesting, `waitedMs` after the last progress: the last
   * PATCH is answered only once the ingest ends, and the bar would otherwise stand still short of 100%.
   */
  ingesting(waitedMs: number): void {
    const text = `sent; the leader is ingesting (${Math.round(waitedMs / 1000)} s)`;
    if (this.out.isTTY) {
      this.out.write(`\r${text}\u001b[K`);
    } else if (this.now() - this.lastLine >= this.everyMs) {
      this.lastLine = this.now();
      this.out.write(`upload: ${text}\n`);
    }
  }

  update(sent: number, total: number): void {
    const t = this.now();
    this.lastUpdate = t;
    const rate = this.rate(t, sent);
    const pct = total > 0 ? (sent / total) * 100 : 100;
    const eta = rate > 0 ? `${Math.ceil((total - sent) / rate)} s` : '?';
    const text = `${pct.toFixed(1)}% ${human(sent)} / ${human(total)}, ${human(rate)}/s, ETA ${eta}`;
    if (this.out.isTTY) {
      const width = 30;
      const done = Math.round((pct / 100) * width);
      this.out.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${text}\u001b[K`);
      if (sent >= total) this.out.write('\n');
    } else if (t - this.lastLine >= this.everyMs || sent >= total) {
      this.lastLine = t;
      this.out.write(`upload: ${text}\n`);
    }
  }
}

/** The command line: parses arguments, sends the file, prints the answer; returns the exit code. */
async function main(): Promise<number> {
  const { values, positionals } = parseCommandLine(
    {
      allowPositionals: true,
      options: {
        leader: { type: 'string', default: 'http://127.0.0.1:8080' },
        force: { type: 'boolean', default: false },
        put: { type: 'boolean', default: false },
        state: { type: 'string', default: join(homedir(), '.promotions-uploads.json') },
      },
    },
    headerUsage(import.meta.url),
  );
  const token = process.env.LEADER_TOKEN;
  if (positionals.length !== 1 || !token) {
    process.stderr.write(
      'usage: LEADER_TOKEN=... upload FILE [--leader URL] [--force] [--put] [--state FILE]\n',
    );
    return 2;
  }
  const [path] = positionals;
  const view = new ProgressView(process.stderr);
  let sentShare = 0;
  // Once most of the file is out and progress stops, the leader holds the last bytes while it ingests.
  const watch = setInterval(() => {
    const waited = performance.now() - view.lastUpdate;
    if (sentShare >= 0.9 && waited >= 2000) view.ingesting(waited);
  }, 1000);
  watch.unref();
  let result: UploadResult;
  try {
    result = values.put
      ? await uploadFile(values.leader, token, path, values.force)
      : await resumableUpload({
          leader: values.leader,
          token,
          path,
          force: values.force,
          storagePath: values.state,
          onProgress: (sent, total) => {
            sentShare = total > 0 ? sent / total : 1;
            view.update(sent, total);
          },
          onRetry: (reason, attempt, delayMs) =>
            process.stderr.write(
              `upload: ${reason}; retrying in ${delayMs / 1000} s (retry ${attempt} of ${RETRY_DELAYS_MS.length})\n`,
            ),
          onStart: (upload, resumed) => {
            if (resumed) process.stderr.write('upload: resuming an earlier upload of this file\n');
            process.once('SIGINT', () => {
              // Leaves the upload on the leader: running this again resumes it.
              void upload.abort().then(() => {
                process.stderr.write('\nupload: stopped; run the same command again to resume\n');
                process.exit(130);
              });
            });
          },
        });
  } catch (err) {
    // The message names the request and its cause, never the token (the error object holds the headers).
    process.stderr.write(`upload: ${(err as Error).message}\n`);
    return 1;
  } finally {
    clearInterval(watch);
  }
  process.stdout.write(`${JSON.stringify(result.body, null, 2)}\n`);
  return result.status === 200 || result.status === 201 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(await main());
