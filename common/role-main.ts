/**
 * What `leader/main.ts` and `replica/main.ts` share: read the config (a malformed setting stops start-up, exit 2,
 * naming the variable), start the role, and on SIGTERM or SIGINT shut it down in order: readiness fails first,
 * then the server stops accepting and lets requests in flight finish (an ingest, a read), then the role releases
 * what it holds and the process exits 0.
 *
 * Concurrency: called once per process, at start.
 */
import { type CommonConfig, ConfigError } from './config.js';
import type { RunningServer } from './http.js';
import { createLogger, type Logger } from './logger.js';

/** A started role, as its shutdown needs it. */
export interface StartedRole {
  readonly server: RunningServer;
  /** Set `draining` on shutdown: /readyz then answers 503. */
  readonly lifecycle: { draining: boolean };
  /** Stops background work at once, when the shutdown begins (optional). */
  readonly onDrain?: () => void;
  /** Releases what the role holds, once the server has closed. */
  readonly release: () => Promise<unknown>;
  /** Work the role goes on with once the signals are handled (optional): awaited last. */
  readonly run?: () => Promise<void>;
}

/** Runs role `name`: its config from `loadConfig`, its parts from `start`. */
export async function runRole<C extends CommonConfig>(
  name: 'leader' | 'replica',
  loadConfig: () => C,
  start: (config: C, logger: Logger) => Promise<StartedRole>,
): Promise<void> {
  let config: C;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, name);
  const role = await start(config, logger);
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    role.lifecycle.draining = true;
    role.onDrain?.();
    role.server
      .close(config.shutdownTimeoutMs)
      .then(() => role.release())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await role.run?.();
}
