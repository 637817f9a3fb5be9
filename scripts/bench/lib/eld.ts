/**
 * A replica's event-loop delay, seen from outside: the replica is started with scripts/bench/eld-probe.ts
 * preloaded, which prints one sample line every 250 ms on its stdout, and the benchmark reads those lines.
 *
 * Concurrency: one benchmark per process; a replica's samples may have several readers at once.
 */
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { ROOT, TS_NODE_ARGS } from '../../lib/processes.js';
import { type ListeningProcess, replicaEnv, spawnListening } from './roles.js';

const PROBE = pathToFileURL(join(ROOT, 'scripts', 'bench', 'eld-probe.ts')).href;

/** One line of eld-probe.ts: the worst and p99 delay of the window that ended at `t` (ms since epoch). */
export interface EldSample {
  readonly t: number;
  readonly maxMs: number;
  readonly p99Ms: number;
}

/**
 * The script `script` (a path under the repository) with `args`, pinned to core `cpu` with `taskset`, run from
 * source (TS_NODE_ARGS: tsx, and disk read workers through ts-workers.cjs), with eld-probe.ts preloaded after tsx
 * (the probe is TypeScript).
 */
export function startProbed(
  cpu: number,
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<ListeningProcess> {
  return spawnListening(
    'taskset',
    ['-c', String(cpu), process.execPath, ...TS_NODE_ARGS, '--import', PROBE, join(ROOT, script), ...args],
    env,
  );
}

/** A replica under `dataDir` following `leaderUrl` (replicaEnv plus `env`), started as `startProbed` starts one. */
export function startProbedReplica(
  cpu: number,
  dataDir: string,
  leaderUrl: string,
  env: Record<string, string>,
): Promise<ListeningProcess> {
  return startProbed(cpu, join('replica', 'main.ts'), [], replicaEnv(dataDir, leaderUrl, env));
}

/** Calls `onSample` with every sample `replica` prints from now on, until the returned function is called. */
export function onEldSamples(replica: ListeningProcess, onSample: (sample: EldSample) => void): () => void {
  const lines = createInterface({ input: replica.child.stdout! });
  lines.on('line', (line) => {
    if (line.includes('"msg":"event-loop-delay"')) onSample(JSON.parse(line) as EldSample);
  });
  return () => lines.close();
}
