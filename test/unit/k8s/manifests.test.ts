/**
 * Keeps k8s/ deployable without a cluster: renders the kustomization offline, validates every object against the
 * Kubernetes schemas (kubernetes-models), and checks the contracts of DESIGN.md §7 (probes, colours, the live
 * selector, autoscaling and disruption budgets, non-root read-only pods, tokens from the Secret, settings that
 * common/config.ts accepts), plus the Grafana dashboard's metric names.
 * Rendering is done here, not by `kubectl kustomize`, so that CI needs no kubectl; when kubectl is installed the
 * two renderings are compared, so this renderer cannot drift from kustomize for the features k8s/ uses.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { parse, parseAllDocuments } from 'yaml';
import { loadLeaderConfig, loadReplicaConfig } from '../../../common/config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const K8S = join(ROOT, 'k8s');

/** A rendered Kubernetes object, as parsed from YAML; fields are checked where they are read. */
// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the schema validation below types them.
type K8sObject = Record<string, any>;

/** Kinds k8s/ may contain, each with the kubernetes-models class that validates it. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};
const CLUSTER_SCOPED = new Set(['Namespace']);
const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'namespace', 'labels', 'resources']);

function parseYamlDocuments(text: string, where: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors[0].message}`);
      return doc.toJS() as K8sObject | null;
    })
    .filter((obj): obj is K8sObject => obj !== null);
}

/**
 * Renders a kustomization directory the way `kubectl kustomize` does, for the features k8s/ uses: `resources`
 * (files), `namespace`, and `labels` with `pairs` only. Any other feature throws, so that k8s/ stays renderable.
 */
function renderKustomization(dir: string): K8sObject[] {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as K8sObject;
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key)) throw new Error(`kustomization.yaml: "${key}" is not supported here`);
  }
  const objects = (k.resources as string[]).flatMap((file) =>
    parseYamlDocuments(readFileSync(join(dir, file), 'utf8'), file),
  );
  for (const obj of objects) {
    obj.metadata ??= {};
    if (k.namespace !== undefined && !CLUSTER_SCOPED.has(obj.kind)) obj.metadata.namespace = k.namespace;
    for (const entry of (k.labels ?? []) as K8sObject[]) {
      if (Object.keys(entry).some((key) => key !== 'pairs')) {
        throw new Error('kustomization.yaml: labels supports only "pairs" here');
      }
      obj.metadata.labels = { ...obj.metadata.labels, ...entry.pairs };
    }
  }
  return objects;
}

function keyOf(obj: K8sObject): string {
  return `${obj.kind}/${obj.metadata?.namespace ?? ''}/${obj.metadata?.name}`;
}

function kubectlAvailable(): boolean {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function validate(obj: K8sObject): void {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (Model === undefined)
    throw new Error(`${keyOf(obj)}: no schema model for ${obj.apiVersion} ${obj.kind}`);
  new Model(structuredClone(obj) as never).validate();
}

/** Rendered once in `before`, so that a rendering error fails a hook with its message, not the test run. */
let rendered: K8sObject[] = [];

function find(kind: string, name: string): K8sObject {
  const obj = rendered.find((o) => o.kind === kind && o.metadata.name === name);
  if (obj === undefined) throw new Error(`k8s/ renders no ${kind} ${name}`);
  return obj;
}

function workloads(): K8sObject[] {
  return rendered.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
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

/** The environment a container would start with; secrets and the pod IP get stand-in values. */
function containerEnv(container: K8sObject): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of (container.envFrom ?? []) as K8sObject[]) {
    Object.assign(env, find('ConfigMap', from.configMapRef.name).data);
  }
  for (const e of (container.env ?? []) as K8sObject[]) {
    if (e.valueFrom?.secretKeyRef !== undefined) env[e.name] = `stand-in-${e.name}-0123456789`;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'status.podIP') env[e.name] = '10.1.2.3';
    else
      env[e.name] = String(e.value).replace(/\$\((\w+)\)/g, (_, name: string) => env[name] ?? `$(${name})`);
  }
  return env;
}

