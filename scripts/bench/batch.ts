/**
 * Batch benchmark (issue 12, DESIGN's "batch lookups" goal): ids per second through batch lookups of 10, 100 and
 * 1000 random ids, in JSON and MessagePack, against single GETs of the same ids, one replica in memory mode, same
 * run; and the CPU per answer of HEAD and of 304 (If-None-Match) against a plain GET 200.
 *   node --import tsx scripts/bench/batch.ts [--rows 1000000] [--seed 42] [--sizes 10,100,1000]
 *                                            [--connections 50] [--duration-s 5] [--warmup-s 2] [--rounds 2]
 *                                            [--ids 100000] [--help]
 *
 * The replica runs as `taskset -c 0 node ...`, wrk as `taskset -c 1 wrk` with Lua scripts: single reads pick a
 * random id of a sample of existing ids; a batch is `POST /promotions:batchGet` with `--sizes` random ids of that
 * sample (256 precomputed bodies per size, picked at random), `Accept: application/json` or
 * `application/msgpack`; the GET form (`/promotions?id=..`) is measured where its URL fits the head limit. The
 * kinds of load alternate, `--rounds` times each, and the median run of each is reported (every figure, CPU per
 * request too, the median over the rounds). The MessagePack/JSON body size ratio is the mean over 50 batches of 100.
 * HEAD, 304 (If-None-Match with the id's current ETag) and GET 200 of the same 2000 ids go through raw-load.ts
 * (wrk hangs on HEAD answers), from this process pinned to wrk's core; their replica CPU per request is compared.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCommandLine } from '../lib/cli.js';
import { dataFlags, loadFlags, parseCounts, parseDataFlags, parseLoadFlags } from './lib/args.js';
import { DEFAULT_SEED, ensureCsv, sampleIds } from './lib/data.js';
import { pinProcess, procCpuSeconds } from './lib/proc.js';
import { log, machineNote, printJson, printTable, round, verdict } from './lib/report.js';
import { runBench, tempDir } from './lib/run.js';
import { ensureTool } from './lib/tools.js';
import { WRK_DONE, wrkRandomIdsScript } from './lib/wrk-script.js';
import { rawLoad } from './raw-load.js';
import {
  type LoadSettings,
  measuredReplica,
  median,
  medianRun,
  SERVER_CPU,
  WRK_CPU,
  type WrkRun,
  wrk,
} from './wrk.js';

const GOAL_BATCH_100 = 5;
/** Connections of the raw-load client (HEAD, 304, GET 200). */
const RAW_CONNECTIONS = 16;
/** A GET batch's URL must fit MAX_HEADER_BYTES (16 KiB by default) with its other headers: 100 UUIDs take ~4 KB. */
const GET_FORM_MAX_IDS = 300;

const HELP = `usage: node --import tsx scripts/bench/batch.ts [options]
  --rows N          rows of the generated data set (default 1000000)
  --seed N          data seed (default ${DEFAULT_SEED})
  --sizes A,B,..    batch sizes (default 10,100,1000)
  --connections N   wrk connections (default 50)
  --duration-s N    seconds per measured run (default 5)
  --warmup-s N      seconds of warm-up per kind of load (default 2)
  --rounds N        alternating rounds of every kind of load (default 2)
  --ids N           existing ids sampled for the requests (default 100000)
`;

/** A Lua script whose requests are batches of `size` random ids of the file at `idsPath`. */
function wrkBatchScript(idsPath: string, size: number, form: 'post' | 'get', accept: string): string {
  return `
local ids_path = ${JSON.stringify(idsPath)}
local size = ${size}
local reqs = {}
local count = 256

function init(args)
  local ids = {}
  local n = 0
  for line in io.lines(ids_path) do
    n = n + 1
    ids[n] = line
  end
  math.randomseed(42)
  for k = 1, count do
    local parts = {}
    for i = 1, size do
      ${form === 'post' ? `parts[i] = '"' .. ids[math.random(n)] .. '"'` : `parts[i] = 'id=' .. ids[math.random(n)]`}
    end
    ${
      form === 'post'
        ? `reqs[k] = wrk.format("POST", "/promotions:batchGet", { ["Content-Type"] = "application/json", ["Accept"] = ${JSON.stringify(accept)} }, '{"ids":[' .. table.concat(parts, ',') .. ']}')`
        : `reqs[k] = wrk.format("GET", "/promotions?" .. table.concat(parts, '&'), { ["Accept"] = ${JSON.stringify(accept)} })`
    }
  end
end

function request()
  return reqs[math.random(count)]
end
${WRK_DONE}`;
}

