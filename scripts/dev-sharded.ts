/**
 * Runs a sharded cluster locally: a leader, S = 2 shards of 2 replicas each (`SHARD=k/2`, each holding only its
 * shard) and the nginx router in front of them (k8s/router/, the production configuration, on loopback), with a
 * generated sample data set ingested and live; then prints curl lines that go through nginx. Installs Debian's
 * nginx and its njs module first when they are missing (as root). Ctrl-C stops everything.
 *   npm run start:sharded     (leader 8090, replicas 8091..8094, router 8095; DEV_PORT=9000 moves them to 9000..9005)
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { keyHash1 } from '../common/snapshot/key-hash.js';
import { generateLines } from './generate.js';
import { stopOnSignals } from './lib/cleanup.js';
import { freshSample, roleEnv, startDevLeader } from './lib/dev-cluster.js';
import { ensureNginx, type RunningNginx, startNginx } from './lib/nginx.js';
import { ROOT, type RoleProcess, startRole, waitFor } from './lib/processes.js';
import { uploadFile } from './upload.js';

const USAGE = `usage: npm run start:sharded   (node --import tsx scripts/dev-sharded.ts)
  A leader, 2 shards x 2 replicas and the nginx router on 127.0.0.1, with 100,000 sample rows live.
  DEV_PORT=N   ports N (leader), N+1..N+4 (replicas), N+5 (router); default 8090
  --help       this text`;

const SAMPLE_ROWS = 100_000;
const SHARD_BITS = 1;
const SHARDS = 2 ** SHARD_BITS;
const REPLICAS_PER_SHARD = 2;
const dir = join(ROOT, 'data', 'dev-sharded');
const leaderToken = randomBytes(16).toString('hex');
const replicaToken = randomBytes(16).toString('hex');
const started: RoleProcess[] = [];
let router: RunningNginx | undefined;

async function stopAll(): Promise<void> {
  await Promise.all([...started.map((p) => p.stop()), router?.stop()]);
}

/** The shard of `id` among SHARDS, as the router and the replicas compute it. */
function shardOf(id: string): number {
  return keyHash1(id) >>> (32 - SHARD_BITS);
}

async function main(base: number): Promise<void> {
  await ensureNginx();
  const csv = await freshSample(dir, SAMPLE_ROWS);
  // Replica i (0-based) serves shard floor(i / REPLICAS_PER_SHARD).
  const replicas = Array.from({ length: SHARDS * REPLICAS_PER_SHARD }, (_, i) => ({
    shard: Math.floor(i / REPLICAS_PER_SHARD),
    port: base + 1 + i,
    url: `http://127.0.0.1:${base + 1 + i}`,
  }));
  const tokens = { leaderToken, replicaToken };
  const common = roleEnv(tokens);
  const leader = await startDevLeader(
    dir,
    base,
    tokens,
    replicas.map((r) => r.url),
  );
  started.push(leader);
  for (const [i, r] of replicas.entries()) {
    started.push(
      await startRole('replica', {
        env: {
          ...common,
          PORT: String(r.port),
          DATA_DIR: join(dir, `replica-${i + 1}`),
          LEADER_URL: leader.url,
          ADVERTISE_URL: r.url,
          SHARD: `${r.shard}/${SHARDS}`,
          SYNC_INTERVAL_MS: '5000',
        },
        logFile: join(dir, `replica-${i + 1}.log`),
      }),
    );
  }
  router = await startNginx({
    dir: join(dir, 'nginx'),
    port: base + 5,
    shardBits: SHARD_BITS,
    upstreams: Array.from({ length: SHARDS }, (_, k) =>
      replicas.filter((r) => r.shard === k).map((r) => `127.0.0.1:${r.port}`),
    ),
  });
  const { status, body } = await uploadFile(leader.url, leaderToken, csv);
  if (status !== 201) throw new Error(`sample upload refused: ${JSON.stringify(body)}`);
  for (const r of replicas) {
    await waitFor(
      async () => {
        const res = await fetch(`${r.url}/readyz`);
        const b = (await res.json()) as { version?: number };
        return b.version === body.version ? true : undefined;
      },
      30_000,
      `${r.url} to serve version ${body.version}`,
    );
  }
  const ids = [...generateLines({ rows: 50, seed: 42, duplicates: 0.01 })].map((l) => l.split(',')[0]);
  const [id0, id1] = [0, 1].map((k) => ids.find((id) => shardOf(id) === k)!);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say('');
  say(`router   ${router.url}   (nginx, logs in ${join(dir, 'nginx')})`);
  say(`leader   ${leader.url}   (token for writes: ${leaderToken})`);
  for (let k = 0; k < SHARDS; k++) {
    const mine = replicas.filter((r) => r.shard === k).map((r) => r.url);
    say(`shard ${k}/${SHARDS}  ${mine.join('  ')}`);
  }
  say(
    `version ${body.version}: ${body.rows} rows, ${body.duplicates} duplicates, built in ${body.durationMs} ms`,
  );
  say(`logs in ${dir}`);
  say('');
  say('Try (through nginx; X-Promotions-Shard says which shard answered):');
  say(`  curl -i ${router.url}/promotions/${id0}`);
  say(`  curl -i ${router.url}/promotions/${id1}`);
  say(`  curl -i ${router.url}/promotions/00000000-0000-4000-8000-000000000000   # 404`);
  say(
    `  curl -i ${replicas[0].url}/promotions/${id1}   # straight to a shard-0 replica: 421, another shard's id`,
  );
  say(`  curl -s ${replicas[0].url}/readyz   # its shard and rows`);
  say(`  curl -s -H 'Authorization: Bearer ${leaderToken}' ${leader.url}/replicas   # each replica's shard`);
  say(`  LEADER_TOKEN=${leaderToken} node --import tsx scripts/upload.ts FILE.csv --leader ${leader.url}`);
  say('');
  say('Ctrl-C stops everything.');
}

let values: { help?: boolean };
try {
  ({ values } = parseArgs({ options: { help: { type: 'boolean', short: 'h' } } }));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
const base = Number(process.env.DEV_PORT ?? 8090);
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
} else if (!Number.isInteger(base) || base < 1 || base > 65530) {
  process.stderr.write(`DEV_PORT must be a port number from 1 to 65530, got "${process.env.DEV_PORT}"\n`);
  process.exit(2);
} else {
  stopOnSignals(stopAll);
  main(base).catch(async (err) => {
    process.stderr.write(`sharded dev cluster failed: ${(err as Error).message}\n`);
    await stopAll();
    process.exit(1);
  });
}
