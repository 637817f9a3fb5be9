/**
 * scripts/bluegreen.ts against a fake kubectl: a small executable that records each call (one JSON array of
 * arguments per line) and answers canned output by the first rule whose text occurs in its arguments. The script
 * runs as operators run it, in its own process, so exit codes and output are checked as they are seen.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parseCommandLine, parseReportedShard, UsageError } from '../../../scripts/bluegreen.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NS = 'prod';

/** A canned answer: when `when` occurs in the space-joined arguments, print `stdout` (or `stderr`) and exit. */
interface Rule {
  readonly when: string;
  readonly stdout?: unknown;
  readonly stderr?: string;
  readonly code?: number;
}

const FAKE_KUBECTL = `#!/usr/bin/env node
// Fake kubectl for bluegreen.test.ts: records its arguments and answers by the rules in FAKE_KUBECTL_RULES.
const fs = require('node:fs');
const args = process.argv.slice(2);
fs.appendFileSync(process.env.FAKE_KUBECTL_CALLS, JSON.stringify(args) + '\\n');
const rules = JSON.parse(fs.readFileSync(process.env.FAKE_KUBECTL_RULES, 'utf8'));
const rule = rules.find((r) => args.join(' ').includes(r.when));
if (rule === undefined) {
  process.stderr.write('fake kubectl: no rule for ' + args.join(' ') + '\\n');
  process.exit(1);
}
if (rule.stdout !== undefined) process.stdout.write(typeof rule.stdout === 'string' ? rule.stdout : JSON.stringify(rule.stdout));
if (rule.stderr !== undefined) process.stderr.write(rule.stderr);
process.exit(rule.code ?? 0);
`;

function pod(name: string, colour: string, ready: boolean): unknown {
  return {
    metadata: { name, labels: { 'app.kubernetes.io/component': 'replica', colour } },
    status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  };
}

function podList(...pods: unknown[]): unknown {
  return { apiVersion: 'v1', kind: 'List', items: pods };
}

const liveIs = (colour: string): Rule => ({
  when: 'get service replicas',
  stdout: { spec: { selector: { 'app.kubernetes.io/component': 'replica', colour } } },
});
const leaderAt = (version: number): Rule => ({
  when: `/api/v1/namespaces/${NS}/services/leader:http/proxy/snapshots/current`,
  stdout: { version, rows: 1000 },
});
const podServes = (name: string, version: number): Rule => ({
  when: `/api/v1/namespaces/${NS}/pods/${name}:8081/proxy/readyz`,
  stdout: { status: 'ready', version },
});
const patch = { when: 'patch service replicas', stdout: 'service/replicas patched\n' };

