/**
 * Uploads a CSV file to the leader in one streamed PUT and prints the ingest report.
 *   LEADER_TOKEN=... node --import tsx scripts/upload.ts FILE [--leader http://127.0.0.1:8080] [--force]
 * Exits 0 when the file became the current version, 1 when it was refused (the report says why).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request } from 'node:http';
import { parseArgs } from 'node:util';

export interface UploadResult {
  readonly status: number;
  readonly body: Record<string, unknown>;
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
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: { error: 'BAD_ANSWER', message: text } });
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    createReadStream(path).on('error', reject).pipe(req);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      leader: { type: 'string', default: 'http://127.0.0.1:8080' },
      force: { type: 'boolean', default: false },
    },
  });
  const token = process.env.LEADER_TOKEN;
  if (positionals.length !== 1 || !token) {
    process.stderr.write('usage: LEADER_TOKEN=... upload FILE [--leader URL] [--force]\n');
    process.exit(2);
  }
  const { status, body } = await uploadFile(values.leader, token, positionals[0], values.force);
  process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  process.exit(status === 201 ? 0 : 1);
}
