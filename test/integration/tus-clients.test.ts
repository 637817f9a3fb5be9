/**
 * tus-js-client itself against a real leader process, in both of its ways to start an upload: create, then PATCH
 * the bytes; or send the bytes with the creation (`uploadDataDuringCreation`, tus creation-with-upload). Either
 * way the client must end in onSuccess with the ingest report, and a refused file must end in onError with the
 * refusal, the live version untouched.
 */
import { join } from 'node:path';
import { expect } from 'chai';
import * as tus from 'tus-js-client';
import { generateLines } from '../../scripts/generate.js';
import { type RoleProcess, startRole } from '../../scripts/lib/processes.js';
import { cleanup, http, LEADER_AUTH, LEADER_TOKEN, REPLICA_TOKEN, tempDir } from '../helpers.js';

interface Outcome {
  readonly ok: boolean;
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly message: string;
}

/** Uploads `bytes` with tus-js-client; resolves with how the client itself saw the end. */
function tusUpload(endpoint: string, bytes: Buffer, options: Partial<tus.UploadOptions>): Promise<Outcome> {
  const parse = (text: unknown) => {
    try {
      return JSON.parse(String(text)) as Record<string, unknown>;
    } catch {
      return {};
    }
  };
  return new Promise((resolve) => {
    const upload = new tus.Upload(bytes, {
      endpoint,
      uploadSize: bytes.length,
      headers: { authorization: `Bearer ${LEADER_TOKEN}` },
      metadata: { filename: 'promotions.csv' },
      retryDelays: [],
      ...options,
      onSuccess: ({ lastResponse }) =>
        resolve({
          ok: true,
          status: lastResponse.getStatus(),
          body: parse(lastResponse.getBody()),
          message: '',
        }),
      onError: (err) => {
        const res = (err as tus.DetailedError).originalResponse;
        resolve({
          ok: false,
          status: res?.getStatus() ?? 0,
          body: parse(res?.getBody()),
          message: err.message,
        });
      },
    });
    upload.start();
  });
}

describe('tus-js-client against a real leader, with and without uploadDataDuringCreation', function () {
  this.timeout(120_000);
  let leader: RoleProcess | undefined;
  after(async () => {
    await leader?.stop();
    await cleanup();
  });

  it('ends in onSuccess with the ingest report either way, and in onError with a refusal', async () => {
    const dir = await tempDir();
    leader = await startRole('leader', {
      env: {
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: join(dir, 'leader'),
        LEADER_TOKEN,
        REPLICA_TOKEN,
        LOG_LEVEL: 'info',
        INGEST_WORKERS: '1',
      },
    });
    const endpoint = `${leader.url}/uploads`;
    const file = (rows: number, seed: number) =>
      Buffer.from(`${[...generateLines({ rows, seed })].join('\n')}\n`);

    const modes: [string, Partial<tus.UploadOptions>][] = [
      ['create, then PATCH', {}],
      ['create, then PATCH in 16 KiB chunks', { chunkSize: 16 * 1024 }],
      ['the bytes sent with the creation', { uploadDataDuringCreation: true }],
    ];
    let version = 0;
    for (const [i, [mode, options]] of modes.entries()) {
      const bytes = file(2000, 10 + i);
      const outcome = await tusUpload(endpoint, bytes, options);
      version++;
      expect(outcome, mode).to.deep.include({ ok: true, message: '' });
      expect(outcome.status, mode).to.equal(options.uploadDataDuringCreation ? 201 : 200);
      expect(outcome.body, mode).to.include({ version, rows: 2000 });
      const listed = await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH });
      expect(listed.json.current, mode).to.equal(version);
    }

    for (const [mode, options] of modes) {
      const bad = Buffer.from(
        `${[...generateLines({ rows: 2000, seed: 30 })].join('\n')}\nx,not-a-price,2018-01-01 00:00:00\n`,
      );
      const outcome = await tusUpload(endpoint, bad, options);
      expect(outcome, mode).to.deep.include({ ok: false, status: 422 });
      expect(outcome.body, mode).to.include({ error: 'INGEST_BAD_ROWS', badRowCount: 1 });
      expect((await http(`${leader.url}/snapshots`, { headers: LEADER_AUTH })).json.current, mode).to.equal(
        version,
      );
    }
  });
});