describe('scripts/bluegreen.ts', () => {
  let dir = '';
  let fake = '';

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bluegreen-test-'));
    fake = join(dir, 'kubectl');
    writeFileSync(fake, FAKE_KUBECTL);
    chmodSync(fake, 0o755);
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the script with the fake kubectl named by KUBECTL (or found on PATH); returns its exit and output. */
  function run(args: string[], rules: Rule[], via: 'KUBECTL' | 'PATH' = 'KUBECTL') {
    writeFileSync(join(dir, 'rules.json'), JSON.stringify(rules));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      FAKE_KUBECTL_RULES: join(dir, 'rules.json'),
      FAKE_KUBECTL_CALLS: join(dir, 'calls.jsonl'),
    };
    if (via === 'KUBECTL') env.KUBECTL = fake;
    else {
      delete env.KUBECTL;
      env.PATH = `${dir}${delimiter}${process.env.PATH ?? ''}`;
    }
    const res = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bluegreen.ts', ...args], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    const callsFile = join(dir, 'calls.jsonl');
    const calls = existsSync(callsFile)
      ? readFileSync(callsFile, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as string[])
      : [];
    return { code: res.status, stdout: res.stdout, stderr: res.stderr, calls };
  }

  const patched = (calls: string[][]) => calls.filter((c) => c.includes('patch'));

  it('exits 2 with the usage, calling no kubectl, for a command line it cannot understand', () => {
    for (const args of [[], ['switch', 'purple']]) {
      const res = run(args, []);
      expect(res.code, args.join(' ')).to.equal(2);
      expect(res.stderr).to.match(/usage: bluegreen\.ts/);
      expect(res.calls).to.deep.equal([]);
    }
    for (const args of [
      ['launch'],
      ['switch'],
      ['deploy', 'green'],
      ['--bogus', 'status'],
      ['--timeout', 'x'],
      ['--namespace'],
      ['--namespace=', 'status'],
    ]) {
      expect(() => parseCommandLine(args), args.join(' ')).to.throw(UsageError);
    }
    expect(
      parseCommandLine(['--namespace=staging', '--timeout', '30', 'deploy', 'blue', 'img:1']),
    ).to.deep.equal({
      namespace: 'staging',
      timeoutSeconds: 30,
      command: 'deploy',
      colour: 'blue',
      image: 'img:1',
    });
    expect(parseCommandLine(['-n', 'x', 'rollback'])).to.include({ namespace: 'x', command: 'rollback' });
  });

  it('--help prints the usage with every option and exits 0, calling no kubectl', () => {
    const res = run(['--help'], []);
    expect(res.code).to.equal(0);
    for (const word of ['status', 'deploy', 'switch', 'rollback', '--namespace', '--timeout', '--help'])
      expect(res.stdout).to.include(word);
    expect(res.calls).to.deep.equal([]);
  });

  it('status: names the live colour and each colour ready pods and image, through kubectl on PATH', () => {
    const res = run(
      ['--namespace', NS, 'status'],
      [
        liveIs('blue'),
        {
          when: 'get pods',
          stdout: podList(
            pod('replica-blue-a', 'blue', true),
            pod('replica-blue-b', 'blue', true),
            pod('replica-green-a', 'green', true),
            pod('replica-green-b', 'green', false),
          ),
        },
        {
          when: 'get deployments',
          stdout: {
            items: ['blue', 'green'].map((colour) => ({
              metadata: { name: `replica-${colour}` },
              spec: {
                template: { spec: { containers: [{ name: 'replica', image: `promotions:${colour}` }] } },
              },
            })),
          },
        },
      ],
      'PATH',
    );
    expect(res.code, res.stderr).to.equal(0);
    expect(res.stdout).to.include('service replicas selects blue');
    expect(res.stdout).to.include('blue (live): 2/2 pods ready, image promotions:blue');
    expect(res.stdout).to.include('green (idle): 1/2 pods ready, image promotions:green');
    for (const call of res.calls) expect(call.slice(0, 2)).to.deep.equal(['--namespace', NS]);
  });

  it('switch: refuses a colour with a pod that is not ready, without patching', () => {
    const res = run(
      ['-n', NS, 'switch', 'green'],
      [
        liveIs('blue'),
        {
          when: 'get pods',
          stdout: podList(pod('replica-green-a', 'green', true), pod('replica-green-b', 'green', false)),
        },
        leaderAt(7),
        podServes('replica-green-a', 7),
        patch,
      ],
    );
    expect(res.code).to.equal(1);
    expect(res.stderr).to.include('refusing to switch to green');
    expect(res.stderr).to.include('pod replica-green-b is not ready');
    expect(patched(res.calls)).to.deep.equal([]);
  });

  it('switch: refuses a colour that has no pods, or serves an older version than the leader', () => {
    const none = run(
      ['-n', NS, 'switch', 'green'],
      [liveIs('blue'), { when: 'get pods', stdout: podList() }, patch],
    );
    expect(none.code).to.equal(1);
    expect(none.stderr).to.include('green has no pods');
    expect(patched(none.calls)).to.deep.equal([]);

    const old = run(
      ['-n', NS, 'switch', 'green'],
      [
        liveIs('blue'),
        {
          when: 'get pods',
          stdout: podList(pod('replica-green-a', 'green', true), pod('replica-green-b', 'green', true)),
        },
        leaderAt(8),
        podServes('replica-green-a', 8),
        podServes('replica-green-b', 7),
        patch,
      ],
    );
    expect(old.code).to.equal(1);
    expect(old.stderr).to.include("pod replica-green-b serves version 7, the leader's current is 8");
    expect(patched(old.calls)).to.deep.equal([]);
  });

  it('switch: patches the replicas selector when every pod is ready and serves the current version', () => {
    const res = run(
      ['--namespace', NS, 'switch', 'green'],
      [
        liveIs('blue'),
        {
          when: 'get pods',
          stdout: podList(pod('replica-green-a', 'green', true), pod('replica-green-b', 'green', true)),
        },
        leaderAt(7),
        podServes('replica-green-a', 7),
        podServes('replica-green-b', 7),
        patch,
      ],
    );
    expect(res.code, res.stderr).to.equal(0);
    expect(res.stdout).to.include('service replicas now selects green');
    expect(res.calls).to.deep.include([
      'get',
      '--raw',
      `/api/v1/namespaces/${NS}/services/leader:http/proxy/snapshots/current`,
    ]);
    expect(patched(res.calls)).to.deep.equal([
      [
        '--namespace',
        NS,
        'patch',
        'service',
        'replicas',
        '--type',
        'merge',
        '--patch',
        '{"spec":{"selector":{"colour":"green"}}}',
      ],
    ]);
  });

  it('rollback: switches to the colour that is not live, with the same check', () => {
    const rules = (blueReady: boolean) => [
      liveIs('green'),
      { when: 'get pods', stdout: podList(pod('replica-blue-a', 'blue', blueReady)) },
      leaderAt(3),
      podServes('replica-blue-a', 3),
      patch,
    ];
    const refused = run(['-n', NS, 'rollback'], rules(false));
    expect(refused.code).to.equal(1);
    expect(patched(refused.calls)).to.deep.equal([]);
    const done = run(['-n', NS, 'rollback'], rules(true));
    expect(done.code, done.stderr).to.equal(0);
    expect(patched(done.calls).map((c) => c.at(-1))).to.deep.equal([
      '{"spec":{"selector":{"colour":"blue"}}}',
    ]);
  });

  it('deploy: refuses the live colour; on the idle one sets the image, waits for the rollout and the check', () => {
    const live = run(['-n', NS, 'deploy', 'blue', 'promotions:2'], [liveIs('blue')]);
    expect(live.code).to.equal(1);
    expect(live.stderr).to.include('blue is live');
    expect(live.calls.filter((c) => c.includes('set'))).to.deep.equal([]);

    const res = run(
      ['-n', NS, '--timeout', '60', 'deploy', 'green', 'promotions:2'],
      [
        liveIs('blue'),
        { when: 'get deployments', stdout: { items: [{ metadata: { name: 'replica-green' } }] } },
        { when: 'set image deployment/replica-green replica=promotions:2', stdout: '' },
        { when: 'rollout status deployment/replica-green', stdout: 'successfully rolled out\n' },
        { when: 'get pods', stdout: podList(pod('replica-green-a', 'green', true)) },
        leaderAt(4),
        podServes('replica-green-a', 4),
      ],
    );
    expect(res.code, res.stderr).to.equal(0);
    expect(res.calls.map((c) => c.slice(2, 4))).to.deep.include.members([
      ['set', 'image'],
      ['rollout', 'status'],
    ]);
    expect(res.calls.find((c) => c.includes('rollout'))).to.include('--timeout=60s');
    expect(patched(res.calls), 'deploy never switches').to.deep.equal([]);
  });

  it('reports a kubectl failure as a refusal (exit 1) with kubectl error', () => {
    const res = run(
      ['-n', NS, 'switch', 'green'],
      [{ when: 'get service replicas', stderr: 'error: services "replicas" not found\n', code: 1 }],
    );
    expect(res.code).to.equal(1);
    expect(res.stderr).to.include('services "replicas" not found');
  });

  describe('sharded colours (k8s/sharded)', () => {
    const routersLive = (colour: string): Rule => ({
      when: 'get service replicas',
      stdout: { spec: { selector: { 'app.kubernetes.io/component': 'router', colour } } },
    });
    const shardServes = (name: string, version: number, shard: unknown): Rule => ({
      when: `/api/v1/namespaces/${NS}/pods/${name}:8081/proxy/readyz`,
      stdout: { status: 'ready', version, shard },
    });
    const routers = (...ready: boolean[]): Rule => ({
      when: 'component=router,colour=green',
      stdout: podList(...ready.map((r, i) => pod(`router-green-${i}`, 'green', r))),
    });
    const greenPods = (n: number): Rule => ({
      when: 'get pods',
      stdout: podList(...Array.from({ length: n }, (_, i) => pod(`replica-green-${i}`, 'green', true))),
    });

    it('switch: refuses a colour one of whose shards has no pod on the current version', () => {
      const res = run(
        ['-n', NS, 'switch', 'green'],
        [
          routersLive('blue'),
          routers(true),
          greenPods(3),
          leaderAt(5),
          shardServes('replica-green-0', 5, '0/4'),
          shardServes('replica-green-1', 5, { index: 1, count: 4 }),
          shardServes('replica-green-2', 5, '3/4'),
          patch,
        ],
      );
      expect(res.code).to.equal(1);
      expect(res.stderr).to.include('shard 2/4 of green has no ready pod serving version 5');
      expect(res.stderr).to.not.include('shard 3/4');
      expect(patched(res.calls)).to.deep.equal([]);
    });

    it('switch: refuses pods that disagree on S, and a colour whose router is not ready', () => {
      const mixed = run(
        ['-n', NS, 'switch', 'green'],
        [
          routersLive('blue'),
          routers(true),
          greenPods(3),
          leaderAt(5),
          shardServes('replica-green-0', 5, '0/2'),
          shardServes('replica-green-1', 5, '1/2'),
          shardServes('replica-green-2', 5, '1/4'),
          patch,
        ],
      );
      expect(mixed.code).to.equal(1);
      expect(mixed.stderr).to.include("green's pods disagree on the shard count");
      expect(patched(mixed.calls)).to.deep.equal([]);

      const routerDown = run(
        ['-n', NS, 'switch', 'green'],
        [routersLive('blue'), routers(true, false), greenPods(1), patch],
      );
      expect(routerDown.code).to.equal(1);
      expect(routerDown.stderr).to.include('router pod router-green-1 is not ready');
      expect(patched(routerDown.calls)).to.deep.equal([]);
    });

    it('switch: patches the selector when every shard has its pods ready on the current version', () => {
      const res = run(
        ['-n', NS, 'switch', 'green'],
        [
          routersLive('blue'),
          routers(true, true),
          greenPods(4),
          leaderAt(5),
          shardServes('replica-green-0', 5, '0/2'),
          shardServes('replica-green-1', 5, '0/2'),
          shardServes('replica-green-2', 5, '1/2'),
          shardServes('replica-green-3', 5, '1/2'),
          patch,
        ],
      );
      expect(res.code, res.stderr).to.equal(0);
      expect(res.stdout).to.include('service replicas now selects green (4 pods in 2 shards)');
      expect(patched(res.calls).map((c) => c.at(-1))).to.deep.equal([
        '{"spec":{"selector":{"colour":"green"}}}',
      ]);
    });

    it("deploy: sets the image of every shard's Deployment and waits for each rollout", () => {
      const res = run(
        ['-n', NS, 'deploy', 'green', 'promotions:3'],
        [
          routersLive('blue'),
          {
            when: 'get deployments',
            stdout: { items: [0, 1].map((k) => ({ metadata: { name: `replica-green-shard-${k}` } })) },
          },
          { when: 'set image', stdout: '' },
          { when: 'rollout status', stdout: 'successfully rolled out\n' },
          routers(true),
          greenPods(2),
          leaderAt(9),
          shardServes('replica-green-0', 9, '0/2'),
          shardServes('replica-green-1', 9, '1/2'),
        ],
      );
      expect(res.code, res.stderr).to.equal(0);
      expect(res.calls.filter((c) => c.includes('set')).map((c) => c.slice(4))).to.deep.equal([
        ['deployment/replica-green-shard-0', 'replica=promotions:3'],
        ['deployment/replica-green-shard-1', 'replica=promotions:3'],
      ]);
      expect(res.calls.filter((c) => c.includes('rollout')).map((c) => c[4])).to.deep.equal([
        'deployment/replica-green-shard-0',
        'deployment/replica-green-shard-1',
      ]);
      expect(res.stdout).to.include('2 pods ready and current in 2 shards');
    });

    it("status: shows each colour's shards and routers", () => {
      const res = run(
        ['-n', NS, 'status'],
        [
          routersLive('blue'),
          {
            when: 'component=router',
            stdout: podList(pod('router-blue-a', 'blue', true), pod('router-green-a', 'green', false)),
          },
          {
            when: 'get pods',
            stdout: podList(
              pod('replica-blue-shard-0-a', 'blue', true),
              pod('replica-blue-shard-1-a', 'blue', true),
            ),
          },
          {
            when: 'get deployments',
            stdout: {
              items: [0, 1].map((k) => ({
                metadata: { name: `replica-blue-shard-${k}` },
                spec: { template: { spec: { containers: [{ name: 'replica', image: 'promotions:4' }] } } },
              })),
            },
          },
        ],
      );
      expect(res.code, res.stderr).to.equal(0);
      expect(res.stdout).to.include("service replicas selects blue's routers");
      expect(res.stdout).to.include(
        'blue (live): 2/2 pods ready in 2 shards, image promotions:4, routers 1/1 ready',
      );
      expect(res.stdout).to.include('green (idle): 0/0 pods ready, image no deployment, routers 0/1 ready');
    });

    it('reads a shard as "k/S", {index, count} or null, and refuses anything else', () => {
      expect(parseReportedShard('1/4')).to.include({ index: 1, count: 4 });
      expect(parseReportedShard({ index: 0, count: 2 })).to.include({ index: 0, count: 2 });
      expect(parseReportedShard(null)).to.equal(null);
      expect(parseReportedShard(undefined)).to.equal(null);
      for (const bad of ['4/4', '1/3', 'x', { index: -1, count: 2 }, 7])
        expect(parseReportedShard(bad), String(bad)).to.be.a('string');
    });
  });
});
