/** Starts a replica from the environment; SIGTERM or SIGINT stops it gracefully. */
import { ConfigError, loadReplicaConfig } from '../common/config.js';
import { createLogger } from '../common/logger.js';
import { createReplicaApp, listenReplica } from './app.js';
import { LiveIndex } from './live-index.js';
import { Syncer } from './sync.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadReplicaConfig>;
  try {
    config = loadReplicaConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`replica: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, 'replica');
  const index = new LiveIndex();
  const syncer = new Syncer(config, index, logger);
  const lifecycle = { draining: false };
  const app = createReplicaApp({ config, logger, index, syncer, lifecycle });
  // The local version is verified and loaded before the port opens: the first request a restarted replica answers
  // comes from it (200), not a 503 while it loads. A large file delays listening by its verification.
  await syncer.openLocal();
  const server = await listenReplica(app, config.host, config.port, config);
  syncer.advertiseUrl = config.advertiseUrl || server.url;
  logger.info(
    { port: server.port, url: server.url, leader: config.leaderUrl, serveMode: config.serveMode },
    'listening',
  );
  const stop = (signal: string) => {
    // Readiness fails first, then the server stops accepting and lets in-flight reads finish.
    logger.info({ signal }, 'shutting down');
    lifecycle.draining = true;
    syncer.stop();
    server
      .close(config.shutdownTimeoutMs)
      .then(() => index.current?.snapshot.close())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await syncer.start();
}

void main();
