/**
 * Runs the service locally: a leader and two replicas on loopback, with a generated sample data set ingested and
 * live, then prints curl lines that work. Ctrl-C stops all three.
 *   npm start            (ports 8080, 8081, 8082; DEV_PORT=9000 moves them to 9000..9002)
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { generateLines } from './generate.js';
import { Cleanup, stopOnSignals } from './lib/cleanup.js';
import { headerUsage, parseCommandLine } from './lib/cli.js';
import { freshSample, roleEnv, startDevLeader } from './lib/dev-cluster.js';
import { ROOT, startRole, waitFor } from './lib/processes.js';
import { uploadFile } from './upload.js';

parseCommandLine({ options: {} }, headerUsage(import.meta.url));

const SAMPLE_ROWS = 100_000;
const base = Number(process.env.DEV_PORT ?? 8080);
const dir = join(ROOT, 'data', 'dev');
const leaderToken = randomBytes(16).toString('hex');
const replicaToken = randomBytes(16).toString('hex');
/** The processes started, stopped newest first (the replicas, then the leader). */
const started = new Cleanup((err) => process.stderr.write(`stopping: ${err.message}\n`));

function stopAll(): Promise<void> {
  return started.run();
}

async function main(): Promise<void> {
  const csv = await freshSample(dir, SAMPLE_ROWS);
  const replicaUrls = [1, 2].map((i) => `http://127.0.0.1:${base + i}`);
  const tokens = { leaderToken, replicaToken };
  const common = roleEnv(tokens);
  const leader = await startDevLeader(dir, base, tokens, replicaUrls);
  started.add(() => leader.stop());
  for (const [i, url] of replicaUrls.entries()) {
    const replica = await startRole('replica', {
      env: {
        ...common,
        PORT: String(base + i + 1),
        DATA_DIR: join(dir, `replica-${i + 1}`),
        LEADER_URL: leader.url,
        ADVERTISE_URL: url,
        SYNC_INTERVAL_MS: '5000',
      },
      logFile: join(dir, `replica-${i + 1}.log`),
    });
    started.add(() => replica.stop());
  }
  const { status, body } = await uploadFile(leader.url, leaderToken, csv);
  if (status !== 201) throw new Error(`sample upload refused: ${JSON.stringify(body)}`);
  for (const url of replicaUrls) {
    await waitFor(
      async () => {
        const r = await fetch(`${url}/readyz`);
        const b = (await r.json()) as { version?: number };
        return b.version === body.version ? true : undefined;
      },
      30_000,
      `${url} to serve version ${body.version}`,
    );
  }
  const ids = [...generateLines({ rows: 2, seed: 42, duplicates: 0.01 })].map((l) => l.split(',')[0]);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say('');
  say(`leader   ${leader.url}   (token for writes: ${leaderToken})`);
  say(`replicas ${replicaUrls.join('  ')}`);
  say(
    `version ${body.version}: ${body.rows} rows, ${body.duplicates} duplicates, built in ${body.durationMs} ms`,
  );
  say(`logs in ${dir}`);
  say('');
  say('Try:');
  say(`  curl -i ${replicaUrls[0]}/promotions/${ids[0]}`);
  say(`  curl -i ${replicaUrls[1]}/promotions/${ids[1]}`);
  say(`  curl -i ${replicaUrls[0]}/promotions/00000000-0000-4000-8000-000000000000   # 404`);
  say(`  curl -s -H 'Authorization: Bearer ${leaderToken}' ${leader.url}/snapshots`);
  say(`  curl -s -H 'Authorization: Bearer ${leaderToken}' ${leader.url}/replicas`);
  say(`  LEADER_TOKEN=${leaderToken} node --import tsx scripts/upload.ts FILE.csv --leader ${leader.url}`);
  // Copy under a name the inbox ignores, then rename: the inbox never sees a half-copied file (docs/api.md).
  const inbox = join(dir, 'leader', 'inbox');
  say(
    `  cp FILE.csv ${inbox}/FILE.csv.part && mv ${inbox}/FILE.csv.part ${inbox}/FILE.csv   # then see inbox/done or inbox/rejected`,
  );
  say('');
  say('Ctrl-C stops all three.');
}

stopOnSignals(stopAll);

main().catch(async (err) => {
  process.stderr.write(`dev cluster failed: ${(err as Error).message}\n`);
  await stopAll();
  process.exit(1);
});
