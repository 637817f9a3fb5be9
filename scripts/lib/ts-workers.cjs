/**
 * Runs the TypeScript sources in worker threads too, when the project runs from source (`node --import tsx
 * --require ./scripts/lib/ts-workers.cjs ...`; built code under dist/ needs none of this).
 *
 * Node 20 does not apply `--import` loaders to worker threads, and tsx registers itself in the main thread only,
 * so a worker started from a .ts file fails with ERR_UNKNOWN_FILE_EXTENSION. Node does run `--require` preloads in
 * every worker: this one registers tsx's ESM loader there, synchronously, before the worker's own script loads.
 * The production code knows nothing of it: leader/parse-pool.ts and common/snapshot/read-pool.ts start their
 * workers from the file beside them with their own extension.
 */
const { isMainThread, parentPort } = require('node:worker_threads');
const { dirname, join } = require('node:path');

// The main thread has tsx from --import. A worker without a parentPort is Node's own loader-hooks thread, which
// must not register hooks in itself.
if (!isMainThread && parentPort !== null) {
  const pkgPath = require.resolve('tsx/package.json', { paths: [process.cwd(), __dirname] });
  // The ESM build of tsx's API, found through tsx's own exports map (its CommonJS build cannot register here).
  const api = require(pkgPath).exports['./esm/api'].import.default;
  require(join(dirname(pkgPath), api)).register();
}
