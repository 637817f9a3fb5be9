/**
 * Runs the read router, nginx with njs, on loopback: the dev cluster (`npm run start:sharded`), the tests and the
 * benchmarks use it. It runs the production configuration, k8s/router/nginx.conf with k8s/router/shard.js, rewriting
 * only what is machine-specific (module path, listen address, pid, log and temp paths, one worker, no daemon), and
 * writes the shards file (upstreams and shard bits) that Kubernetes gets from k8s/shards/.
 * Every nginx started here runs in the foreground (`daemon off`) as a child of this process, so its pid is the
 * master's and `stop()` always ends it; an nginx left running when this process exits is killed then.
 * Concurrency: each call starts its own nginx in its own directory; nothing is shared between them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { allExist, ensureDebianPackages } from './debian-packages.js';
import { ROOT, waitFor } from './processes.js';

/** The router's files: nginx.conf and shard.js, as deployed (k8s/router/kustomization.yaml). */
export const ROUTER_DIR = join(ROOT, 'k8s', 'router');
/** The most shards the router and the snapshot format support (2^6). */
export const MAX_SHARD_BITS = 6;

const NGINX_BINARY = '/usr/sbin/nginx';
/** Where Debian's libnginx-mod-http-js puts njs's HTTP module. */
const JS_MODULE = '/usr/lib/nginx/modules/ngx_http_js_module.so';
/** The module path in the production configuration (the official nginx image). */
const PRODUCTION_JS_MODULE = '/etc/nginx/modules/ngx_http_js_module.so';

/** Installs Debian's `nginx` and `libnginx-mod-http-js` (njs) when either is missing. */
export function ensureNginx(): Promise<void> {
  return ensureDebianPackages(
    ['nginx', 'libnginx-mod-http-js'],
    [NGINX_BINARY, JS_MODULE],
    'the nginx router',
  );
}

/** Installs Debian's `njs` (the command-line njs, for tests of k8s/router/shard.js) when it is missing. */
export function ensureNjs(): Promise<void> {
  return ensureDebianPackages(['njs'], [NJS_BINARY], 'the njs command-line tool');
}

/** The njs command-line tool's path once `ensureNjs` has run. */
export const NJS_BINARY = '/usr/bin/njs';

/** True when nginx and its njs module are installed (no install attempted). */
export function hasNginx(): Promise<boolean> {
  return allExist([NGINX_BINARY, JS_MODULE]);
}

/** Upstream settings for every shard: keep-alive shorter than the replica's KEEP_ALIVE_TIMEOUT_MS (5 s default). */
export interface UpstreamOptions {
  /** Idle connections kept open per worker, per shard. */
  readonly keepalive?: number;
  /** nginx closes an idle upstream connection after this, before the replica does, so a reused one is never half-closed. */
  readonly keepaliveTimeoutSeconds?: number;
  /** Parameters after each `server` address, e.g. `max_fails=1 fail_timeout=2s`. */
  readonly serverParams?: string;
}

/**
 * The shards file the router includes: `$promotions_shard_bits` and one upstream per shard,
 * `promotions_shard_{k}`, listing that shard's servers. `upstreams[k]` are the `host:port` addresses of shard k.
 */
export function shardsConf(
  upstreams: readonly (readonly string[])[],
  shardBits: number,
  options: UpstreamOptions = {},
): string {
  if (!Number.isInteger(shardBits) || shardBits < 0 || shardBits > MAX_SHARD_BITS)
    throw new Error(`shardBits must be a whole number from 0 to ${MAX_SHARD_BITS}, got ${shardBits}`);
  if (upstreams.length !== 2 ** shardBits)
    throw new Error(
      `${2 ** shardBits} shards need ${2 ** shardBits} upstream lists, got ${upstreams.length}`,
    );
  const lines = [
    `# ${upstreams.length} shard(s): shard k is the ids whose h1 has top ${shardBits} bit(s) equal to k.`,
    `map $host $promotions_shard_bits { default ${shardBits}; }`,
  ];
  for (const [k, servers] of upstreams.entries()) {
    if (servers.length === 0) throw new Error(`shard ${k} has no upstream server`);
    lines.push(`upstream promotions_shard_${k} {`);
    for (const s of servers) {
      if (!/^[A-Za-z0-9.:[\]-]+:\d+$/.test(s)) throw new Error(`shard ${k}: "${s}" is not host:port`);
      lines.push(`  server ${s}${options.serverParams ? ` ${options.serverParams}` : ''};`);
    }
    lines.push(`  keepalive ${options.keepalive ?? 32};`);
    lines.push(`  keepalive_timeout ${options.keepaliveTimeoutSeconds ?? 4}s;`);
    lines.push('}');
  }
  return `${lines.join('\n')}\n`;
}

