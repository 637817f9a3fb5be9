/** Keeps the docs honest: every error code and every setting is documented, and nothing documented is gone. */
import { execFileSync } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { ERROR_CODES } from '../../../common/errors.js';

const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
const errorsDoc = await readFile(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const configurationDoc = await readFile(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
const configSource = await readFile(new URL('../../../common/config.ts', import.meta.url), 'utf8');

/** The backticked names in the first column of the first table of a document. */
function tableCodes(doc: string): string[] {
  const table = doc.slice(0, doc.indexOf('\n\n', doc.indexOf('| ---')));
  return [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
}

describe('README', () => {
  it('starts with exactly the two commands: run locally, run the tests', () => {
    const block = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(
      block
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => l.split('#')[0].trim()),
    ).to.deep.equal(['npm start', 'npm test']);
    expect(readme.indexOf('```sh')).to.be.lessThan(readme.indexOf('\n## '));
  });

  it('links only to files that are in the repo', async () => {
    for (const [, target] of readme.matchAll(/\]\(([^)#:]+)(#[^)]*)?\)/g)) {
      await access(new URL(`../../../${target}`, import.meta.url)).catch(() => {
        throw new Error(`README links to ${target}, which is not in the repo`);
      });
    }
  });
});

describe('docs/errors.md and docs/configuration.md', () => {
  it('lists every error code with its status, and no code that does not exist', () => {
    const documented = tableCodes(errorsDoc);
    expect([...documented].sort()).to.deep.equal(Object.keys(ERROR_CODES).sort());
    for (const [code, status] of Object.entries(ERROR_CODES)) {
      expect(errorsDoc).to.match(new RegExp(`\\| \`${code}\` \\| ${status} \\|`), code);
    }
  });

  it('lists every environment variable the config reads, and no other', () => {
    const read = new Set([...configSource.matchAll(/\(env, '([A-Z_]+)'/g)].map((m) => m[1]));
    const documented = tableCodes(configurationDoc);
    expect([...documented].sort()).to.deep.equal([...read].sort());
  });
});

describe('the repo stands alone', () => {
  const root = new URL('../../../', import.meta.url);
  const tracked = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((f) => /\.(ts|js|md|ya?ml|json)$|^Dockerfile$/.test(f) && !f.startsWith('test/fixtures/'));

  it('cites no document outside it: every upper-case .md file it names is one of its files, no path climbs out of it', async () => {
    const mdNames = new Set(
      tracked.filter((f) => f.endsWith('.md')).map((f) => f.slice(f.lastIndexOf('/') + 1)),
    );
    const rootPath = fileURLToPath(root);
    const citing: string[] = [];
    for (const f of tracked) {
      const text = await readFile(new URL(f, root), 'utf8').catch(() => '');
      const dir = dirname(join(rootPath, f));
      text.split('\n').forEach((line, i) => {
        for (const [, name] of line.matchAll(/\b([A-Z][A-Z0-9_-]*\.md)\b/g)) {
          if (!mdNames.has(name)) citing.push(`${f}:${i + 1} names ${name}`);
        }
        for (const [, path] of line.matchAll(/(?:^|[\s(`'"])((?:\.\.\/)+[\w.-][\w./-]*)/g)) {
          if (relative(rootPath, resolve(dir, path)).startsWith('..'))
            citing.push(`${f}:${i + 1} points at ${path}`);
        }
      });
    }
    expect(citing).to.deep.equal([]);
  });

  it('links, in every doc, only to files that are in it', async () => {
    const broken: string[] = [];
    for (const f of tracked.filter((t) => t.endsWith('.md'))) {
      const text = await readFile(new URL(f, root), 'utf8').catch(() => '');
      for (const [, target] of text.matchAll(/\]\(([^)#:\s]+)(#[^)]*)?\)/g)) {
        const at = new URL(target, new URL(f, root));
        await access(at).catch(() => broken.push(`${f} -> ${target}`));
      }
    }
    expect(broken).to.deep.equal([]);
  });
});
