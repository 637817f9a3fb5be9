/** Keeps the README honest: every error code and every setting is documented, and nothing documented is gone. */
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { ERROR_CODES } from '../../../common/errors.js';

const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
const configSource = await readFile(new URL('../../../common/config.ts', import.meta.url), 'utf8');

function tableCodes(heading: string): string[] {
  const section = readme.slice(readme.indexOf(heading));
  const table = section.slice(0, section.indexOf('\n\n', section.indexOf('| ---')));
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

  it('lists every error code with its status, and no code that does not exist', () => {
    const documented = tableCodes('## Errors');
    expect([...documented].sort()).to.deep.equal(Object.keys(ERROR_CODES).sort());
    for (const [code, status] of Object.entries(ERROR_CODES)) {
      expect(readme).to.match(new RegExp(`\\| \`${code}\` \\| ${status} \\|`), code);
    }
  });

  it('lists every environment variable the config reads, and no other', () => {
    const read = new Set([...configSource.matchAll(/\(env, '([A-Z_]+)'/g)].map((m) => m[1]));
    const documented = tableCodes('## Configuration');
    expect([...documented].sort()).to.deep.equal([...read].sort());
  });
});
