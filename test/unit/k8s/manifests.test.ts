/**
 * Keeps k8s/ deployable without a cluster. Renders each layout with `kubectl kustomize` (offline; kubectl with its
 * kustomize is on every machine of this project's kind): the unsharded default (k8s/), the sharded layout
 * (k8s/sharded/, whose shards transformer is a kustomize exec plugin) and the monitoring objects (k8s/monitoring/).
 * Validates every core object against the Kubernetes schemas (kubernetes-models) and the prometheus-operator's
 * ServiceMonitor and PrometheusRule against the models generated from its published CRD schemas
 * (@kubernetes-models/prometheus-operator), plus a strict check that they use no field outside the ones listed
 * here (those models do not reject unknown fields). Then checks the contracts: probes, colours, the live selector,
 * shards (one Deployment, Service, autoscaler and budget per shard and colour, SHARD=k/S, a router whose upstreams
 * are exactly the shard Services), autoscaling and disruption budgets, non-root read-only pods, tokens from the
 * Secret, settings that common/config.ts accepts, scraping and alerts on metrics the roles export, and the Grafana
 * dashboard's metric names.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { expect } from 'chai';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { parse, parseAllDocuments } from 'yaml';
import { loadLeaderConfig, loadReplicaConfig } from '../../../common/config.js';
import { shardsConf } from '../../../scripts/lib/nginx.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const K8S = join(ROOT, 'k8s');
const COLOURS = ['blue', 'green'] as const;

/** A rendered Kubernetes object, as parsed from YAML; fields are checked where they are read. */
// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the schema validation below types them.
type K8sObject = Record<string, any>;

/** Kinds k8s/ may contain, each with the model class that validates it. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};
const CLUSTER_SCOPED = new Set(['Namespace']);

function parseYamlDocuments(text: string, where: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors[0].message}`);
      return doc.toJS() as K8sObject | null;
    })
    .filter((obj): obj is K8sObject => obj !== null);
}

/** `kubectl kustomize DIR`; the sharded layout also needs its exec plugin (k8s/plugins) enabled. */
function kustomize(dir: string, plugins = false): K8sObject[] {
  const args = plugins ? ['kustomize', '--enable-alpha-plugins', dir] : ['kustomize', dir];
  const out = execFileSync('kubectl', args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, ...(plugins ? { KUSTOMIZE_PLUGIN_HOME: join(K8S, 'plugins') } : {}) },
  });
  return parseYamlDocuments(out, `kubectl kustomize ${dir}`);
}

function keyOf(obj: K8sObject): string {
  return `${obj.kind}/${obj.metadata?.namespace ?? ''}/${obj.metadata?.name}`;
}

function validate(obj: K8sObject): void {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (Model === undefined)
    throw new Error(`${keyOf(obj)}: no schema model for ${obj.apiVersion} ${obj.kind}`);
  new Model(structuredClone(obj) as never).validate();
}

/** Rendered once in `before`, so that a rendering error fails a hook with its message, not the test run. */
let rendered: K8sObject[] = [];

function findIn(objects: K8sObject[], kind: string, name: string): K8sObject {
  const obj = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (obj === undefined) throw new Error(`no ${kind} ${name} rendered`);
  return obj;
}

function find(kind: string, name: string): K8sObject {
  return findIn(rendered, kind, name);
}

function workloadsOf(objects: K8sObject[]): K8sObject[] {
  return objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
}

/** The leader's and the replicas' workloads (the router runs nginx, checked on its own). */
function nodeWorkloads(objects: K8sObject[]): K8sObject[] {
  return workloadsOf(objects).filter((w) => w.metadata.labels['app.kubernetes.io/component'] !== 'router');
}

function containerOf(workload: K8sObject): K8sObject {
  const containers = workload.spec.template.spec.containers as K8sObject[];
  expect(containers, `${keyOf(workload)} containers`).to.have.length(1);
  return containers[0];
}