interface Kind {
  readonly name: string;
  /** Ids answered per request. */
  readonly ids: number;
  readonly script: string;
  readonly format?: 'json' | 'msgpack';
  readonly size?: number;
}

async function main(): Promise<void> {
  const { values } = parseCommandLine(
    {
      options: {
        ...dataFlags(1_000_000),
        sizes: { type: 'string', default: '10,100,1000' },
        ...loadFlags({ durationS: 5, warmupS: 2, rounds: 2, ids: 100_000 }),
      },
    },
    HELP,
  );
  const { rows, seed } = parseDataFlags(values);
  const sizes = parseCounts('--sizes', values.sizes);
  const { connections, seconds, warmupS, rounds, idCount } = parseLoadFlags(values);
  // The body-size comparison sends 50 batches of 100 distinct ids of the sample.
  if (idCount < 5000) throw new Error('--ids must be at least 5000 (50 batches of 100 distinct ids)');
  const load: LoadSettings = { threads: 1, connections };
  ensureTool('wrk');
  ensureTool('taskset', 'util-linux');

  const csv = await ensureCsv(rows, seed);
  const dir = await tempDir('batch');
  const { replica } = await measuredReplica(csv, dir);

  const ids = await sampleIds(csv, idCount, rows);
  const idsPath = join(dir, 'ids.txt');
  await writeFile(idsPath, `${ids.join('\n')}\n`);
  // Each of the first 2000 ids with its current ETag, for the HEAD and 304 loads.
  const pairs: string[] = [];
  for (const id of ids.slice(0, 2000)) {
    const res = await fetch(`${replica.url}/promotions/${id}`, { method: 'HEAD' });
    pairs.push(`${id}\t${res.headers.get('etag')}`);
  }
  const pairsPath = join(dir, 'pairs.txt');
  await writeFile(pairsPath, `${pairs.join('\n')}\n`);

  // Body sizes: the same 50 batches of 100 in both encodings.
  let jsonBytes = 0;
  let msgpackBytes = 0;
  for (let b = 0; b < 50; b++) {
    const body = JSON.stringify({ ids: ids.slice(b * 100, b * 100 + 100) });
    for (const accept of ['application/json', 'application/msgpack']) {
      const res = await fetch(`${replica.url}/promotions:batchGet`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept },
        body,
      });
      const n = (await res.arrayBuffer()).byteLength;
      if (res.status !== 200) throw new Error(`a batch answered ${res.status}`);
      if (accept === 'application/json') jsonBytes += n;
      else msgpackBytes += n;
    }
  }

  const scripts: Kind[] = [];
  const add = async (kind: Omit<Kind, 'script'>, text: string) => {
    const path = join(dir, `${kind.name.replace(/[^a-z0-9]+/gi, '-')}.lua`);
    await writeFile(path, text);
    scripts.push({ ...kind, script: path });
  };
  await add({ name: 'single GET', ids: 1 }, wrkRandomIdsScript(idsPath));
  for (const size of sizes) {
    for (const format of ['json', 'msgpack'] as const) {
      const accept = format === 'json' ? 'application/json' : 'application/msgpack';
      await add(
        { name: `POST batch ${size}, ${format}`, ids: size, format, size },
        wrkBatchScript(idsPath, size, 'post', accept),
      );
    }
    if (size <= GET_FORM_MAX_IDS) {
      await add(
        { name: `GET batch ${size}, json`, ids: size, format: 'json', size },
        wrkBatchScript(idsPath, size, 'get', 'application/json'),
      );
    }
  }

  log(`replica ${replica.url}; ${scripts.length} kinds of load, ${rounds} rounds of ${seconds} s`);
  if (warmupS > 0) for (const k of scripts) await wrk(k.name, replica, k.script, warmupS, load);
  const runs = new Map<string, WrkRun[]>(scripts.map((k) => [k.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const k of scripts) {
      const run = await wrk(k.name, replica, k.script, seconds, load);
      runs.get(k.name)?.push(run);
      log(`  ${k.name} #${r + 1}: ${run.requestsPerS} req/s, ${round(run.requestsPerS * k.ids)} ids/s`);
    }
  }
  // HEAD and 304 against GET 200: wrk hangs on HEAD answers (it waits for their Content-Length bytes), so these
  // three use raw-load.ts, one client for all three, from this process pinned to wrk's core.
  await pinProcess(process.pid, WRK_CPU);
  const port = Number(new URL(replica.url).port);
  const pairList = pairs.map((line) => line.split('\t'));
  const raw = [
    {
      name: 'GET 200',
      head: false,
      status: 200,
      reqs: pairList.map(([id]) => `GET /promotions/${id} HTTP/1.1\r\nHost: x\r\n\r\n`),
    },
    {
      name: 'HEAD 200',
      head: true,
      status: 200,
      reqs: pairList.map(([id]) => `HEAD /promotions/${id} HTTP/1.1\r\nHost: x\r\n\r\n`),
    },
    {
      // The same request as the 304's, with a tag that does not match: the cost of the answer, not of the header.
      name: 'GET 200, If-None-Match',
      head: false,
      status: 200,
      reqs: pairList.map(
        ([id]) => `GET /promotions/${id} HTTP/1.1\r\nHost: x\r\nIf-None-Match: "0000000000000000"\r\n\r\n`,
      ),
    },
    {
      name: 'GET 304',
      head: false,
      status: 304,
      reqs: pairList.map(
        ([id, etag]) => `GET /promotions/${id} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\n\r\n`,
      ),
    },
  ];
  const rawCpu = new Map<string, number[]>(raw.map((k) => [k.name, []]));
  const rawRate = new Map<string, number[]>(raw.map((k) => [k.name, []]));
  for (const k of raw) await rawLoad(port, k.reqs, RAW_CONNECTIONS, warmupS || 1, k.head, k.status);
  for (let r = 0; r < rounds; r++) {
    for (const k of raw) {
      const cpu0 = await procCpuSeconds(replica.pid);
      const run = await rawLoad(port, k.reqs, RAW_CONNECTIONS, seconds, k.head, k.status);
      const cpuUs = (((await procCpuSeconds(replica.pid)) - cpu0) * 1e6) / run.requests;
      if (run.unexpected > 0) throw new Error(`${k.name}: ${run.unexpected} answers had another status`);
      rawCpu.get(k.name)?.push(round(cpuUs, 2));
      rawRate.get(k.name)?.push(round(run.requests / run.durationS));
      log(
        `  ${k.name} #${r + 1}: ${round(run.requests / run.durationS)} req/s, ${round(cpuUs, 2)} us CPU/req`,
      );
    }
  }
  await replica.stop();

  const single = medianRun(runs.get('single GET') as WrkRun[]);
  const singleIdsPerS = single.requestsPerS;
  const cpuOf = (name: string) =>
    round(median((runs.get(name) as WrkRun[]).map((x) => x.serverCpuUsPerRequest)), 2);
  const rowsOut = scripts.map((k) => {
    const all = runs.get(k.name) as WrkRun[];
    const b = medianRun(all);
    const idsPerS = round(b.requestsPerS * k.ids);
    return {
      kind: k.name,
      requestsPerS: b.requestsPerS,
      idsPerS,
      ratio: round(idsPerS / singleIdsPerS, 2),
      p99Ms: round(b.latencyUs.p99 / 1000, 2),
      non2xx: b.non2xx,
      cpuUsPerRequest: cpuOf(k.name),
      cpuUsPerId: round(cpuOf(k.name) / k.ids, 3),
      all: all.map((x) => x.requestsPerS),
    };
  });
  const batch100 = rowsOut.find((r) => r.kind === 'POST batch 100, json');
  const batch100Msgpack = rowsOut.find((r) => r.kind === 'POST batch 100, msgpack');
  const sizeRatio = round(msgpackBytes / jsonBytes, 3);
  const rawMedian = (name: string) => round(median(rawCpu.get(name) as number[]), 2);
  const getCpu = rawMedian('GET 200');
  const headRatio = round(rawMedian('HEAD 200') / getCpu, 3);
  const notModifiedRatio = round(rawMedian('GET 304') / rawMedian('GET 200, If-None-Match'), 3);

  process.stdout.write(
    `\nBatch benchmark, ${new Date().toISOString()}, ${machineNote()}\n` +
      `wrk -t1 -c${load.connections} -d${seconds}s on core ${WRK_CPU}, replica (memory mode) on core ${SERVER_CPU}, ` +
      `${ids.length} random existing ids of ${rows} rows; median of ${rounds} alternating runs (every figure the median over its runs)\n\n`,
  );
  printTable(
    [
      'load',
      'req/s',
      'ids/s',
      'x single GET',
      'p99 ms',
      'non-2xx',
      'CPU us/req',
      'CPU us/id',
      'all runs req/s',
    ],
    rowsOut.map((r) => [
      r.kind,
      r.requestsPerS,
      r.idsPerS,
      r.ratio,
      r.p99Ms,
      r.non2xx,
      r.cpuUsPerRequest,
      r.cpuUsPerId,
      r.all.join(' / '),
    ]),
  );
  process.stdout.write(
    `\nHEAD and 304 against GET 200 (raw-load.ts, ${RAW_CONNECTIONS} connections, 8 pipelined each, the same 2000 ids):\n`,
  );
  printTable(
    ['request', 'req/s (client-bound)', 'CPU us/req (median)', 'all runs CPU us/req'],
    raw.map((k) => [
      k.name,
      Math.max(...(rawRate.get(k.name) as number[])),
      rawMedian(k.name),
      (rawCpu.get(k.name) as number[]).join(' / '),
    ]),
  );
  process.stdout.write('\n');
  printTable(
    ['figure', 'value', 'goal', 'result'],
    [
      [
        'batch 100 (JSON) ids/s over single GET ids/s',
        batch100?.ratio ?? '-',
        `>= ${GOAL_BATCH_100}`,
        verdict((batch100?.ratio ?? 0) >= GOAL_BATCH_100),
      ],
      [
        'batch 100 (MessagePack) ids/s over single GET',
        batch100Msgpack?.ratio ?? '-',
        `>= ${GOAL_BATCH_100}`,
        verdict((batch100Msgpack?.ratio ?? 0) >= GOAL_BATCH_100),
      ],
      ['MessagePack/JSON body bytes (batches of 100)', sizeRatio, '< 1', verdict(sizeRatio < 1)],
      ['HEAD CPU/req over GET 200 CPU/req', headRatio, '<= 1', verdict(headRatio <= 1.05)],
      [
        '304 CPU/req over GET 200 with the same If-None-Match length',
        notModifiedRatio,
        '<= 1',
        verdict(notModifiedRatio <= 1.05),
      ],
    ],
  );
  process.stdout.write(
    '(HEAD and 304 pass within 5%: two loads of equal cost differ by that much run to run)\n',
  );
  printJson('batch', {
    rows,
    seed,
    load: { ...load, durationS: seconds, warmupS, rounds, ids: ids.length, sizes },
    results: rowsOut,
    headAnd304: raw.map((k) => ({
      request: k.name,
      cpuUsPerRequest: rawCpu.get(k.name),
      requestsPerS: rawRate.get(k.name),
    })),
    bodyBytes: { json: jsonBytes, msgpack: msgpackBytes, ratio: sizeRatio, batches: 50, size: 100 },
    ratios: {
      batch100: batch100?.ratio,
      batch100Msgpack: batch100Msgpack?.ratio,
      head: headRatio,
      notModified: notModifiedRatio,
    },
  });
}

await runBench(main);
