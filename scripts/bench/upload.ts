/**
 * Upload benchmark (issue 4): a generated CSV of about 1 GB sent over loopback by our resumable upload client and
 * by `curl -T`, in the same run, from the same page-cached file.
 *   node --import tsx scripts/bench/upload.ts [--rows 13000000] [--runs 3] [--seed 42] [--warmup-rows 10000]
 *
 * Contenders, in a rotating order in each run, each once the machine has settled: `sync` (so none pays for the
 * writeback of the one before), then a wait until the leader has been idle for QUIET_MS (its work after an ingest:
 * pruning old versions, freeing memory), at most SETTLE_MAX_MS:
 *   curl -T sink   `curl -T FILE` to a bare node:http server that writes the body to a file on the same disk: what
 *                  moving the bytes costs on this machine. The baseline.
 *   ours (tus)     scripts/upload.ts's resumable upload (tus-js-client, the whole file in one PATCH) to the leader's
 *                  /uploads, in this process. The last PATCH answers after the ingest, so the upload time is the
 *                  wall time minus the ingest time the report gives (`durationMs`); the wall time is shown too.
 *   curl -T tus    the same tus upload with curl as the client: POST /uploads, then `curl -T FILE -X PATCH` with
 *                  the tus headers; its upload time likewise excludes the ingest. Same server, another client.
 *   curl -T PUT    `curl -T FILE` to PUT /promotions: the single-shot upload, streamed into the ingest (total time).
 * The leader is warmed up first by one small tus upload (`--warmup-rows`, 0 for none).
 * Ratios: ours MB/s over curl -T sink's (the goal: at least GOAL_RATIO, decision 003's claim that the library
 * costs nothing worth avoiding), and over curl -T tus's. The best (fastest) run of each contender is compared.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { headerUsage, parseCommandLine } from '../lib/cli.js';
import { resumableUpload } from '../upload.js';
import { parseCounts } from './lib/args.js';
import { DEFAULT_SEED, ensureCsv, fileBytes, warmFile } from './lib/data.js';
import { procCpuSeconds } from './lib/proc.js';
import { log, machineNote, mb, printJson, printTable, round, verdict } from './lib/report.js';
import { leaderEnv, startTracked, TOKENS } from './lib/roles.js';
import { onCleanup, runBench, sleep, tempDir } from './lib/run.js';
import { ensureTool, runTool } from './lib/tools.js';

/** Ours over curl -T into a bare sink, MB/s: a cost under 20% is not worth our own protocol (decision 003). */
const GOAL_RATIO = 0.8;
const CURL_TIMEOUT_MS = 30 * 60_000;
/** The leader counts as idle when it used under 2% of a core over this long. */
const QUIET_MS = 500;
const SETTLE_MAX_MS = 20_000;
const CONTENDERS = ['sink', 'ours', 'curlTus', 'put'] as const;
type Contender = (typeof CONTENDERS)[number];