/** True when every key/value of `selector` is among `labels`. */
function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The workloads whose pods `selector` selects. */
function selectedWorkloads(objects: K8sObject[], selector: Record<string, string>): string[] {
  return workloadsOf(objects)
    .filter((w) => selects(selector, w.spec.template.metadata.labels))
    .map((w) => w.metadata.name);
}

/** The environment a container would start with; secrets and the pod IP get stand-in values. */
function containerEnv(objects: K8sObject[], container: K8sObject): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of (container.envFrom ?? []) as K8sObject[]) {
    Object.assign(env, findIn(objects, 'ConfigMap', from.configMapRef.name).data);
  }
  for (const e of (container.env ?? []) as K8sObject[]) {
    if (e.valueFrom?.secretKeyRef !== undefined) env[e.name] = `stand-in-${e.name}-0123456789`;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'status.podIP') env[e.name] = '10.1.2.3';
    else
      env[e.name] = String(e.value).replace(/\$\((\w+)\)/g, (_, name: string) => env[name] ?? `$(${name})`);
  }
  return env;
}

/** Checks the settings of every leader and replica container against common/config.ts. */
function checkSettings(objects: K8sObject[]): void {
  const known = new Set(readFileSync(join(ROOT, 'common', 'config.ts'), 'utf8').match(/'[A-Z][A-Z0-9_]+'/g));
  for (const w of nodeWorkloads(objects)) {
    const env = containerEnv(objects, containerOf(w));
    for (const name of Object.keys(env)) {
      if (name !== 'POD_IP')
        expect(known.has(`'${name}'`), `${keyOf(w)}: ${name} is a setting`).to.equal(true);
    }
    const config = w.kind === 'StatefulSet' ? loadLeaderConfig(env) : loadReplicaConfig(env);
    expect(config.host, `${keyOf(w)} listens on all interfaces`).to.equal('0.0.0.0');
    const containerPorts = (containerOf(w).ports as K8sObject[]).map((p) => p.containerPort);
    expect(containerPorts, keyOf(w)).to.deep.equal([config.port]);
    if (config.role === 'replica') expect(config.advertiseUrl).to.equal(`http://10.1.2.3:${config.port}`);
    else expect(config.replicas, 'replicas register themselves').to.deep.equal([]);
  }
}

/** Every pod non-root on a read-only root filesystem; leader and replicas keep DATA_DIR on a volume. */
function checkPodSecurity(objects: K8sObject[]): void {
  for (const w of workloadsOf(objects)) {
    const pod = w.spec.template.spec;
    const c = containerOf(w);
    expect(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, keyOf(w)).to.equal(true);
    expect(pod.securityContext?.runAsUser ?? c.securityContext?.runAsUser, keyOf(w)).to.be.greaterThan(0);
    expect(c.securityContext.readOnlyRootFilesystem, keyOf(w)).to.equal(true);
    expect(c.securityContext.allowPrivilegeEscalation, keyOf(w)).to.equal(false);
    if (w.metadata.labels['app.kubernetes.io/component'] === 'router') continue;
    const dataDir = containerEnv(objects, c).DATA_DIR;
    const mount = (c.volumeMounts as K8sObject[]).find((m) => m.mountPath === dataDir);
    expect(mount, `${keyOf(w)} mounts a volume at DATA_DIR`).to.not.equal(undefined);
    if (w.kind === 'StatefulSet') {
      const claims = (w.spec.volumeClaimTemplates as K8sObject[]).map((t) => t.metadata.name);
      expect(claims, 'the leader keeps its snapshots on a persistent volume').to.include(mount!.name);
    } else {
      const volume = (pod.volumes as K8sObject[]).find((v) => v.name === mount!.name);
      expect(volume?.emptyDir, `${keyOf(w)} pulls snapshots into an emptyDir`).to.not.equal(undefined);
    }
  }
}

