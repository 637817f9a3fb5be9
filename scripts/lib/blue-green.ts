/**
 * The blue/green checks and moves behind scripts/bluegreen.ts: which colour the `replicas` Service selects, whether
 * a colour may take traffic (every replica pod ready and on the leader's current version; when sharded, every shard
 * 0..S-1 covered and the colour's routers ready), and the switch and deploy steps. It talks to the cluster only
 * through a Kubectl runner (scripts/lib/kubectl.ts), so tests give it a fake.
 * Concurrency: one command at a time; every kubectl call is awaited before the next.
 */
import { parseShard, type Shard, shardOf } from '../../common/snapshot/shard.js';
import { type Kubectl, parseJson, Refused } from './kubectl.js';

export const COLOURS = ['blue', 'green'] as const;
export type Colour = (typeof COLOURS)[number];

/** Names shared with k8s/: keep them in step with the manifests. */
const LIVE_SERVICE = 'replicas';
const LEADER_SERVICE = 'leader:http';
const REPLICA_PORT = 8081;
const REPLICA_CONTAINER = 'replica';
const REPLICA_SELECTOR = 'app.kubernetes.io/name=promotions,app.kubernetes.io/component=replica';
const ROUTER_SELECTOR = 'app.kubernetes.io/name=promotions,app.kubernetes.io/component=router';
const POLL_INTERVAL_MS = 5000;

