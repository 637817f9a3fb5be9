/**
 * The shards transformer for kustomize (k8s/sharded/): reads the transformer's configuration from the file named
 * by the first argument (kustomize passes it), one colour's objects as a YAML stream on stdin, and writes them
 * split into S shards on stdout (scripts/lib/k8s-shards.ts). kustomize runs it through the exec plugin
 * k8s/plugins/promotions/v1/shards/Shards; see docs/operating.md, "Sharded layout", for the render command.
 *   node --import tsx scripts/k8s-shards.ts CONFIG.yaml < objects.yaml
 * Exit codes: 0 done, 1 the objects or the configuration cannot be sharded (the reason is printed), 2 usage.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { type K8sObject, shardCount, shardObjects } from './lib/k8s-shards.js';

const USAGE = `usage: k8s-shards.ts CONFIG.yaml < objects.yaml > sharded.yaml
  CONFIG.yaml   the transformer's configuration: apiVersion promotions/v1, kind Shards, spec.count S
                (a power of two from 1 to 64); kustomize passes it as the first argument
  --help        this text`;

/** Manifests are small; anything past this is not one colour's objects. */
const MAX_INPUT_BYTES = 16 * 1024 * 1024;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > MAX_INPUT_BYTES) throw new Error(`more than ${MAX_INPUT_BYTES} bytes on stdin`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ options: { help: { type: 'boolean' } }, allowPositionals: true });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  try {
    const config = parse(await readFile(parsed.positionals[0], 'utf8')) as K8sObject;
    const objects = parseAllDocuments(await readStdin()).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`stdin: ${doc.errors[0].message}`);
      return doc.toJS() as K8sObject;
    });
    const out = shardObjects(
      objects.filter((o) => o !== null),
      shardCount(config),
    );
    // JSON documents (YAML 1.2 is a superset): block scalars, nginx.conf and shard.js, pass through byte for byte.
    process.stdout.write(out.map((o) => JSON.stringify(o)).join('\n---\n'));
    return 0;
  } catch (err) {
    process.stderr.write(`k8s-shards: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await main();
