/**
 * Blue/green switch for the replicas in Kubernetes (k8s/, docs/operating.md). The `replicas` Service selects the
 * live colour (its replicas, or in the sharded layout its routers); this script moves that selector only after
 * checking that every replica pod of the other colour is ready and serves the leader's current version and, when
 * the colour is sharded, that every shard 0..S-1 of it has such a pod and its routers are ready.
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] status
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] [--timeout SECONDS] deploy <blue|green> <image>
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] switch <blue|green>
 *   node --import tsx scripts/bluegreen.ts [--namespace NS] rollback
 *   node --import tsx scripts/bluegreen.ts --help
 * Exit codes: 0 done, 1 refused or failed (the reason is printed), 2 usage.
 * It talks to the cluster only through `kubectl` (or the binary named by KUBECTL), with the caller's kubeconfig;
 * pods and the leader are reached through the API server's proxy (`kubectl get --raw`), so no port-forward.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BlueGreen, COLOURS, type Colour } from './lib/blue-green.js';
import { type Kubectl, Refused, systemKubectl } from './lib/kubectl.js';

export { otherColour, parseReportedShard } from './lib/blue-green.js';
export { COLOURS, type Colour, type Kubectl, Refused, systemKubectl };

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;

const USAGE = `usage: bluegreen.ts [--namespace NS] [--timeout SECONDS] <command>
  status                      the live colour and each colour's ready pods (and shards)
  deploy <colour> <image>     set the idle colour's image, wait until it is ready and serves the current version
  switch <colour>             point the replicas Service at <colour> (refused unless it is ready and current,
                              every shard of it included)
  rollback                    switch back to the other colour, with the same check
options:
  -n, --namespace NS          the namespace (default promotions)
  --timeout SECONDS           how long deploy waits (default 900)
  -h, --help                  this text
colours: blue, green`;

/** A command line that cannot be understood (exit 2). */
export class UsageError extends Error {}

/** What the command line asks for. */
export interface Options {
  readonly namespace: string;
  readonly timeoutSeconds: number;
  readonly command: 'status' | 'deploy' | 'switch' | 'rollback' | 'help';
  readonly colour?: Colour;
  readonly image?: string;
}

function colourArg(value: string | undefined): Colour {
  if (!COLOURS.includes(value as Colour))
    throw new UsageError(`colour must be blue or green, got "${value ?? ''}"`);
  return value as Colour;
}

/** Parses the arguments after the script's name (node:util parseArgs); throws UsageError. */
export function parseCommandLine(argv: readonly string[]): Options {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals: rest } = parsed;
  const namespace = values.namespace ?? 'promotions';
  if (namespace === '') throw new UsageError('--namespace needs a value');
  let timeoutSeconds = 900;
  if (values.timeout !== undefined) {
    if (!/^\d+$/.test(values.timeout) || Number(values.timeout) < 1)
      throw new UsageError('--timeout must be whole seconds');
    timeoutSeconds = Number(values.timeout);
  }
  if (values.help) return { namespace, timeoutSeconds, command: 'help' };
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

function parseOptions(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      namespace: { type: 'string', short: 'n' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
}

/** Runs one command line; resolves the exit code. Messages go to stdout, refusals and usage to stderr. */
export async function run(argv: readonly string[], kubectl: Kubectl = systemKubectl()): Promise<number> {
  let options: Options;
  try {
    options = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bluegreen: ${err.message}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (options.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
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
