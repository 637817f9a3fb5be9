/**
 * Writes both roles' OpenAPI 3.1 documents (leader/openapi.ts, replica/openapi.ts) as JSON files, for tools that
 * read a file rather than GET /openapi.json (client generators, linters, reviewers).
 *   node --import tsx scripts/openapi.ts [--out docs/openapi] [--check]
 * `--check` writes nothing and exits 1 when a file differs from its module (test/unit/common/openapi.test.ts
 * checks the same).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LEADER_OPENAPI } from '../leader/openapi.js';
import { REPLICA_OPENAPI } from '../replica/openapi.js';

/** Each document's file name and its JSON text, as written. */
export const OPENAPI_FILES: readonly [string, string][] = [
  ['leader.json', `${JSON.stringify(LEADER_OPENAPI, null, 2)}\n`],
  ['replica.json', `${JSON.stringify(REPLICA_OPENAPI, null, 2)}\n`],
];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'docs/openapi' },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node --import tsx scripts/openapi.ts [--out docs/openapi] [--check]\n' +
        '  writes leader.json and replica.json; --check only compares and exits 1 on a difference\n',
    );
    return;
  }
  let stale = 0;
  for (const [name, text] of OPENAPI_FILES) {
    const path = join(values.out, name);
    if (values.check) {
      const current = await readFile(path, 'utf8').catch(() => '');
      if (current !== text) {
        process.stderr.write(`${path} is not up to date: run node --import tsx scripts/openapi.ts\n`);
        stale++;
      }
    } else {
      await writeFile(path, text);
      process.stdout.write(`wrote ${path}\n`);
    }
  }
  if (stale > 0) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
