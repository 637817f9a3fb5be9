/**
 * Blue/green switch for the replicas in Kubernetes (k8s/, docs/operating.md). The `replicas` Service selects the
 * live colour; this script moves that selector only after checking that every pod of the other colour is ready
 * and serves the leader's current version.
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] status
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] [--timeout SECONDS] deploy <blue|green> <image>
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] switch <blue|green>
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] rollback
 * Exit codes: 0 done, 1 refused or failed (the reason is printed), 2 usage.
 * It talks to the cluster only through `kubectl` (or the binary named by KUBECTL), with the caller's kubeconfig;
 * pods and the leader are reached through the API server's proxy (`kubectl get --raw`), so no port-forward.
 */
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const COLOURS = ['blue', 'green'] as const;
export type Colour = (typeof COLOURS)[number];

/** Names shared with k8s/: keep them in step with the manifests. */
const LIVE_SERVICE = 'replicas';
const LEADER_SERVICE = 'leader:http';
const REPLICA_PORT = 8081;
const REPLICA_CONTAINER = 'replica';
const REPLICA_SELECTOR = 'app.kubernetes.io/name=promotions,app.kubernetes.io/component=replica';
const POLL_INTERVAL_MS = 5000;

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;

const USAGE = `usage: bluegreen.ts [--namespace NS] [--timeout SECONDS] <command>
  status                      the live colour and each colour's ready pods
  deploy <colour> <image>     set the idle colour's image, wait until it is ready and serves the current version
  switch <colour>             point the replicas Service at <colour> (refused unless it is ready and current)
  rollback                    switch back to the other colour, with the same check
colours: blue, green; namespace defaults to promotions; timeout (deploy) defaults to 900 seconds`;

/** A refusal or failure with a message for the operator (exit 1). */
export class Refused extends Error {}

/** A command line that cannot be understood (exit 2). */
export class UsageError extends Error {}

/** What the command line asks for. */
export interface Options {
  readonly namespace: string;
  readonly timeoutSeconds: number;
  readonly command: 'status' | 'deploy' | 'switch' | 'rollback';
  readonly colour?: Colour;
  readonly image?: string;
}

function colourArg(value: string | undefined): Colour {
  if (!COLOURS.includes(value as Colour))
    throw new UsageError(`colour must be blue or green, got "${value ?? ''}"`);
  return value as Colour;
}

