/**
 * What the dev clusters (scripts/dev.ts, scripts/dev-sharded.ts) start alike: a fresh data directory holding the
 * sample file, and a leader on loopback that tells the given replicas. Each cluster then starts its own replicas
 * with `roleEnv`'s settings.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { generateFile } from '../generate.js';
import { type RoleProcess, startRole } from './processes.js';

/** The tokens a dev cluster's roles share. */
export interface DevTokens {
  readonly leaderToken: string;
  readonly replicaToken: string;
}

/** The settings every role of a dev cluster has. */
export function roleEnv(tokens: DevTokens): Record<string, string> {
  return { HOST: '127.0.0.1', REPLICA_TOKEN: tokens.replicaToken, LOG_LEVEL: 'info' };
}

/** Empties `dir` and writes `rows` sample rows (seed 42, 1% duplicates) to `dir/sample.csv`; returns its path. */
export async function freshSample(dir: string, rows: number): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const csv = join(dir, 'sample.csv');
  await generateFile(csv, { rows, seed: 42, duplicates: 0.01 });
  return csv;
}

/** Starts the leader on `port` with its data in `dir/leader` and its log in `dir/leader.log`. */
export function startDevLeader(
  dir: string,
  port: number,
  tokens: DevTokens,
  replicaUrls: readonly string[],
): Promise<RoleProcess> {
  return startRole('leader', {
    env: {
      ...roleEnv(tokens),
      PORT: String(port),
      DATA_DIR: join(dir, 'leader'),
      LEADER_TOKEN: tokens.leaderToken,
      REPLICAS: replicaUrls.join(','),
    },
    logFile: join(dir, 'leader.log'),
  });
}