describe('k8s manifests', () => {
  before(() => {
    rendered = renderKustomization(K8S);
  });

  it('render with only the kustomize features the offline renderer supports', () => {
    expect(rendered.length).to.be.greaterThan(10);
    for (const obj of rendered) {
      if (!CLUSTER_SCOPED.has(obj.kind)) expect(obj.metadata.namespace, keyOf(obj)).to.equal('promotions');
    }
    const keys = rendered.map(keyOf);
    expect(new Set(keys).size, 'object names are unique').to.equal(keys.length);
  });

  it('render the same as `kubectl kustomize`', () => {
    // kubectl (with kustomize) is on every machine of this project's kind (shared/TOOLCHAIN.md).
    expect(kubectlAvailable(), 'kubectl is not installed: see shared/TOOLCHAIN.md').to.equal(true);
    const out = execFileSync('kubectl', ['kustomize', K8S], { encoding: 'utf8' });
    const theirs = parseYamlDocuments(out, 'kubectl kustomize');
    const byKey = (list: K8sObject[]) => [...list].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
    expect(byKey(rendered)).to.deep.equal(byKey(theirs));
  });

  it('validate against the Kubernetes schemas', () => {
    for (const obj of rendered) {
      expect(() => validate(obj), keyOf(obj)).not.to.throw();
    }
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
    for (const w of workloads()) {
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
    for (const w of workloads()) {
      const pod = w.spec.template.spec;
      const c = containerOf(w);
      expect(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, keyOf(w)).to.equal(true);
      expect(pod.securityContext?.runAsUser ?? c.securityContext?.runAsUser, keyOf(w)).to.be.greaterThan(0);
      expect(c.securityContext.readOnlyRootFilesystem, keyOf(w)).to.equal(true);
      expect(c.securityContext.allowPrivilegeEscalation, keyOf(w)).to.equal(false);
      const dataDir = containerEnv(c).DATA_DIR;
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
  });

  it('run the leader as a one-pod StatefulSet behind the Service replicas reach', () => {
    const leader = find('StatefulSet', 'leader');
    expect(leader.spec.replicas).to.equal(1);
    expect(containerOf(leader).args).to.deep.equal(['leader']);
    expect(find('Service', leader.spec.serviceName).spec.clusterIP).to.equal('None');
    const service = find('Service', 'leader');
    expect(selects(service.spec.selector, leader.spec.template.metadata.labels)).to.equal(true);
    const url = new URL(containerEnv(containerOf(find('Deployment', 'replica-blue'))).LEADER_URL);
    expect(url.hostname).to.equal('leader');
    expect(service.spec.ports.map((p: K8sObject) => p.port)).to.include(Number(url.port));
    // scripts/bluegreen.ts reaches the leader as services/leader:http and replica pods on port 8081.
    expect(service.spec.ports.map((p: K8sObject) => p.name)).to.include('http');
    expect(containerOf(find('Deployment', 'replica-green')).ports[0].containerPort).to.equal(8081);
  });

  it('take tokens from the Secret, with placeholders too short to start a process', () => {
    const secret = find('Secret', 'promotions-tokens');
    for (const w of workloads()) {
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
    const known = new Set(
      readFileSync(join(ROOT, 'common', 'config.ts'), 'utf8').match(/'[A-Z][A-Z0-9_]+'/g),
    );
    for (const w of workloads()) {
      const env = containerEnv(containerOf(w));
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
  });

  it('ask Prometheus to scrape /metrics on every pod', () => {
    for (const w of workloads()) {
      const annotations = w.spec.template.metadata.annotations;
      expect(annotations['prometheus.io/scrape'], keyOf(w)).to.equal('true');
      expect(annotations['prometheus.io/path'], keyOf(w)).to.equal('/metrics');
      expect(Number(annotations['prometheus.io/port'])).to.equal(containerOf(w).ports[0].containerPort);
    }
  });
});

describe('grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(join(K8S, 'grafana-dashboard.json'), 'utf8')) as K8sObject;
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
