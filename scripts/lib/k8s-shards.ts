/**
 * The shards transformer of k8s/sharded/ (a kustomize exec plugin: k8s/plugins/promotions/v1/shards/Shards runs
 * scripts/k8s-shards.ts, which calls `shardObjects`). It takes one colour's rendered objects and splits its
 * replicas into S shards: each replica Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget becomes
 * S copies named `...-shard-k`, labelled and selecting `shard: "k"`, the Deployment's container started with
 * `SHARD=k/S`; and it writes the router's shards.conf (the upstream of each shard is that shard's Service) with
 * the same function the loopback router uses (scripts/lib/nginx.ts). S is said once, in the colour's shards.yaml.
 * Pure: objects in, objects out.
 */
import { createHash } from 'node:crypto';
import { MAX_SHARD_BITS, shardsConf } from './nginx.js';

/** A rendered Kubernetes object, as parsed from YAML; fields are checked where they are read. */
// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; kubernetes-models validates the output.
export type K8sObject = Record<string, any>;

const COMPONENT = 'app.kubernetes.io/component';
/** The label that tells shards apart (beside `colour`). */
export const SHARD_LABEL = 'shard';
/** The replica container that gets SHARD. */
const REPLICA_CONTAINER = 'replica';
/** The router pod annotation that changes with shards.conf, so that a new shard layout rolls the routers. */
export const SHARDS_CONF_ANNOTATION = 'promotions/shards-conf-sha256';

/** Reads and checks the transformer's configuration (`spec.count`: S, a power of two from 1 to 64). */
export function shardCount(config: K8sObject): number {
  const count = config?.spec?.count;
  if (!Number.isInteger(count) || count < 1 || count > 2 ** MAX_SHARD_BITS || (count & (count - 1)) !== 0)
    throw new Error(
      `${config?.metadata?.name ?? 'shards'}: spec.count must be a power of two from 1 to ${2 ** MAX_SHARD_BITS}, got ${JSON.stringify(count)}`,
    );
  return count;
}

function withShard(labels: Record<string, string> | undefined, k: number): Record<string, string> {
  return { ...labels, [SHARD_LABEL]: String(k) };
}

/**
 * kustomize's bookkeeping annotations (an object's earlier names, its id): a copy is a new object, and two copies
 * claiming the same history would make kustomize's reference fixing ambiguous.
 */
function isBookkeeping(annotation: string): boolean {
  return (
    annotation.startsWith('internal.config.kubernetes.io/') || annotation === 'kustomize.config.k8s.io/id'
  );
}

function shardCopy(obj: K8sObject, k: number, count: number, deploymentName: string): K8sObject {
  const copy = structuredClone(obj);
  copy.metadata.name = `${obj.metadata.name}-shard-${k}`;
  const annotations = Object.entries((copy.metadata.annotations ?? {}) as Record<string, string>).filter(
    ([key]) => !isBookkeeping(key),
  );
  if (annotations.length > 0) copy.metadata.annotations = Object.fromEntries(annotations);
  else delete copy.metadata.annotations;
  copy.metadata.labels = withShard(copy.metadata.labels, k);
  switch (obj.kind) {
    case 'Deployment': {
      copy.spec.selector.matchLabels = withShard(copy.spec.selector.matchLabels, k);
      const pod = copy.spec.template;
      pod.metadata.labels = withShard(pod.metadata.labels, k);
      for (const c of (pod.spec.topologySpreadConstraints ?? []) as K8sObject[]) {
        if (c.labelSelector?.matchLabels)
          c.labelSelector.matchLabels = withShard(c.labelSelector.matchLabels, k);
      }
      const container = (pod.spec.containers as K8sObject[]).find((c) => c.name === REPLICA_CONTAINER);
      if (container === undefined)
        throw new Error(`Deployment ${obj.metadata.name}: no container "${REPLICA_CONTAINER}"`);
      container.env = [
        { name: 'SHARD', value: `${k}/${count}` },
        ...((container.env ?? []) as K8sObject[]).filter((e) => e.name !== 'SHARD'),
      ];
      break;
    }
    case 'Service':
      copy.spec.selector = withShard(copy.spec.selector, k);
      break;
    case 'HorizontalPodAutoscaler':
      // The reference is not fixed up by kustomize yet (it still holds the base's name): point it at the copy.
      if (copy.spec.scaleTargetRef?.kind !== 'Deployment')
        throw new Error(
          `HorizontalPodAutoscaler ${obj.metadata.name}: scaleTargetRef is not the replica Deployment`,
        );
      copy.spec.scaleTargetRef.name = `${deploymentName}-shard-${k}`;
      break;
    case 'PodDisruptionBudget':
      copy.spec.selector.matchLabels = withShard(copy.spec.selector.matchLabels, k);
      break;
    default:
      throw new Error(
        `${obj.kind} ${obj.metadata.name}: the shards transformer does not know how to shard this kind`,
      );
  }
  return copy;
}

/** The one object of `kind` among `objects`, or an error naming what is missing or ambiguous. */
function single(objects: readonly K8sObject[], kind: string, what: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1)
    throw new Error(`the shards transformer needs exactly one ${what}, found ${found.length}`);
  return found[0];
}

/**
 * Splits the replica objects among `objects` into `count` shards and fills the router's shards.conf. Other
 * objects pass through unchanged (the router's shards ConfigMap and Deployment are filled and annotated).
 */
export function shardObjects(objects: readonly K8sObject[], count: number): K8sObject[] {
  const replicas = objects.filter((o) => o.metadata?.labels?.[COMPONENT] === 'replica');
  const deployment = single(replicas, 'Deployment', 'replica Deployment');
  const service = single(replicas, 'Service', 'replica Service (the shard upstreams are its copies)');
  const port = service.spec.ports?.[0]?.port;
  if (!Number.isInteger(port)) throw new Error(`Service ${service.metadata.name}: no port`);
  const bits = Math.log2(count);
  const conf = shardsConf(
    Array.from({ length: count }, (_, k) => [`${service.metadata.name}-shard-${k}:${port}`]),
    bits,
  );
  const routerConfigs = objects.filter(
    (o) =>
      o.kind === 'ConfigMap' &&
      o.metadata?.labels?.[COMPONENT] === 'router' &&
      o.data?.['shards.conf'] !== undefined,
  );
  if (routerConfigs.length !== 1)
    throw new Error(
      `the shards transformer needs the router's shards ConfigMap (data shards.conf), found ${routerConfigs.length}`,
    );
  const sha = createHash('sha256').update(conf).digest('hex');
  const out: K8sObject[] = [];
  for (const obj of objects) {
    if (replicas.includes(obj)) {
      for (let k = 0; k < count; k++) out.push(shardCopy(obj, k, count, deployment.metadata.name));
    } else if (obj === routerConfigs[0]) {
      out.push({ ...obj, data: { ...obj.data, 'shards.conf': conf } });
    } else if (obj.kind === 'Deployment' && obj.metadata?.labels?.[COMPONENT] === 'router') {
      const copy = structuredClone(obj);
      copy.spec.template.metadata.annotations = {
        ...copy.spec.template.metadata.annotations,
        [SHARDS_CONF_ANNOTATION]: sha,
      };
      out.push(copy);
    } else {
      out.push(obj);
    }
  }
  return out;
}