/** Namespaced, unique, and valid against the schemas. */
function checkObjects(objects: K8sObject[]): void {
  expect(objects.length).to.be.greaterThan(10);
  for (const obj of objects) {
    if (!CLUSTER_SCOPED.has(obj.kind)) expect(obj.metadata.namespace, keyOf(obj)).to.equal('promotions');
    expect(() => validate(obj), keyOf(obj)).not.to.throw();
  }
  const keys = objects.map(keyOf);
  expect(new Set(keys).size, 'object names are unique').to.equal(keys.length);
}

describe('k8s manifests: the unsharded default (k8s/)', () => {
  before(() => {
    rendered = kustomize(K8S);
  });

  it('render namespaced, unique objects that validate against the Kubernetes schemas', () => {
    checkObjects(rendered);
  });

  it('fail validation when a field has the wrong shape', () => {
    const broken = structuredClone(find('Deployment', 'replica-blue'));
    containerOf(broken).readinessProbe.httpGet.port = { name: 'http' };
    expect(() => validate(broken)).to.throw(/readinessProbe\/httpGet\/port/);
    const noImage = structuredClone(find('StatefulSet', 'leader'));
    noImage.spec.template.spec.containers = 'leader';
    expect(() => validate(noImage)).to.throw(/containers/);
  });

  it('run replicas as two colours, blue and green, identical but for the colour', () => {
    for (const colour of ['blue', 'green']) {
      const d = find('Deployment', `replica-${colour}`);
      expect(d.spec.selector.matchLabels.colour).to.equal(colour);
      expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels)).to.equal(true);
      expect(containerOf(d).args).to.deep.equal(['replica']);
      expect(d.spec.replicas, 'the HPA owns the replica count').to.equal(undefined);
    }
    const colourOf = (colour: string) =>
      rendered.filter((o) => o.metadata.labels?.colour === colour).map((o) => JSON.stringify(o));
    expect(colourOf('green')).to.deep.equal(colourOf('blue').map((s) => s.replaceAll('blue', 'green')));
  });

  it('probe every pod: ready on /readyz, alive on /healthz, with a start-up budget for a large load', () => {
    for (const w of workloadsOf(rendered)) {
      const c = containerOf(w);
      const ports = (c.ports as K8sObject[]).map((p) => p.name);
      expect(c.readinessProbe.httpGet.path, keyOf(w)).to.equal('/readyz');
      expect(c.livenessProbe.httpGet.path, keyOf(w)).to.equal('/healthz');
      expect(c.startupProbe.httpGet.path, keyOf(w)).to.equal('/healthz');
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        expect(ports, `${keyOf(w)} probe port`).to.include(probe.httpGet.port);
      }
    }
    for (const colour of ['blue', 'green']) {
      const { startupProbe } = containerOf(find('Deployment', `replica-${colour}`));
      expect(startupProbe.periodSeconds * startupProbe.failureThreshold).to.be.at.least(300);
    }
  });

  it('route traffic to the live colour through `replicas`, with a preview Service per colour', () => {
    const live = find('Service', 'replicas');
    expect(live.spec.selector.colour).to.be.oneOf(['blue', 'green']);
    const selected = rendered.filter(
      (o) => o.kind === 'Deployment' && selects(live.spec.selector, o.spec.template.metadata.labels),
    );
    expect(selected.map((d) => d.metadata.name)).to.deep.equal([`replica-${live.spec.selector.colour}`]);
    for (const colour of ['blue', 'green']) {
      const preview = find('Service', `replicas-${colour}`);
      const pods = find('Deployment', `replica-${colour}`).spec.template.metadata.labels;
      expect(selects(preview.spec.selector, pods)).to.equal(true);
      expect(preview.spec.ports[0].targetPort).to.equal('http');
    }
    const headless = find('Service', 'replicas-headless');
    expect(headless.spec.clusterIP).to.equal('None');
    expect(headless.spec.selector.colour, 'the headless Service spans both colours').to.equal(undefined);
    for (const colour of ['blue', 'green']) {
      const pods = find('Deployment', `replica-${colour}`).spec.template.metadata.labels;
      expect(selects(headless.spec.selector, pods)).to.equal(true);
    }
  });

  it('autoscale each colour and budget its disruptions', () => {
    for (const colour of ['blue', 'green']) {
      const pods = find('Deployment', `replica-${colour}`).spec.template.metadata.labels;
      const hpa = rendered.filter(
        (o) => o.kind === 'HorizontalPodAutoscaler' && o.metadata.labels.colour === colour,
      );
      expect(hpa.map((h) => h.spec.scaleTargetRef)).to.deep.equal([
        { apiVersion: 'apps/v1', kind: 'Deployment', name: `replica-${colour}` },
      ]);
      expect(hpa[0].spec.minReplicas).to.be.at.least(2);
      const pdbs = rendered.filter(
        (o) => o.kind === 'PodDisruptionBudget' && selects(o.spec.selector.matchLabels, pods),
      );
      expect(pdbs, `PodDisruptionBudget for ${colour}`).to.have.length(1);
      const other = find('Deployment', `replica-${colour === 'blue' ? 'green' : 'blue'}`).spec.template
        .metadata.labels;
      expect(selects(pdbs[0].spec.selector.matchLabels, other), 'a budget covers one colour').to.equal(false);
    }
  });

  it('run every pod as non-root on a read-only root filesystem, DATA_DIR on a volume', () => {
    checkPodSecurity(rendered);
  });

  it('run the leader as a one-pod StatefulSet behind the Service replicas reach', () => {
    const leader = find('StatefulSet', 'leader');
    expect(leader.spec.replicas).to.equal(1);
    expect(containerOf(leader).args).to.deep.equal(['leader']);
    expect(find('Service', leader.spec.serviceName).spec.clusterIP).to.equal('None');
    const service = find('Service', 'leader');
    expect(selects(service.spec.selector, leader.spec.template.metadata.labels)).to.equal(true);
    const url = new URL(containerEnv(rendered, containerOf(find('Deployment', 'replica-blue'))).LEADER_URL);
    expect(url.hostname).to.equal('leader');
    expect(service.spec.ports.map((p: K8sObject) => p.port)).to.include(Number(url.port));
    // scripts/bluegreen.ts reaches the leader as services/leader:http and replica pods on port 8081.
    expect(service.spec.ports.map((p: K8sObject) => p.name)).to.include('http');
    expect(containerOf(find('Deployment', 'replica-green')).ports[0].containerPort).to.equal(8081);
  });

  it('take tokens from the Secret, with placeholders too short to start a process', () => {
    const secret = find('Secret', 'promotions-tokens');
    for (const w of workloadsOf(rendered)) {
      const c = containerOf(w);
      const wanted = w.kind === 'StatefulSet' ? ['LEADER_TOKEN', 'REPLICA_TOKEN'] : ['REPLICA_TOKEN'];
      for (const name of wanted) {
        const ref = (c.env as K8sObject[]).find((e) => e.name === name)?.valueFrom?.secretKeyRef;
        expect(ref, `${keyOf(w)} ${name}`).to.deep.equal({ name: secret.metadata.name, key: name });
      }
    }
    for (const cm of rendered.filter((o) => o.kind === 'ConfigMap')) {
      expect(Object.keys(cm.data).filter((k) => k.includes('TOKEN'))).to.deep.equal([]);
    }
    for (const value of Object.values(secret.stringData) as string[]) {
      expect(value).to.match(/REPLACE/);
      expect(value.length, 'common/config.ts refuses tokens under 16 characters').to.be.lessThan(16);
    }
  });

  it('set only variables common/config.ts reads, with values it accepts', () => {
    checkSettings(rendered);
  });

  it('ask Prometheus to scrape /metrics on every pod', () => {
    for (const w of workloadsOf(rendered)) {
      const annotations = w.spec.template.metadata.annotations;
      expect(annotations['prometheus.io/scrape'], keyOf(w)).to.equal('true');
      expect(annotations['prometheus.io/path'], keyOf(w)).to.equal('/metrics');
      expect(Number(annotations['prometheus.io/port'])).to.equal(containerOf(w).ports[0].containerPort);
    }
  });
});

