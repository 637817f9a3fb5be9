/**
 * The shards transformer (scripts/lib/k8s-shards.ts) on one colour's objects as kustomize hands them over: every
 * S it accepts (1 to 64) gives S complete shards and a router shards.conf naming them; what it cannot shard is
 * refused with the reason. The whole plugin path (kustomize, the exec plugin, scripts/k8s-shards.ts) is rendered in
 * test/unit/k8s/manifests.test.ts.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import {
  type K8sObject,
  SHARDS_CONF_ANNOTATION,
  shardCount,
  shardObjects,
} from '../../../../scripts/lib/k8s-shards.js';
import { shardsConf } from '../../../../scripts/lib/nginx.js';
import { ROOT } from '../../../../scripts/lib/processes.js';

const labels = (component: string) => ({
  'app.kubernetes.io/name': 'promotions',
  'app.kubernetes.io/component': component,
  colour: 'blue',
});

/** One colour's objects, as the colour component leaves them (references not fixed up yet, as in kustomize). */
function colourObjects(): K8sObject[] {
  const pod = labels('replica');
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'replica-blue', labels: pod, annotations: { 'kustomize.config.k8s.io/id': 'x' } },
      spec: {
        selector: { matchLabels: pod },
        template: {
          metadata: { labels: pod },
          spec: {
            topologySpreadConstraints: [{ labelSelector: { matchLabels: pod } }],
            containers: [
              {
                name: 'replica',
                env: [
                  { name: 'PORT', value: '8081' },
                  { name: 'SHARD', value: 'stale' },
                ],
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'replicas-blue', labels: pod },
      spec: { selector: pod, ports: [{ port: 80 }] },
    },
    {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name: 'replica-blue', labels: pod },
      spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'replica' } },
    },
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'replica-blue', labels: pod },
      spec: { selector: { matchLabels: pod } },
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'router-shards-blue', labels: labels('router') },
      data: { 'shards.conf': '# none\n' },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'router-blue', labels: labels('router') },
      spec: {
        template: { metadata: { labels: labels('router') }, spec: { containers: [{ name: 'router' }] } },
      },
    },
  ];
}

describe('shards transformer (scripts/lib/k8s-shards.ts)', () => {
  for (const count of [1, 2, 8, 64]) {
    it(`splits a colour into ${count} shard(s), each complete, with the router's upstreams`, () => {
      const out = shardObjects(colourObjects(), count);
      const named = (kind: string, name: string) =>
        out.filter((o) => o.kind === kind && o.metadata.name === name);
      expect(out).to.have.length(4 * count + 2);
      for (let k = 0; k < count; k++) {
        const [d] = named('Deployment', `replica-blue-shard-${k}`);
        expect(d.spec.selector.matchLabels.shard).to.equal(String(k));
        expect(d.spec.template.metadata.labels.shard).to.equal(String(k));
        expect(d.spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels.shard).to.equal(
          String(k),
        );
        expect(d.spec.template.spec.containers[0].env).to.deep.equal([
          { name: 'SHARD', value: `${k}/${count}` },
          { name: 'PORT', value: '8081' },
        ]);
        expect(d.metadata.annotations, "a copy carries none of kustomize's history").to.equal(undefined);
        expect(named('Service', `replicas-blue-shard-${k}`)[0].spec.selector.shard).to.equal(String(k));
        expect(
          named('HorizontalPodAutoscaler', `replica-blue-shard-${k}`)[0].spec.scaleTargetRef.name,
        ).to.equal(`replica-blue-shard-${k}`);
        expect(
          named('PodDisruptionBudget', `replica-blue-shard-${k}`)[0].spec.selector.matchLabels.shard,
        ).to.equal(String(k));
      }
      const conf = named('ConfigMap', 'router-shards-blue')[0].data['shards.conf'];
      expect(conf).to.equal(
        shardsConf(
          Array.from({ length: count }, (_, k) => [`replicas-blue-shard-${k}:80`]),
          Math.log2(count),
        ),
      );
      const router = named('Deployment', 'router-blue')[0];
      expect(router.spec.template.metadata.annotations[SHARDS_CONF_ANNOTATION]).to.match(/^[0-9a-f]{64}$/);
    });
  }

  it('gives the routers a new digest when the shard count changes, so they roll', () => {
    const digest = (count: number) =>
      shardObjects(colourObjects(), count).find((o) => o.metadata.name === 'router-blue')!.spec.template
        .metadata.annotations[SHARDS_CONF_ANNOTATION];
    expect(digest(4)).to.not.equal(digest(8));
    expect(digest(4)).to.equal(digest(4));
  });

  it('refuses a shard count that is not a power of two from 1 to 64, naming the field', () => {
    for (const count of [0, 3, 128, 2.5, '4', undefined]) {
      expect(
        () => shardCount({ metadata: { name: 'shards-blue' }, spec: { count } }),
        String(count),
      ).to.throw(/shards-blue: spec.count must be a power of two from 1 to 64/);
    }
    expect(shardCount({ spec: { count: 16 } })).to.equal(16);
  });

  it('refuses objects it cannot shard: no replica Deployment, two Services, an unknown replica kind, no router file', () => {
    const without = (kind: string, name: string) =>
      colourObjects().filter((o) => !(o.kind === kind && o.metadata.name === name));
    expect(() => shardObjects(without('Deployment', 'replica-blue'), 2)).to.throw(
      /exactly one replica Deployment, found 0/,
    );
    const twoServices = colourObjects();
    twoServices.push({ ...twoServices[1], metadata: { ...twoServices[1].metadata, name: 'other' } });
    expect(() => shardObjects(twoServices, 2)).to.throw(/exactly one replica Service/);
    const unknown = colourObjects();
    unknown.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', labels: labels('replica') } });
    expect(() => shardObjects(unknown, 2)).to.throw(/does not know how to shard this kind/);
    expect(() => shardObjects(without('ConfigMap', 'router-shards-blue'), 2)).to.throw(
      /router's shards ConfigMap/,
    );
  });

  it('answers --help with its usage, and a bad configuration with exit 1 and the reason', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/k8s-shards.ts', '--help'], {
      cwd: ROOT,
    });
    expect(stdout).to.match(/usage: k8s-shards.ts CONFIG.yaml/);
    const failed = await run(
      process.execPath,
      ['--import', 'tsx', 'scripts/k8s-shards.ts', '/nonexistent.yaml'],
      {
        cwd: ROOT,
      },
    ).catch((err: { code: number; stderr: string }) => err);
    expect(failed).to.include({ code: 1 });
    expect((failed as { stderr: string }).stderr).to.match(/k8s-shards: .*nonexistent/);
  });
});
