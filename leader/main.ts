/** Starts a leader from the environment; SIGTERM or SIGINT stops it gracefully (common/role-main.ts). */
import { loadLeaderConfig } from '../common/config.js';
import { listen } from '../common/http.js';
import { runRole } from '../common/role-main.js';
import { createLeader } from './leader.js';

void runRole('leader', loadLeaderConfig, async (config, logger) => {
  const leader = await createLeader(config, logger);
  const server = await listen(leader.app.callback(), config.host, config.port, config);
  logger.info(
    { port: server.port, url: server.url, current: leader.store.current()?.version ?? null },
    'listening',
  );
  return { server, lifecycle: leader.lifecycle, release: () => leader.close() };
});