describe('k8s manifests: the sharded layout (k8s/sharded/)', () => {
  let sharded: K8sObject[] = [];
  const countOf = (colour: string): number =>
    (parse(readFileSync(join(K8S, 'sharded', colour, 'shards.yaml'), 'utf8')) as K8sObject).spec.count;
  const ofColour = (kind: string, component: string, colour: string) =>
    sharded.filter(
      (o) =>
        o.kind === kind &&
        o.metadata.labels['app.kubernetes.io/component'] === component &&
        o.metadata.labels.colour === colour,
    );

  before(() => {
    sharded = kustomize(join(K8S, 'sharded'), true);
  });

  it('render namespaced, unique objects that validate against the Kubernetes schemas', () => {
    checkObjects(sharded);
  });

  it('split each colour into the S its shards.yaml says: Deployment, Service, autoscaler and budget per shard', () => {
    for (const colour of COLOURS) {
      const count = countOf(colour);
      expect(count, `${colour} shards`).to.be.greaterThan(1);
      const names = Array.from({ length: count }, (_, k) => `replica-${colour}-shard-${k}`);
      expect(ofColour('Deployment', 'replica', colour).map((d) => d.metadata.name)).to.deep.equal(names);
      for (let k = 0; k < count; k++) {
        const d = find2('Deployment', names[k]);
        const env = containerEnv(sharded, containerOf(d));
        expect(env.SHARD, names[k]).to.equal(`${k}/${count}`);
        expect(d.spec.template.metadata.labels).to.include({ colour, shard: String(k) });
        expect(d.spec.replicas, 'the HPA owns the replica count').to.equal(undefined);
        const spread = d.spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels;
        expect(selectedWorkloads(sharded, spread), 'pods spread among their own shard').to.deep.equal([
          names[k],
        ]);
        const service = find2('Service', `replicas-${colour}-shard-${k}`);
        expect(selectedWorkloads(sharded, service.spec.selector)).to.deep.equal([names[k]]);
        const hpa = find2('HorizontalPodAutoscaler', names[k]);
        expect(hpa.spec.scaleTargetRef).to.deep.equal({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name: names[k],
        });
        expect(hpa.spec.minReplicas, 'two replicas per shard at least').to.be.at.least(2);
        const pdbs = sharded.filter(
          (o) =>
            o.kind === 'PodDisruptionBudget' &&
            selectedWorkloads(sharded, o.spec.selector.matchLabels).includes(names[k]),
        );
        expect(pdbs.map((p) => selectedWorkloads(sharded, p.spec.selector.matchLabels))).to.deep.equal([
          [names[k]],
        ]);
      }
    }
  });

  it("route each colour's reads through its nginx router: the loopback router's files, upstreams = the shard Services", () => {
    const nginxConf = readFileSync(join(K8S, 'router', 'nginx.conf'), 'utf8');
    const shardJs = readFileSync(join(K8S, 'router', 'shard.js'), 'utf8');
    const jsPath = /js_path (\S+);/.exec(nginxConf)![1];
    const include = /include (\S+shards\.conf);/.exec(nginxConf)![1];
    for (const colour of COLOURS) {
      const count = countOf(colour);
      const router = find2('Deployment', `router-${colour}`);
      const pod = router.spec.template.spec;
      const c = containerOf(router);
      const volume = (name: string) => (pod.volumes as K8sObject[]).find((v) => v.name === name);
      const mount = (name: string) => (c.volumeMounts as K8sObject[]).find((m) => m.name === name);
      const config = find2('ConfigMap', volume('config')!.configMap.name);
      expect(config.data, 'the router runs the files scripts/lib/nginx.ts tests').to.deep.equal({
        'nginx.conf': nginxConf,
        'shard.js': shardJs,
      });
      expect(`${mount('config')!.mountPath}/`).to.equal(jsPath);
      expect(c.command).to.include(`${mount('config')!.mountPath}/nginx.conf`);
      expect(`${mount('shards')!.mountPath}/shards.conf`).to.equal(include);
      const shards = find2('ConfigMap', volume('shards')!.configMap.name);
      const upstreams = Array.from({ length: count }, (_, k) => [`replicas-${colour}-shard-${k}:80`]);
      expect(shards.data['shards.conf']).to.equal(shardsConf(upstreams, Math.log2(count)));
      for (const [k, [hostPort]] of upstreams.entries()) {
        const [host, port] = hostPort.split(':');
        const service = find2('Service', host);
        expect(
          service.spec.ports.map((p: K8sObject) => p.port),
          host,
        ).to.include(Number(port));
        expect(selectedWorkloads(sharded, service.spec.selector)).to.deep.equal([
          `replica-${colour}-shard-${k}`,
        ]);
      }
      const ports = (c.ports as K8sObject[]).map((p) => p.name);
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        expect(probe.httpGet.path, `${colour} router probes nginx's own /healthz`).to.equal('/healthz');
        expect(ports).to.include(probe.httpGet.port);
      }
      expect(/listen (\d+);/.exec(nginxConf)![1]).to.equal(String(c.ports[0].containerPort));
      const pdbs = sharded.filter(
        (o) =>
          o.kind === 'PodDisruptionBudget' &&
          selects(o.spec.selector.matchLabels, router.spec.template.metadata.labels),
      );
      expect(pdbs.map((p) => p.metadata.name)).to.deep.equal([`router-${colour}`]);
      expect(selectedWorkloads(sharded, find2('Service', `router-${colour}`).spec.selector)).to.deep.equal([
        `router-${colour}`,
      ]);
    }
  });

  it("send clients, through `replicas`, to the live colour's routers only", () => {
    const live = find2('Service', 'replicas');
    expect(live.spec.selector.colour).to.be.oneOf(COLOURS);
    expect(selectedWorkloads(sharded, live.spec.selector)).to.deep.equal([
      `router-${live.spec.selector.colour}`,
    ]);
    expect(live.spec.ports[0].targetPort).to.equal('http');
  });

  it('keep the colours identical but for the colour while they have the same S', () => {
    if (countOf('blue') !== countOf('green')) return; // a resharding in progress: the colours differ on purpose
    const colourOf = (colour: string) =>
      sharded
        .filter((o) => o.metadata.labels?.colour === colour)
        // The shards file names the colour's Services, so its digest differs by colour.
        .map((o) => JSON.stringify(o).replace(/"promotions\/shards-conf-sha256":"[0-9a-f]{64}"/, '"sha"'));
    expect(colourOf('green')).to.deep.equal(colourOf('blue').map((s) => s.replaceAll('blue', 'green')));
  });

  it('run every pod as non-root on a read-only root filesystem, with settings common/config.ts accepts', () => {
    checkPodSecurity(sharded);
    checkSettings(sharded);
  });

  function find2(kind: string, name: string): K8sObject {
    return findIn(sharded, kind, name);
  }
});

