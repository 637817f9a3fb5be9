/** Starts a replica from the environment; SIGTERM or SIGINT stops it gracefully (common/role-main.ts). */
import { loadReplicaConfig } from '../common/config.js';
import { runRole } from '../common/role-main.js';
import { createReplicaApp, listenReplica } from './app.js';
import { LiveIndex } from './live-index.js';
import { Syncer } from './sync.js';

void runRole('replica', loadReplicaConfig, async (config, logger) => {
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
  return {
    server,
    lifecycle,
    onDrain: () => syncer.stop(),
    release: async () => index.current?.snapshot.close(),
    run: () => syncer.start(),
  };
});