function quoted(path: string): string {
  if (/["\\$;{}]/.test(path)) throw new Error(`path ${path} has a character nginx.conf cannot hold`);
  return `"${path}"`;
}

/** Replaces `from` (which must occur exactly `count` times, or at least once for 'all') in `text`. */
function replaceIn(text: string, from: string, to: string, count: number | 'all'): string {
  const n = text.split(from).length - 1;
  if (count === 'all' ? n === 0 : n !== count)
    throw new Error(
      `k8s/router/nginx.conf: expected "${from}" ${count === 'all' ? 'at least once' : `${count} time(s)`}, found ${n}`,
    );
  return text.split(from).join(to);
}

/** The production nginx.conf rewritten for loopback: every path inside `dir`, listening on 127.0.0.1:`port`. */
export function loopbackConf(production: string, dir: string, port: number): string {
  let conf = production;
  conf = replaceIn(conf, `load_module ${PRODUCTION_JS_MODULE};`, `load_module ${quoted(JS_MODULE)};`, 1);
  const user = userInfo();
  // As root, nginx would switch its workers to `nobody`, who cannot write into `dir`; as anyone else it keeps the user.
  const header = `daemon off;\n${user.uid === 0 ? `user ${user.username};\n` : ''}worker_processes 1;`;
  conf = replaceIn(conf, 'worker_processes 2;', header, 1);
  conf = replaceIn(conf, 'error_log stderr warn;', `error_log ${quoted(join(dir, 'error.log'))} warn;`, 1);
  conf = replaceIn(
    conf,
    'access_log /dev/stdout promotions;',
    `access_log ${quoted(join(dir, 'access.log'))} promotions;`,
    1,
  );
  conf = replaceIn(conf, 'listen 8080;', `listen 127.0.0.1:${port};`, 1);
  conf = replaceIn(
    conf,
    'include /etc/nginx/shards/shards.conf;',
    `include ${quoted(join(dir, 'shards.conf'))};`,
    1,
  );
  conf = replaceIn(conf, 'js_path /etc/nginx/promotions/;', `js_path ${quoted(`${ROUTER_DIR}/`)};`, 1);
  conf = replaceIn(conf, ' /tmp/', ` ${dir}/`, 'all');
  return conf;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface StartNginxOptions {
  /** A directory for the configuration, pid, logs and temp files (created if missing). */
  readonly dir: string;
  /** Per shard, the `host:port` of its replicas: `upstreams[k]` serve shard k. */
  readonly upstreams: readonly (readonly string[])[];
  /** S = 2^shardBits shards; `upstreams.length` must equal S. */
  readonly shardBits: number;
  /** Upstream settings; loopback defaults retry a dead replica's twin after 1 failure for 2 s. */
  readonly upstream?: UpstreamOptions;
  /** Listen on this 127.0.0.1 port (the dev cluster's fixed address); default: a free port. */
  readonly port?: number;
  /** How long to wait for nginx to answer /healthz. */
  readonly timeoutMs?: number;
}

export interface RunningNginx {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The master process's pid. */
  readonly pid: number;
  /** The access log (one line per request: status, shard, upstream address and status). */
  readonly accessLog: string;
  /** The error log. */
  readonly errorLog: string;
  /** Stops nginx (SIGTERM, SIGKILL after 5 s) and resolves once it has exited. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function readTail(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).slice(-2000);
  } catch {
    return '';
  }
}

/** Starts nginx on a free loopback port with the production router configuration; resolves once /healthz answers. */
export async function startNginx(options: StartNginxOptions): Promise<RunningNginx> {
  await ensureNginx();
  await mkdir(options.dir, { recursive: true });
  const shards = shardsConf(options.upstreams, options.shardBits, {
    serverParams: 'max_fails=1 fail_timeout=2s',
    ...options.upstream,
  });
  await writeFile(join(options.dir, 'shards.conf'), shards);
  const production = await readFile(join(ROUTER_DIR, 'nginx.conf'), 'utf8');
  const errorLog = join(options.dir, 'error.log');
  // A port found free can be taken before nginx binds it; then try another.
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const confPath = join(options.dir, 'nginx.conf');
    await writeFile(confPath, loopbackConf(production, options.dir, port));
    const child = spawn(NGINX_BINARY, ['-e', errorLog, '-p', options.dir, '-c', confPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-4000);
    });
    running.add(child);
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => {
        running.delete(child);
        resolve(code);
      }),
    );
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    };
    const url = `http://127.0.0.1:${port}`;
    const died = exited.then((code) => Promise.reject(new Error(`nginx exited with ${code}`)));
    // Handled here too: once nginx is up, its later exit (by stop()) must not be an unhandled rejection.
    died.catch(() => undefined);
    try {
      await Promise.race([
        waitFor(
          async () => {
            const r = await fetch(`${url}/healthz`);
            await r.arrayBuffer();
            return r.status === 200 ? true : undefined;
          },
          options.timeoutMs ?? 10_000,
          `nginx to answer ${url}/healthz`,
        ),
        died,
      ]);
    } catch (err) {
      await stop();
      const log = `${stderr}${await readTail(errorLog)}`;
      if (attempt < 3 && options.port === undefined && log.includes('Address already in use')) continue;
      throw new Error(`nginx did not start (${(err as Error).message}): ${log.trim()}`);
    }
    if (child.pid === undefined) throw new Error('nginx has no pid');
    return { url, pid: child.pid, accessLog: join(options.dir, 'access.log'), errorLog, stop };
  }
}