describe('k8s manifests: monitoring (k8s/monitoring/)', () => {
  let monitoring: K8sObject[] = [];
  /** Fields the prometheus-operator models accept that these objects may use; anything else is a typo. */
  const ALLOWED: Record<string, string[]> = {
    'ServiceMonitor.spec': ['selector', 'endpoints', 'podTargetLabels'],
    'ServiceMonitor.endpoint': ['port', 'path', 'interval', 'scrapeTimeout'],
    'PrometheusRule.spec': ['groups'],
    'PrometheusRule.group': ['name', 'rules'],
    'PrometheusRule.rule': ['alert', 'expr', 'for', 'labels', 'annotations'],
  };
  const strictKeys = (obj: K8sObject, allowed: string, where: string) =>
    expect(
      Object.keys(obj).filter((k) => !ALLOWED[allowed].includes(k)),
      where,
    ).to.deep.equal([]);
  const operating = readFileSync(join(ROOT, 'docs', 'operating.md'), 'utf8');
  const rules = () =>
    monitoring
      .filter((o) => o.kind === 'PrometheusRule')
      .flatMap((r) => (r.spec.groups as K8sObject[]).flatMap((g) => g.rules as K8sObject[]));

  before(() => {
    monitoring = kustomize(join(K8S, 'monitoring'));
    rendered = kustomize(K8S);
  });

  it('validate against the prometheus-operator models and use only the fields listed here', () => {
    for (const obj of monitoring) {
      expect(obj.metadata.namespace, keyOf(obj)).to.equal('promotions');
      expect(() => validate(obj), keyOf(obj)).not.to.throw();
      if (obj.kind === 'ServiceMonitor') {
        strictKeys(obj.spec, 'ServiceMonitor.spec', keyOf(obj));
        for (const e of obj.spec.endpoints) strictKeys(e, 'ServiceMonitor.endpoint', keyOf(obj));
      }
      if (obj.kind === 'PrometheusRule') {
        strictKeys(obj.spec, 'PrometheusRule.spec', keyOf(obj));
        for (const g of obj.spec.groups) {
          strictKeys(g, 'PrometheusRule.group', `${keyOf(obj)} ${g.name}`);
          for (const r of g.rules) strictKeys(r, 'PrometheusRule.rule', `${keyOf(obj)} ${r.alert}`);
        }
      }
    }
    const broken = structuredClone(monitoring.find((o) => o.kind === 'ServiceMonitor')!);
    broken.spec.endpoints = 'http';
    expect(() => validate(broken)).to.throw(/endpoints/);
    const noExpr = structuredClone(monitoring.find((o) => o.kind === 'PrometheusRule')!);
    noExpr.spec.groups[0].rules[0].expr = { sum: 1 };
    expect(() => validate(noExpr)).to.throw(/expr/);
  });

  it('scrape the leader and every replica pod once, in both layouts, with colour and shard labels', () => {
    const sharded = kustomize(join(K8S, 'sharded'), true);
    const monitors = monitoring.filter((o) => o.kind === 'ServiceMonitor');
    for (const objects of [rendered, sharded]) {
      const scraped: string[] = [];
      for (const m of monitors) {
        const services = objects.filter(
          (o) => o.kind === 'Service' && selects(m.spec.selector.matchLabels, o.metadata.labels ?? {}),
        );
        expect(services, `${m.metadata.name} selects one Service`).to.have.length(1);
        const [service] = services;
        for (const e of m.spec.endpoints)
          expect(service.spec.ports.map((p: K8sObject) => p.name)).to.include(e.port);
        scraped.push(...selectedWorkloads(objects, service.spec.selector));
      }
      const expected = nodeWorkloads(objects).map((w) => w.metadata.name);
      expect([...scraped].sort(), 'every leader and replica workload, once').to.deep.equal(
        [...expected].sort(),
      );
    }
    const replicas = monitors.find((m) => m.metadata.name === 'promotions-replicas')!;
    const podLabels = find2(sharded, 'Deployment', 'replica-blue-shard-0').spec.template.metadata.labels;
    for (const label of replicas.spec.podTargetLabels) expect(podLabels, label).to.have.property(label);
  });

  it('alert on what docs/operating.md recommends, with exported metrics only', () => {
    const all = rules();
    expect(all.length).to.be.greaterThan(10);
    for (const r of all) {
      expect(r.alert, JSON.stringify(r)).to.match(/^Promotions[A-Za-z]+$/);
      expect(r.labels.severity, r.alert).to.be.oneOf(['page', 'ticket']);
      expect(r.annotations.summary, r.alert).to.be.a('string');
      expect(r.expr, r.alert).to.include('namespace="promotions"');
    }
    const exported = new Set(operating.slice(operating.indexOf('## Metrics')).match(/promotions_[a-z_]+/g));
    const exprs = all.map((r) => r.expr as string).join('\n');
    const used = new Set((exprs.match(/\bpromotions_[a-z_]+/g) ?? []).map((m) => m.replace(/_bucket$/, '')));
    expect(
      [...used].filter((m) => !exported.has(m)),
      'metrics operating.md does not list',
    ).to.deep.equal([]);
    const from = operating.indexOf('## Alerts worth setting');
    const table = operating.slice(from, operating.indexOf('\n## ', from + 1));
    const recommended = new Set(
      table.match(/\b(promotions_[a-z_]+|nodejs_[a-z0-9_]+|kubelet_[a-z_]+|container_[a-z_]+)/g),
    );
    expect(
      [...recommended].filter((m) => !exprs.includes(m)),
      'recommended alerts missing',
    ).to.deep.equal([]);
  });

  it("ship the Grafana dashboard as a ConfigMap for Grafana's sidecar", () => {
    const cm = monitoring.filter((o) => o.kind === 'ConfigMap');
    expect(cm).to.have.length(1);
    expect(cm[0].metadata.labels.grafana_dashboard).to.equal('1');
    expect(cm[0].data['grafana-dashboard.json']).to.equal(
      readFileSync(join(K8S, 'monitoring', 'grafana-dashboard.json'), 'utf8'),
    );
  });

  function find2(objects: K8sObject[], kind: string, name: string): K8sObject {
    return findIn(objects, kind, name);
  }
});