/** Parses the arguments after the script's name; throws UsageError. */
export function parseArgs(argv: readonly string[]): Options {
  let namespace = 'promotions';
  let timeoutSeconds = 900;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    if (flag === '--namespace' || flag === '-n' || flag === '--timeout') {
      const value = inline ?? argv[++i];
      if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
      if (flag === '--timeout') {
        if (!/^\d+$/.test(value) || Number(value) < 1)
          throw new UsageError('--timeout must be whole seconds');
        timeoutSeconds = Number(value);
      } else {
        namespace = value;
      }
    } else if (arg.startsWith('-')) {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      rest.push(arg);
    }
  }
  const [command, ...args] = rest;
  const expect = (n: number) => {
    if (args.length !== n) throw new UsageError(`${command} takes ${n} argument${n === 1 ? '' : 's'}`);
  };
  switch (command) {
    case 'status':
    case 'rollback':
      expect(0);
      return { namespace, timeoutSeconds, command };
    case 'switch':
      expect(1);
      return { namespace, timeoutSeconds, command, colour: colourArg(args[0]) };
    case 'deploy':
      expect(2);
      if (args[1] === '') throw new UsageError('deploy needs an image');
      return { namespace, timeoutSeconds, command, colour: colourArg(args[0]), image: args[1] };
    default:
      throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`);
  }
}

/** The other colour. */
export function otherColour(colour: Colour): Colour {
  return colour === 'blue' ? 'green' : 'blue';
}

/** Runs kubectl with `args`; resolves its stdout, or throws Refused with its stderr. */
export type Kubectl = (args: readonly string[]) => Promise<string>;

/** The kubectl on PATH, or the binary named by the KUBECTL environment variable. */
export function systemKubectl(binary = process.env.KUBECTL || 'kubectl'): Kubectl {
  return (args) =>
    new Promise((resolve, reject) => {
      execFile(binary, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          const why = stderr.trim() || err.message;
          reject(new Refused(`kubectl ${args.join(' ')} failed: ${why}`));
        } else {
          resolve(stdout);
        }
      });
    });
}

/** The fields of kubectl's JSON this script reads. */
interface PodJson {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status?: { conditions?: { type: string; status: string }[] };
}
interface DeploymentJson {
  metadata: { name: string };
  spec?: { template?: { spec?: { containers?: { name: string; image?: string }[] } } };
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Refused(`${what} is not JSON: ${text.slice(0, 200)}`);
  }
}

function isReady(pod: PodJson): boolean {
  if (pod.metadata.deletionTimestamp !== undefined) return false;
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** What the checks found about one colour. */
export interface ColourState {
  readonly colour: Colour;
  readonly pods: number;
  readonly ready: number;
  /** Why this colour must not take traffic; empty when it may. */
  readonly problems: string[];
}

/** Talks to one namespace through kubectl. */
export class BlueGreen {
  constructor(
    private readonly kubectl: Kubectl,
    private readonly namespace: string,
    private readonly log: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {}

  private ns(...args: string[]): Promise<string> {
    return this.kubectl(['--namespace', this.namespace, ...args]);
  }

  private raw(path: string): Promise<string> {
    return this.kubectl(['get', '--raw', `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/${path}`]);
  }

  /** The colour the `replicas` Service selects. */
  async liveColour(): Promise<Colour> {
    const svc = parseJson<{ spec?: { selector?: Record<string, string> } }>(
      await this.ns('get', 'service', LIVE_SERVICE, '--output', 'json'),
      `service ${LIVE_SERVICE}`,
    );
    const colour = svc.spec?.selector?.colour;
    if (!COLOURS.includes(colour as Colour)) {
      throw new Refused(`service ${LIVE_SERVICE} selects colour "${colour ?? ''}", not blue or green`);
    }
    return colour as Colour;
  }

  async pods(colour?: Colour): Promise<PodJson[]> {
    const selector = colour === undefined ? REPLICA_SELECTOR : `${REPLICA_SELECTOR},colour=${colour}`;
    const list = parseJson<{ items?: PodJson[] }>(
      await this.ns('get', 'pods', '--selector', selector, '--output', 'json'),
      'pod list',
    );
    return list.items ?? [];
  }

  /** The version the leader publishes as current. */
  async leaderVersion(): Promise<number> {
    const body = parseJson<{ version?: unknown }>(
      await this.raw(`services/${LEADER_SERVICE}/proxy/snapshots/current`),
      "the leader's current snapshot",
    );
    if (!Number.isSafeInteger(body.version))
      throw new Refused('the leader answered without a current version');
    return body.version as number;
  }

  /** The version one replica pod serves, or a reason it serves none. */
  async podVersion(pod: string): Promise<number | string> {
    let text: string;
    try {
      text = await this.raw(`pods/${pod}:${REPLICA_PORT}/proxy/readyz`);
    } catch (err) {
      return `pod ${pod} answers /readyz with an error (${(err as Error).message.split('\n')[0]})`;
    }
    const body = parseJson<{ version?: unknown }>(text, `/readyz of pod ${pod}`);
    return Number.isSafeInteger(body.version) ? (body.version as number) : `pod ${pod} reports no version`;
  }

  /** Checks that `colour` may take traffic: it has pods, all ready, all serving the leader's current version. */
  async check(colour: Colour): Promise<ColourState> {
    const pods = await this.pods(colour);
    const ready = pods.filter(isReady);
    const problems: string[] = [];
    if (pods.length === 0) problems.push(`${colour} has no pods`);
    for (const pod of pods) {
      if (pod.metadata.deletionTimestamp !== undefined)
        problems.push(`pod ${pod.metadata.name} is terminating`);
      else if (!isReady(pod)) problems.push(`pod ${pod.metadata.name} is not ready`);
    }
    if (problems.length === 0) {
      const current = await this.leaderVersion();
      for (const pod of ready) {
        const served = await this.podVersion(pod.metadata.name);
        if (typeof served === 'string') problems.push(served);
        else if (served !== current) {
          problems.push(
            `pod ${pod.metadata.name} serves version ${served}, the leader's current is ${current}`,
          );
        }
      }
    }
    return { colour, pods: pods.length, ready: ready.length, problems };
  }

  /** Prints the live colour and, per colour, its image and ready pods. */
  async status(): Promise<void> {
    const live = await this.liveColour();
    const pods = await this.pods();
    const deployments = parseJson<{ items?: DeploymentJson[] }>(
      await this.ns('get', 'deployments', '--selector', REPLICA_SELECTOR, '--output', 'json'),
      'deployment list',
    );
    this.log(`namespace ${this.namespace}: service ${LIVE_SERVICE} selects ${live}`);
    for (const colour of COLOURS) {
      const mine = pods.filter((p) => p.metadata.labels?.colour === colour);
      const deployment = (deployments.items ?? []).find((d) => d.metadata.name === `replica-${colour}`);
      const image =
        deployment?.spec?.template?.spec?.containers?.find((c) => c.name === REPLICA_CONTAINER)?.image ??
        'no deployment';
      const role = colour === live ? 'live' : 'idle';
      this.log(
        `${colour} (${role}): ${mine.filter(isReady).length}/${mine.length} pods ready, image ${image}`,
      );
    }
  }

  /** Points the `replicas` Service at `colour` after the check; refuses (throws Refused) when it fails. */
  async switchTo(colour: Colour): Promise<void> {
    const live = await this.liveColour();
    if (live === colour) {
      this.log(`service ${LIVE_SERVICE} already selects ${colour}; nothing to do`);
      return;
    }
    const state = await this.check(colour);
    if (state.problems.length > 0) {
      throw new Refused(`refusing to switch to ${colour}:\n  ${state.problems.join('\n  ')}`);
    }
    const patch = JSON.stringify({ spec: { selector: { colour } } });
    await this.ns('patch', 'service', LIVE_SERVICE, '--type', 'merge', '--patch', patch);
    this.log(`service ${LIVE_SERVICE} now selects ${colour} (${state.ready} pods); it selected ${live}`);
  }

  /** Switches back to the colour that is not live, with the same check. */
  async rollback(): Promise<void> {
    await this.switchTo(otherColour(await this.liveColour()));
  }

  /** Sets the idle colour's image, waits for the rollout, then until the colour passes the check. */
  async deploy(
    colour: Colour,
    image: string,
    timeoutSeconds: number,
    intervalMs = POLL_INTERVAL_MS,
  ): Promise<void> {
    if ((await this.liveColour()) === colour) {
      throw new Refused(`${colour} is live; deploy to ${otherColour(colour)}, check it, then switch`);
    }
    const deadline = Date.now() + timeoutSeconds * 1000;
    const deployment = `deployment/replica-${colour}`;
    await this.ns('set', 'image', deployment, `${REPLICA_CONTAINER}=${image}`);
    this.log(`${deployment}: image ${image}; waiting for the rollout`);
    await this.ns('rollout', 'status', deployment, `--timeout=${timeoutSeconds}s`);
    for (;;) {
      const state = await this.check(colour);
      if (state.problems.length === 0) {
        this.log(`${colour}: ${state.ready} pods ready and current; switch with: switch ${colour}`);
        return;
      }
      if (Date.now() + intervalMs > deadline) {
        throw new Refused(`${colour} is not ready in time:\n  ${state.problems.join('\n  ')}`);
      }
      this.log(`${colour}: waiting (${state.problems[0]})`);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}

/** Runs one command line; resolves the exit code. Messages go to stdout, refusals and usage to stderr. */
export async function run(argv: readonly string[], kubectl: Kubectl = systemKubectl()): Promise<number> {
  let options: Options;
  try {
    options = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bluegreen: ${err.message}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  const bg = new BlueGreen(kubectl, options.namespace);
  try {
    if (options.command === 'status') await bg.status();
    else if (options.command === 'switch') await bg.switchTo(options.colour!);
    else if (options.command === 'rollback') await bg.rollback();
    else await bg.deploy(options.colour!, options.image!, options.timeoutSeconds);
    return EXIT_OK;
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    process.stderr.write(`bluegreen: ${err.message}\n`);
    return EXIT_REFUSED;
  }
}

// Run only as a script, not when imported.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bluegreen: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = EXIT_REFUSED;
    },
  );
}