/** A server that writes each request body to `dir/body` (replacing the last) and answers 201 with the count. */
async function startSink(dir: string): Promise<{ url: string; body: string }> {
  const body = join(dir, 'body');
  const server = createServer((req, res) => {
    const out = createWriteStream(body);
    pipeline(req, out).then(
      () => res.writeHead(201, { 'content-type': 'application/json' }).end(`{"bytes":${out.bytesWritten}}`),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sink`, body };
}

/** `curl -T file` with extra arguments; resolves with the seconds it took, the HTTP status and the body. */
async function curlUpload(
  file: string,
  url: string,
  extra: readonly string[] = [],
): Promise<{ seconds: number; status: number; body: Record<string, unknown> }> {
  const r = await runTool(
    'curl',
    [
      '-sS',
      '-w',
      '\n%{http_code}',
      '-T',
      file,
      '-H',
      `Authorization: Bearer ${TOKENS.leader}`,
      ...extra,
      url,
    ],
    { timeoutMs: CURL_TIMEOUT_MS },
  );
  if (r.code !== 0) throw new Error(`curl -T ${url} failed: ${r.stderr}`);
  const cut = r.stdout.lastIndexOf('\n');
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(r.stdout.slice(0, cut)) as Record<string, unknown>;
  } catch {
    body = { raw: r.stdout.slice(0, Math.min(cut, 300)) };
  }
  return { seconds: r.ms / 1000, status: Number(r.stdout.slice(cut + 1).trim()), body };
}

/** The ingest time a report gives, in seconds; throws when the upload was refused. */
function ingestSeconds(what: string, status: number, body: Record<string, unknown>): number {
  if (status !== 200 || typeof body.durationMs !== 'number') {
    throw new Error(`${what} answered ${status}: ${JSON.stringify(body).slice(0, 300)}`);
  }
  return body.durationMs / 1000;
}

/** Seconds for each contender in one run: the upload alone, and for the tus uploads the wall time with ingest. */
interface RunResult {
  run: number;
  order: Contender[];
  sink: number;
  ours: number;
  oursWall: number;
  oursIngest: number;
  curlTus: number;
  curlTusWall: number;
  curlTusIngest: number;
  put: number;
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        rows: { type: 'string', default: '13000000' },
        runs: { type: 'string', default: '3' },
        seed: { type: 'string', default: String(DEFAULT_SEED) },
        'warmup-rows': { type: 'string', default: '10000' },
      },
    },
    headerUsage(import.meta.url),
  );
  const [rows] = parseCounts('--rows', values.rows);
  const [runs] = parseCounts('--runs', values.runs);
  const seed = Number(values.seed);
  const warmupRows = Number(values['warmup-rows']);
  ensureTool('curl');
  const file = await ensureCsv(rows, seed);
  const warmupCsv = warmupRows > 0 ? await ensureCsv(warmupRows, seed + 1) : undefined;
  const bytes = await fileBytes(file);
  await warmFile(file);
  log(`upload benchmark: ${rows} rows, ${mb(bytes)} MB, ${runs} runs; ${machineNote()}`);

  const sink = await startSink(await tempDir('upload-sink'));
  const leader = await startTracked('leader', {
    env: leaderEnv(await tempDir('upload-leader'), { KEEP_VERSIONS: '2' }),
  });
  const state = join(await tempDir('upload-state'), 'uploads.json');
  /** Flushes dirty pages, then waits for the leader to be idle; returns the seconds it waited. */
  const settle = async () => {
    const t0 = performance.now();
    await runTool('sync', [], { timeoutMs: 120_000 });
    while (performance.now() - t0 < SETTLE_MAX_MS) {
      const cpu0 = await procCpuSeconds(leader.child.pid as number);
      await sleep(QUIET_MS);
      if ((await procCpuSeconds(leader.child.pid as number)) - cpu0 < (0.02 * QUIET_MS) / 1000) break;
    }
    return (performance.now() - t0) / 1000;
  };

  /** Our client: resolves with the wall seconds and the ingest seconds. */
  const ours = async (path: string) => {
    const t0 = performance.now();
    const answer = await resumableUpload({
      leader: leader.url,
      token: TOKENS.leader,
      path,
      storagePath: state,
    });
    const wall = (performance.now() - t0) / 1000;
    return { wall, ingest: ingestSeconds('the tus upload', answer.status, answer.body) };
  };
  /** curl as the tus client: the creation POST, then the whole file in one PATCH. */
  const curlTus = async (path: string, size: number) => {
    const t0 = performance.now();
    const created = await fetch(`${leader.url}/uploads`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${TOKENS.leader}`,
        'tus-resumable': '1.0.0',
        'upload-length': String(size),
      },
    });
    await created.arrayBuffer();
    if (created.status !== 201) throw new Error(`POST /uploads answered ${created.status}`);
    const url = new URL(created.headers.get('location') ?? '', leader.url).href;
    const r = await curlUpload(path, url, [
      '-X',
      'PATCH',
      '-H',
      'Tus-Resumable: 1.0.0',
      '-H',
      'Upload-Offset: 0',
      '-H',
      'Content-Type: application/offset+octet-stream',
    ]);
    const wall = (performance.now() - t0) / 1000;
    return { wall, ingest: ingestSeconds('curl -T tus', r.status, r.body) };
  };

  if (warmupCsv !== undefined) {
    log(`warm-up: a tus upload of ${warmupRows} rows`);
    await ours(warmupCsv);
  }

  const results: RunResult[] = [];
  for (let run = 1; run <= runs; run++) {
    const order = CONTENDERS.map((_, i) => CONTENDERS[(i + run - 1) % CONTENDERS.length]);
    const r: RunResult = {
      run,
      order,
      sink: 0,
      ours: 0,
      oursWall: 0,
      oursIngest: 0,
      curlTus: 0,
      curlTusWall: 0,
      curlTusIngest: 0,
      put: 0,
    };
    for (const contender of order) {
      const waited = await settle();
      if (waited > SETTLE_MAX_MS / 1000)
        log(`run ${run}: the leader was still busy after ${waited.toFixed(1)} s`);
      if (contender === 'sink') {
        const s = await curlUpload(file, sink.url, ['-H', 'Content-Type: text/csv']);
        if (s.status !== 201) throw new Error(`the sink answered ${s.status}`);
        r.sink = s.seconds;
        await rm(sink.body, { force: true });
        log(`run ${run}: curl -T sink ${s.seconds.toFixed(2)} s`);
      } else if (contender === 'ours') {
        const o = await ours(file);
        [r.ours, r.oursWall, r.oursIngest] = [o.wall - o.ingest, o.wall, o.ingest];
        log(`run ${run}: ours ${o.wall.toFixed(2)} s wall, of which ingest ${o.ingest.toFixed(2)} s`);
      } else if (contender === 'curlTus') {
        const c = await curlTus(file, bytes);
        [r.curlTus, r.curlTusWall, r.curlTusIngest] = [c.wall - c.ingest, c.wall, c.ingest];
        log(`run ${run}: curl -T tus ${c.wall.toFixed(2)} s wall, of which ingest ${c.ingest.toFixed(2)} s`);
      } else {
        const p = await curlUpload(file, `${leader.url}/promotions`, ['-H', 'Content-Type: text/csv']);
        if (p.status !== 201) throw new Error(`PUT /promotions answered ${p.status}`);
        r.put = p.seconds;
        log(`run ${run}: curl -T PUT /promotions ${p.seconds.toFixed(2)} s (upload and ingest)`);
      }
    }
    results.push(r);
  }

  const rate = (seconds: number) => round(mb(bytes) / seconds, 1);
  process.stdout.write(`\nupload benchmark, ${new Date().toISOString()}, ${machineNote()}\n`);
  process.stdout.write(`${rows} rows, ${bytes} bytes (${mb(bytes)} MB), over loopback\n\n`);
  printTable(
    [
      'run',
      'curl -T sink MB/s',
      'ours MB/s',
      'curl -T tus MB/s',
      'ours/sink',
      'ours/curl tus',
      'ours wall s',
      'ingest s',
      'curl -T PUT s',
    ],
    results.map((r) => [
      r.run,
      rate(r.sink),
      rate(r.ours),
      rate(r.curlTus),
      round(r.sink / r.ours, 2),
      round(r.curlTus / r.ours, 2),
      round(r.oursWall, 2),
      round(r.oursIngest, 2),
      round(r.put, 2),
    ]),
  );
  const best = (pick: (r: RunResult) => number) => Math.min(...results.map(pick));
  const bestSink = best((r) => r.sink);
  const bestOurs = best((r) => r.ours);
  const bestCurlTus = best((r) => r.curlTus);
  const ratioSink = round(bestSink / bestOurs, 2);
  const goal = verdict(bestSink / bestOurs >= GOAL_RATIO);
  process.stdout.write(
    `\nbest runs: ours ${rate(bestOurs)} MB/s, curl -T sink ${rate(bestSink)} MB/s, ` +
      `curl -T tus ${rate(bestCurlTus)} MB/s; ours/curl -T sink ${ratioSink} ` +
      `(goal >= ${GOAL_RATIO}: ${goal}), ours/curl -T tus ${round(bestCurlTus / bestOurs, 2)}\n`,
  );
  printJson('upload', {
    rows,
    bytes,
    warmupRows,
    runs: results.map((r) => ({
      ...r,
      sinkMBps: rate(r.sink),
      oursMBps: rate(r.ours),
      curlTusMBps: rate(r.curlTus),
    })),
    best: { oursMBps: rate(bestOurs), curlSinkMBps: rate(bestSink), curlTusMBps: rate(bestCurlTus) },
    ratios: { oursOverCurlSink: ratioSink, oursOverCurlTus: round(bestCurlTus / bestOurs, 2) },
    goals: { oursOverCurlSink: goal },
  });
}

void runBench(main);
