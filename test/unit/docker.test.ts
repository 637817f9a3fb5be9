/**
 * Keeps the Dockerfile honest without a Docker engine: a clean build with tsconfig.build.json produces the files
 * the image starts, the entry script maps each role to them (run here against that build), and the image is
 * multi-stage, runs as a non-root user and ships production dependencies only.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { waitFor } from '../helpers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ENTRY_SCRIPT = 'scripts/docker-entrypoint.sh';
const ROLES = ['leader', 'replica'] as const;

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  return text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [op, ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const all = instructions(dockerfile);
  const stages: { op: string; args: string }[][] = [];
  for (const ins of all) {
    if (ins.op === 'FROM') stages.push([]);
    stages.at(-1)?.push(ins);
  }
  const runtime = stages.at(-1) ?? [];
  const startCommand = runtime
    .filter((i) => i.op === 'ENTRYPOINT' || i.op === 'CMD')
    .map((i) => i.args)
    .join(' ');
  let dir = '';

  /** Runs dist/ROLE/main.js from the built layout, with no loader: its URL once it listens, and a kill. */
  function builtRole(role: (typeof ROLES)[number], env: Record<string, string>) {
    const child: ChildProcess = spawn(process.execPath, [join(dir, 'dist', role, 'main.js')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((r) => child.once('exit', r));
    const url = new Promise<string>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the built ${role} exited with ${code}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.includes('"msg":"listening"')) resolve((JSON.parse(line) as { url: string }).url);
      });
    });
    url.catch(() => undefined);
    return {
      url,
      kill: async () => {
        child.kill('SIGKILL');
        await exited;
      },
    };
  }

  before(function () {
    this.timeout(120_000);
    // The image's layout: /app/{package.json, node_modules, dist, scripts/docker-entrypoint.sh}.
    dir = mkdtempSync(join(tmpdir(), 'docker-test-'));
    const tsc = spawnSync(
      join(ROOT, 'node_modules', '.bin', 'tsc'),
      ['-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')],
      { cwd: ROOT, encoding: 'utf8' },
    );
    if (tsc.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed:\n${tsc.stdout}${tsc.stderr}`);
    copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    mkdirSync(join(dir, 'scripts'));
    copyFileSync(join(ROOT, ENTRY_SCRIPT), join(dir, ENTRY_SCRIPT));
  });

  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('builds dist/leader/main.js and dist/replica/main.js, and no tests', () => {
    for (const role of ROLES) expect(existsSync(join(dir, 'dist', role, 'main.js')), role).to.equal(true);
    expect(existsSync(join(dir, 'dist', 'test')), 'test/ stays out of the image').to.equal(false);
  });

  it('starts through the entry script, which names both roles main files', () => {
    expect(startCommand).to.include(ENTRY_SCRIPT);
    expect(runtime.some((i) => i.op === 'COPY' && i.args.includes(ENTRY_SCRIPT))).to.equal(true);
    const script = readFileSync(join(ROOT, ENTRY_SCRIPT), 'utf8');
    for (const role of ROLES) expect(script).to.include(`exec node dist/${role}/main.js`);
  });

  it('maps each role word to its main file in the built layout', function () {
    this.timeout(60_000);
    // Without tokens each role stops at its configuration check, which proves that its main.js loaded and ran.
    const env = { ...process.env, REPLICA_TOKEN: '', LEADER_TOKEN: '' };
    for (const role of ROLES) {
      const res = spawnSync('sh', [join(dir, ENTRY_SCRIPT), role], {
        env,
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(res.stderr, role).to.include(`${role}: REPLICA_TOKEN must be set`);
      expect(res.status, role).to.equal(2);
    }
    const none = spawnSync('sh', [join(dir, ENTRY_SCRIPT)], { encoding: 'utf8' });
    expect(none.status).to.equal(2);
    expect(none.stderr).to.include('usage');
  });

  it('runs the built leader and a disk-mode replica with their workers loaded from dist, with no TypeScript loader', async function () {
    this.timeout(60_000);
    const tokens = {
      LEADER_TOKEN: 'leader-token-for-docker-test',
      REPLICA_TOKEN: 'replica-token-for-docker-test',
    };
    const leader = builtRole('leader', {
      ...tokens,
      DATA_DIR: join(dir, 'data'),
      INBOX_DIR: '',
      INGEST_WORKERS: '2',
      INGEST_WARM_UP_ROWS: '0',
    });
    try {
      const leaderUrl = await leader.url;
      const rows = Array.from({ length: 3000 }, (_, i) => `id-${i},${i}.5,2018-08-04 05:32:31`).join('\n');
      const res = await fetch(`${leaderUrl}/promotions`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${tokens.LEADER_TOKEN}` },
        body: `${rows}\n`,
      });
      // A worker that cannot load would fail the ingest with INGEST_WORKER_FAILED.
      expect(res.status, await res.clone().text()).to.equal(201);
      expect(((await res.json()) as { rows: number }).rows).to.equal(3000);
      // The replica pulls that version at start and serves it from disk: each read goes through a read worker,
      // and one that cannot load answers 500.
      const replica = builtRole('replica', {
        REPLICA_TOKEN: tokens.REPLICA_TOKEN,
        LEADER_URL: leaderUrl,
        DATA_DIR: join(dir, 'replica-data'),
        SERVE_MODE: 'disk',
      });
      try {
        const replicaUrl = await replica.url;
        await waitFor(
          async () => ((await fetch(`${replicaUrl}/readyz`)).status === 200 ? true : undefined),
          30_000,
          'the built replica to be ready',
        );
        const read = await fetch(`${replicaUrl}/promotions/id-42`);
        expect(read.status).to.equal(200);
        expect(await read.json()).to.deep.equal({
          id: 'id-42',
          price: 42.5,
          expiration_date: '2018-08-04 05:32:31',
        });
      } finally {
        await replica.kill();
      }
    } finally {
      await leader.kill();
    }
  });

  it('is multi-stage: builds with dev dependencies, ships production dependencies only', () => {
    expect(stages.length).to.be.at.least(2);
    expect(all.some((i) => i.op === 'RUN' && /\btsc -p tsconfig\.build\.json\b/.test(i.args))).to.equal(true);
    const omitDev = stages.filter((s) =>
      s.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args)),
    );
    expect(omitDev, 'a stage installs with npm ci --omit=dev').to.have.length(1);
    const copies = runtime.filter((i) => i.op === 'COPY' && i.args.includes('node_modules'));
    expect(copies, 'the runtime stage copies node_modules once').to.have.length(1);
    const from = /--from=(\S+)/.exec(copies[0].args)?.[1];
    expect(omitDev[0][0].args, 'node_modules come from the --omit=dev stage').to.match(
      new RegExp(`\\bAS ${from}$`, 'i'),
    );
    expect(runtime[0].args).to.match(/node:20|NODE_IMAGE/);
    expect(dockerfile).to.match(/node:20-(bookworm-)?slim/);
  });

  it('copies into the build stage every folder tsconfig.build.json compiles', () => {
    const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
      include: string[];
    };
    const copied = stages[0].filter((i) => i.op === 'COPY').map((i) => i.args.split(/\s+/)[0]);
    for (const folder of build.include) expect(copied, folder).to.include(folder);
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const needed of [...build.include, 'package.json', 'package-lock.json', 'tsconfig.json']) {
      expect(ignored, `.dockerignore keeps ${needed}`).not.to.include(needed);
    }
  });

  it('runs as a non-root user', () => {
    const users = runtime.filter((i) => i.op === 'USER').map((i) => i.args);
    expect(users, 'the runtime stage sets USER').to.have.length.greaterThan(0);
    const user = users.at(-1)!.split(':')[0];
    expect(user).to.not.be.oneOf(['root', '0']);
    expect(user, 'numeric, so that runAsNonRoot can verify it').to.match(/^\d+$/);
  });
});