describe('grafana dashboard', () => {
  const dashboard = JSON.parse(
    readFileSync(join(K8S, 'monitoring', 'grafana-dashboard.json'), 'utf8'),
  ) as K8sObject;
  const panels = dashboard.panels as K8sObject[];
  const exprs = panels.flatMap((p) => ((p.targets ?? []) as K8sObject[]).map((t) => t.expr as string));

  it('queries the metrics the leader and replicas export', () => {
    const metrics = [
      'promotions_http_requests_total',
      'promotions_http_request_duration_seconds',
      'promotions_http_requests_in_flight',
      'promotions_http_requests_shed_total',
      'promotions_snapshot_version',
      'promotions_snapshot_rows',
      'promotions_snapshot_load_duration_seconds',
      'promotions_snapshot_pulled_bytes_total',
      'promotions_ingest_rows_total',
      'promotions_ingest_bad_rows_total',
      'promotions_ingest_duration_seconds',
      'promotions_ingests_total',
      'promotions_uploads_in_progress',
      'promotions_replica_lag_versions',
      'promotions_current_version',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ];
    for (const m of metrics)
      expect(
        exprs.some((e) => e.includes(m)),
        m,
      ).to.equal(true);
    const used = new Set(exprs.flatMap((e) => e.match(/\bpromotions_[a-z_]+/g) ?? []));
    const known = (name: string) =>
      metrics.includes(name.replace(/_(bucket|sum|count)$/, '')) || metrics.includes(name);
    expect(
      [...used].filter((name) => !known(name)),
      'unknown metric names',
    ).to.deep.equal([]);
  });

  it('has unique panel ids and a Prometheus data source on every query panel', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).to.equal(ids.length);
    for (const p of panels.filter((p) => p.type !== 'row')) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template.
      expect(p.datasource, p.title).to.deep.equal({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets.length, p.title).to.be.greaterThan(0);
    }
  });
});
