/** Starts a leader from the environment; SIGTERM or SIGINT stops it gracefully. */
import { ConfigError, loadLeaderConfig } from '../common/config.js';
import { listen } from '../common/http.js';
import { createLogger } from '../common/logger.js';
import { createLeader } from './leader.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadLeaderConfig>;
  try {
    config = loadLeaderConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`leader: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, 'leader');
  const leader = await createLeader(config, logger);
  const server = await listen(leader.app.callback(), config.host, config.port, config);
  logger.info(
    { port: server.port, url: server.url, current: leader.store.current()?.version ?? null },
    'listening',
  );
  const stop = (signal: string) => {
    // Readiness fails first, then the server stops accepting and lets requests in flight (an ingest) finish.
    logger.info({ signal }, 'shutting down');
    leader.lifecycle.draining = true;
    server
      .close(config.shutdownTimeoutMs)
      .then(() => leader.close())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

void main();