/** The other colour. */
export function otherColour(colour: Colour): Colour {
  return colour === 'blue' ? 'green' : 'blue';
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

function isReady(pod: PodJson): boolean {
  if (pod.metadata.deletionTimestamp !== undefined) return false;
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** A replica's shard: `index` k of `count` S. */
export type ShardOf = Pick<Shard, 'index' | 'count'>;

/** What a replica's /readyz says it serves. */
interface PodServes {
  readonly version: number;
  /** Null for an unsharded replica. */
  readonly shard: ShardOf | null;
}

/**
 * A replica's `shard` as /readyz reports it: null or absent (unsharded), `{index, count}` or `"k/S"`
 * (common/snapshot/shard.ts checks it); a string saying why when it is none of those.
 */
export function parseReportedShard(value: unknown): ShardOf | null | string {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return parseShard(value);
  if (typeof value !== 'object') return `expected {index, count} or "k/S", got ${typeof value}`;
  const { index, count } = value as { index?: unknown; count?: unknown };
  try {
    return shardOf(Number(index), Number(count));
  } catch (err) {
    return (err as Error).message;
  }
}

function describeShard(shard: ShardOf | null): string {
  return shard === null ? 'unsharded' : `${shard.index}/${shard.count}`;
}

/** What the checks found about one colour. */
export interface ColourState {
  readonly colour: Colour;
  readonly pods: number;
  readonly ready: number;
  /** S when the colour's pods are sharded. */
  readonly shards?: number;
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

  /** The `replicas` Service's selector: the live colour, and whether it selects routers (the sharded layout). */
  async live(): Promise<{ colour: Colour; routers: boolean }> {
    const svc = parseJson<{ spec?: { selector?: Record<string, string> } }>(
      await this.ns('get', 'service', LIVE_SERVICE, '--output', 'json'),
      `service ${LIVE_SERVICE}`,
    );
    const colour = svc.spec?.selector?.colour;
    if (!COLOURS.includes(colour as Colour)) {
      throw new Refused(`service ${LIVE_SERVICE} selects colour "${colour ?? ''}", not blue or green`);
    }
    return {
      colour: colour as Colour,
      routers: svc.spec?.selector?.['app.kubernetes.io/component'] === 'router',
    };
  }

  /** The colour the `replicas` Service selects. */
  async liveColour(): Promise<Colour> {
    return (await this.live()).colour;
  }

  async pods(colour?: Colour, selector = REPLICA_SELECTOR): Promise<PodJson[]> {
    const full = colour === undefined ? selector : `${selector},colour=${colour}`;
    const list = parseJson<{ items?: PodJson[] }>(
      await this.ns('get', 'pods', '--selector', full, '--output', 'json'),
      'pod list',
    );
    return list.items ?? [];
  }

  /** The names of the colour's replica Deployments: one, or one per shard. */
  async deployments(colour: Colour): Promise<DeploymentJson[]> {
    const list = parseJson<{ items?: DeploymentJson[] }>(
      await this.ns(
        'get',
        'deployments',
        '--selector',
        `${REPLICA_SELECTOR},colour=${colour}`,
        '--output',
        'json',
      ),
      'deployment list',
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

  /** What one replica pod's /readyz says: the version it serves and its shard, or a reason it serves none. */
  async podState(pod: string): Promise<PodServes | string> {
    let text: string;
    try {
      text = await this.raw(`pods/${pod}:${REPLICA_PORT}/proxy/readyz`);
    } catch (err) {
      return `pod ${pod} answers /readyz with an error (${(err as Error).message.split('\n')[0]})`;
    }
    const body = parseJson<{ version?: unknown; shard?: unknown }>(text, `/readyz of pod ${pod}`);
    if (!Number.isSafeInteger(body.version)) return `pod ${pod} reports no version`;
    const shard = parseReportedShard(body.shard);
    if (typeof shard === 'string') return `pod ${pod} reports shard ${JSON.stringify(body.shard)}: ${shard}`;
    return { version: body.version as number, shard };
  }

  /**
   * Checks that `colour` may take traffic: it has pods, all ready, all serving the leader's current version; when
   * its pods are sharded, they agree on S and every shard 0..S-1 has one; with `routers`, its routers are ready.
   */
  async check(colour: Colour, routers = false): Promise<ColourState> {
    const pods = await this.pods(colour);
    const ready = pods.filter(isReady);
    const problems: string[] = [];
    if (pods.length === 0) problems.push(`${colour} has no pods`);
    for (const pod of pods) {
      if (pod.metadata.deletionTimestamp !== undefined)
        problems.push(`pod ${pod.metadata.name} is terminating`);
      else if (!isReady(pod)) problems.push(`pod ${pod.metadata.name} is not ready`);
    }
    if (routers) {
      const mine = await this.pods(colour, ROUTER_SELECTOR);
      if (mine.length === 0) problems.push(`${colour} has no router pods`);
      for (const pod of mine.filter((p) => !isReady(p)))
        problems.push(`router pod ${pod.metadata.name} is not ready`);
    }
    let shards: number | undefined;
    if (problems.length === 0) {
      const current = await this.leaderVersion();
      const served: { pod: string; shard: ShardOf | null }[] = [];
      for (const pod of ready) {
        const state = await this.podState(pod.metadata.name);
        if (typeof state === 'string') problems.push(state);
        else if (state.version !== current) {
          problems.push(
            `pod ${pod.metadata.name} serves version ${state.version}, the leader's current is ${current}`,
          );
        } else served.push({ pod: pod.metadata.name, shard: state.shard });
      }
      const counts = new Set(served.map((p) => p.shard?.count ?? 1));
      if (counts.size > 1) {
        problems.push(
          `${colour}'s pods disagree on the shard count: ${served.map((p) => `${p.pod} ${describeShard(p.shard)}`).join(', ')}`,
        );
      } else if (problems.length === 0 && served.some((p) => p.shard !== null)) {
        shards = [...counts][0];
        for (let k = 0; k < shards; k++) {
          if (!served.some((p) => p.shard?.index === k))
            problems.push(`shard ${k}/${shards} of ${colour} has no ready pod serving version ${current}`);
        }
      }
    }
    return { colour, pods: pods.length, ready: ready.length, shards, problems };
  }

  /** Prints the live colour and, per colour, its image and ready pods. */
  async status(): Promise<void> {
    const { colour: live, routers } = await this.live();
    const pods = await this.pods();
    const deployments = parseJson<{ items?: DeploymentJson[] }>(
      await this.ns('get', 'deployments', '--selector', REPLICA_SELECTOR, '--output', 'json'),
      'deployment list',
    );
    this.log(
      `namespace ${this.namespace}: service ${LIVE_SERVICE} selects ${live}${routers ? "'s routers" : ''}`,
    );
    const routerPods = routers ? await this.pods(undefined, ROUTER_SELECTOR) : [];
    for (const colour of COLOURS) {
      const mine = pods.filter((p) => p.metadata.labels?.colour === colour);
      const myRouters = routerPods.filter((p) => p.metadata.labels?.colour === colour);
      const own = (deployments.items ?? []).filter(
        (d) =>
          d.metadata.name === `replica-${colour}` || d.metadata.name.startsWith(`replica-${colour}-shard-`),
      );
      const images = [
        ...new Set(
          own.map(
            (d) =>
              d.spec?.template?.spec?.containers?.find((c) => c.name === REPLICA_CONTAINER)?.image ?? '?',
          ),
        ),
      ];
      const shards = own.some((d) => d.metadata.name.includes('-shard-')) ? ` in ${own.length} shards` : '';
      const role = colour === live ? 'live' : 'idle';
      this.log(
        `${colour} (${role}): ${mine.filter(isReady).length}/${mine.length} pods ready${shards}, image ${images.length === 0 ? 'no deployment' : images.join(', ')}${routers ? `, routers ${myRouters.filter(isReady).length}/${myRouters.length} ready` : ''}`,
      );
    }
  }

  /** Points the `replicas` Service at `colour` after the check; refuses (throws Refused) when it fails. */
  async switchTo(colour: Colour): Promise<void> {
    const { colour: live, routers } = await this.live();
    if (live === colour) {
      this.log(`service ${LIVE_SERVICE} already selects ${colour}; nothing to do`);
      return;
    }
    const state = await this.check(colour, routers);
    if (state.problems.length > 0) {
      throw new Refused(`refusing to switch to ${colour}:\n  ${state.problems.join('\n  ')}`);
    }
    const patch = JSON.stringify({ spec: { selector: { colour } } });
    await this.ns('patch', 'service', LIVE_SERVICE, '--type', 'merge', '--patch', patch);
    const shards = state.shards === undefined ? '' : ` in ${state.shards} shards`;
    this.log(
      `service ${LIVE_SERVICE} now selects ${colour} (${state.ready} pods${shards}); it selected ${live}`,
    );
  }

  /** Switches back to the colour that is not live, with the same check. */
  async rollback(): Promise<void> {
    await this.switchTo(otherColour(await this.liveColour()));
  }

  /** Sets the idle colour's image (every shard's Deployment), waits for the rollouts, then until it passes the check. */
  async deploy(
    colour: Colour,
    image: string,
    timeoutSeconds: number,
    intervalMs = POLL_INTERVAL_MS,
  ): Promise<void> {
    const { colour: live, routers } = await this.live();
    if (live === colour) {
      throw new Refused(`${colour} is live; deploy to ${otherColour(colour)}, check it, then switch`);
    }
    const deadline = Date.now() + timeoutSeconds * 1000;
    const names = (await this.deployments(colour)).map((d) => `deployment/${d.metadata.name}`);
    if (names.length === 0) throw new Refused(`${colour} has no replica Deployment`);
    for (const deployment of names) {
      await this.ns('set', 'image', deployment, `${REPLICA_CONTAINER}=${image}`);
      this.log(`${deployment}: image ${image}`);
    }
    for (const deployment of names) {
      this.log(`${deployment}: waiting for the rollout`);
      await this.ns('rollout', 'status', deployment, `--timeout=${timeoutSeconds}s`);
    }
    for (;;) {
      const state = await this.check(colour, routers);
      if (state.problems.length === 0) {
        const shards = state.shards === undefined ? '' : ` in ${state.shards} shards`;
        this.log(`${colour}: ${state.ready} pods ready and current${shards}; switch with: switch ${colour}`);
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
