/**
 * Upload benchmark (issue 4): a generated CSV of about 1 GB sent over loopback, each contender in the same run on
 * the same page-cached file.
 *   node --import tsx scripts/bench/upload.ts [--rows 13000000] [--runs 2] [--seed 42]
 *
 *   curl -T sink   `curl -T FILE` to a bare node:http server that writes the body to a file on the same disk: what
 *                  moving the bytes costs here, the baseline.
 *   tus upload     scripts/upload.ts (tus-js-client, the whole rest of the file in one PATCH) to a leader: the upload
 *                  time is the wall time minus the ingest time the report gives (the last PATCH answers after the
 *                  ingest); the wall time is shown too.
 *   curl -T PUT    `curl -T FILE` to the leader's PUT /promotions: the single-shot upload, streamed into the ingest.
 * The ratio is the tus upload's MB/s over curl -T sink's.
 */
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { resumableUpload } from '../upload.js';
import {
  DEFAULT_SEED,
  ensureCsv,
  ensureTool,
  fileBytes,
  leaderEnv,
  log,
  machineNote,
  mb,
  onCleanup,
  parseCounts,
  printJson,
  printTable,
  round,
  runBench,
  runTool,
  startTracked,
  TOKENS,
  tempDir,
  warmFile,
} from './lib.js';

/** A server that writes each request body to a file in `dir` and answers 201 with the byte count. */
async function startSink(dir: string): Promise<string> {
  let n = 0;
  const server = createServer((req, res) => {
    const out = createWriteStream(join(dir, `body-${n++}`));
    pipeline(req, out).then(
      () => res.writeHead(201, { 'content-type': 'application/json' }).end(`{"bytes":${out.bytesWritten}}`),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** `curl -T file url` with the leader token; resolves with the seconds it took and the HTTP status. */
async function curlUpload(file: string, url: string): Promise<{ seconds: number; status: number }> {
  const r = await runTool(
    'curl',
    [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-T',
      file,
      '-H',
      `Authorization: Bearer ${TOKENS.leader}`,
      '-H',
      'Content-Type: text/csv',
      url,
    ],
    { timeoutMs: 30 * 60_000 },
  );
  if (r.code !== 0) throw new Error(`curl -T ${url} failed: ${r.stderr}`);
  return { seconds: r.ms / 1000, status: Number(r.stdout.trim()) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '13000000' },
      runs: { type: 'string', default: '2' },
      seed: { type: 'string', default: String(DEFAULT_SEED) },
    },
  });
  const [rows] = parseCounts('--rows', values.rows);
  const [runs] = parseCounts('--runs', values.runs);
  ensureTool('curl');
  const file = await ensureCsv(rows, Number(values.seed));
  const bytes = await fileBytes(file);
  await warmFile(file);
  log(`upload benchmark: ${rows} rows, ${mb(bytes)} MB, ${runs} runs; ${machineNote()}`);

  const sink = await startSink(await tempDir('upload-sink'));
  const leaderDir = await tempDir('upload-leader');
  const leader = await startTracked('leader', { env: leaderEnv(leaderDir, { KEEP_VERSIONS: '2' }) });
  const state = join(await tempDir('upload-state'), 'uploads.json');

  const results: {
    run: number;
    sink: number;
    tusUpload: number;
    tusWall: number;
    ingest: number;
    put: number;
  }[] = [];
  for (let run = 1; run <= runs; run++) {
    const s = await curlUpload(file, `${sink}/sink`);
    if (s.status !== 201) throw new Error(`the sink answered ${s.status}`);
    log(`run ${run}: curl -T sink ${s.seconds.toFixed(2)} s`);

    const t0 = performance.now();
    const answer = await resumableUpload({
      leader: leader.url,
      token: TOKENS.leader,
      path: file,
      storagePath: state,
    });
    const wall = (performance.now() - t0) / 1000;
    if (answer.status !== 200) throw new Error(`tus upload refused: ${JSON.stringify(answer.body)}`);
    const ingest = (answer.body.durationMs as number) / 1000;
    log(`run ${run}: tus ${wall.toFixed(2)} s wall, of which ingest ${ingest.toFixed(2)} s`);

    const p = await curlUpload(file, `${leader.url}/promotions`);
    if (p.status !== 201) throw new Error(`PUT /promotions answered ${p.status}`);
    log(`run ${run}: curl -T PUT /promotions ${p.seconds.toFixed(2)} s`);
    results.push({ run, sink: s.seconds, tusUpload: wall - ingest, tusWall: wall, ingest, put: p.seconds });
  }

  const rate = (seconds: number) => round(mb(bytes) / seconds, 1);
  printTable(
    ['run', 'curl -T sink MB/s', 'tus upload MB/s', 'ratio', 'tus wall s', 'ingest s', 'curl -T PUT s'],
    results.map((r) => [
      r.run,
      rate(r.sink),
      rate(r.tusUpload),
      round(r.sink / r.tusUpload, 2),
      round(r.tusWall, 2),
      round(r.ingest, 2),
      round(r.put, 2),
    ]),
  );
  const best = results.reduce((a, b) => (b.tusUpload < a.tusUpload ? b : a));
  const bestSink = Math.min(...results.map((r) => r.sink));
  printJson('upload', {
    rows,
    bytes,
    runs: results.map((r) => ({ ...r, sinkMBps: rate(r.sink), tusUploadMBps: rate(r.tusUpload) })),
    bestTusUploadMBps: rate(best.tusUpload),
    bestCurlSinkMBps: rate(bestSink),
    ratioBest: round(bestSink / best.tusUpload, 2),
  });
}

void runBench(main);
