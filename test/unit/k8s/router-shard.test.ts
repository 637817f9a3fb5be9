/**
 * k8s/router/shard.js (the nginx router's shard function) against common/snapshot/key-hash.ts, so the router and
 * the snapshot can never place an id differently. The same file runs twice: in njs itself (Debian's `njs`
 * command-line tool, installed when missing: the engine nginx runs it in) and in node (it is a plain ES module).
 * Ids: random UUIDs, odd printable ASCII (quotes, `%`, `?`, `/`, spaces), each sent raw where a URI allows and
 * percent-encoded (every byte, or only what must be), as clients do.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { keyHash1 } from '../../../common/snapshot/key-hash.js';
import { ensureNjs, NJS_BINARY, ROUTER_DIR } from '../../../scripts/lib/nginx.js';

interface ShardModule {
  keyHash1(id: string): number;
  batchIds(query: string): string[] | undefined;
  shardOfBatch(query: string, bits: number): string;
  shardOfHint(value: string | undefined, bits: number): string;
  idFromUri(uri: string): string | undefined;
  shardOfUri(uri: string, bits: number): number;
  shard(r: { variables: Record<string, string | undefined>; headersIn?: Record<string, string> }): string;
}

/** A deterministic generator (mulberry32), so a failure names ids that reproduce. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function oddAscii(next: () => number): string {
  const n = 1 + Math.floor(next() * 40);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(0x20 + Math.floor(next() * 95));
  return s;
}

/** Every byte as %XX, in upper or lower case hex. */
function encodeAll(id: string, lower: boolean): string {
  let s = '';
  for (let i = 0; i < id.length; i++) {
    const hex = id.charCodeAt(i).toString(16).padStart(2, '0');
    s += `%${lower ? hex : hex.toUpperCase()}`;
  }
  return s;
}

/** Ids and the URI paths (after `/promotions/`) a client may send for them. */
function cases(): { id: string; path: string }[] {
  const next = random(11);
  const ids: string[] = [];
  for (let i = 0; i < 1500; i++) ids.push(randomUUID());
  for (let i = 0; i < 1500; i++) ids.push(oddAscii(next));
  ids.push('a', 'ab', 'abc', 'abcd', '%', '%25', '?', '/', ' ', '~'.repeat(128));
  const out: { id: string; path: string }[] = [];
  for (const [i, id] of ids.entries()) {
    out.push({ id, path: encodeURIComponent(id) });
    out.push({ id, path: encodeAll(id, i % 2 === 0) });
    // Raw, where the id holds nothing a URI path would change.
    if (/^[A-Za-z0-9\-._~!$&'()*+,;=:@]+$/.test(id)) out.push({ id, path: `${id}?ignored=%zz` });
  }
  return out;
}

/** Batch queries as clients send them (URLSearchParams: `+` for a space), with the shard they must route to. */
function batchCases(): { query: string; want: (bits: number) => string }[] {
  const next = random(7);
  const ids = cases().map((c) => c.id);
  const out: { query: string; want: (bits: number) => string }[] = [];
  for (let i = 0; i < 1000; i++) {
    const n = 1 + Math.floor(next() * 4);
    const batch = Array.from({ length: n }, () => ids[Math.floor(next() * ids.length)]);
    // Half the batches repeat one id (one shard whatever S), the others mix.
    const chosen = i % 2 === 0 ? batch.map(() => batch[0]) : batch;
    const query = new URLSearchParams(chosen.map((id) => ['id', id])).toString();
    out.push({
      query,
      want: (bits) => {
        if (bits === 0) return '0';
        const shards = new Set(chosen.map((id) => keyHash1(id) >>> (32 - bits)));
        return shards.size === 1 ? String([...shards][0]) : 'mixed';
      },
    });
  }
  return out;
}

describe('router shard function (k8s/router/shard.js)', () => {
  const all = cases();
  const batches = batchCases();
  let shard: ShardModule;

  before(async () => {
    // Loaded by URL at run time: the file is the njs module nginx loads, not part of the TypeScript build.
    shard = ((await import(pathToFileURL(join(ROUTER_DIR, 'shard.js')).href)) as { default: ShardModule })
      .default;
  });

  it('in node, gives key-hash.ts h1 and its top bits as the shard, for every id and encoding', () => {
    expect(all.length).to.be.greaterThan(6000);
    const wrong: string[] = [];
    for (const { id, path } of all) {
      const h1 = keyHash1(id);
      const uri = `/promotions/${path}`;
      if (shard.keyHash1(id) !== h1) wrong.push(`${path}: h1 ${shard.keyHash1(id)} != ${h1}`);
      if (shard.idFromUri(uri) !== id) wrong.push(`${path}: id ${shard.idFromUri(uri)}`);
      for (let bits = 0; bits <= 6; bits++) {
        const want = bits === 0 ? 0 : h1 >>> (32 - bits);
        if (shard.shardOfUri(uri, bits) !== want)
          wrong.push(`${path}: bits ${bits}: ${shard.shardOfUri(uri, bits)} != ${want}`);
      }
    }
    expect(wrong.slice(0, 5)).to.deep.equal([]);
  });

  it('in node, routes a batch to the shard its ids share, "mixed" when they are in several', () => {
    const wrong: string[] = [];
    for (const { query, want } of batches) {
      for (const bits of [0, 1, 2, 6]) {
        const got = shard.shardOfBatch(query, bits);
        if (got !== want(bits)) wrong.push(`${query} bits ${bits}: ${got} != ${want(bits)}`);
      }
    }
    expect(wrong.slice(0, 5)).to.deep.equal([]);
    expect(batches.filter((b) => b.want(6) === 'mixed').length).to.be.greaterThan(300);
    expect(shard.batchIds('id=a+b&id=c%2Bd&id=%zz&id=%01')).to.deep.equal(['a b', 'c+d']);
    expect(shard.shardOfBatch('id=a&other=1', 6), 'the replica refuses it: any shard').to.equal('0');
    expect(shard.shardOfBatch('', 6)).to.equal('0');
    expect(
      shard.shard({ variables: { request_uri: '/promotions?id=abc', promotions_shard_bits: '2' } }),
    ).to.equal(String(keyHash1('abc') >>> 30));
  });

  it('routes a POST batch to the shard the client names, "unsaid" when it names none of S', () => {
    const post = (value: string | undefined) =>
      shard.shard({
        variables: { request_uri: '/promotions:batchGet', promotions_shard_bits: '2' },
        headersIn: value === undefined ? {} : { 'X-Promotions-Shard': value },
      });
    expect(post('3')).to.equal('3');
    expect(post('0')).to.equal('0');
    for (const bad of ['4', '-1', '1.0', 'x', '', undefined])
      expect(post(bad), String(bad)).to.equal('unsaid');
  });

  it('sends what holds no valid id to shard 0 (its replica answers it) and refuses bad shard bits', () => {
    expect(shard.shardOfUri('/promotions/%zz', 6)).to.equal(0);
    expect(shard.shardOfUri('/promotions/%E0%A4%A', 6)).to.equal(0);
    expect(shard.shardOfUri('/other/abc', 6)).to.equal(0);
    expect(
      shard.shard({ variables: { request_uri: '/promotions/abc', promotions_shard_bits: '2' } }),
    ).to.equal(String(keyHash1('abc') >>> 30));
    expect(() =>
      shard.shard({ variables: { request_uri: '/promotions/abc', promotions_shard_bits: undefined } }),
    ).to.throw(/shard bits/);
    expect(() => shard.shardOfUri('/promotions/abc', 17)).to.throw(/shard bits/);
    expect(() => shard.shardOfUri('/promotions/abc', 1.5)).to.throw(/shard bits/);
  });

  describe('in njs', () => {
    let dir: string;
    before(async function () {
      this.timeout(300_000); // apt-get install njs, when missing
      await ensureNjs();
      dir = await mkdtemp(join(tmpdir(), 'router-shard-'));
    });
    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /**
     * Runs `body` in njs with `shard` (shard.js) and `input` (the JSON `data`) in scope; each line it prints with
     * `out(value)` comes back parsed. One line per value: njs's console.log cuts long lines.
     */
    async function inNjs(name: string, data: unknown, body: string[]): Promise<unknown[]> {
      await writeFile(join(dir, `${name}.json`), JSON.stringify(data));
      await writeFile(
        join(dir, `${name}.mjs`),
        [
          "import shard from 'shard.js';",
          "import fs from 'fs';",
          `const input = JSON.parse(fs.readFileSync(${JSON.stringify(join(dir, `${name}.json`))}, 'utf8'));`,
          'const out = (v) => console.log(JSON.stringify(v));',
          ...body,
        ].join('\n'),
      );
      const { stdout } = await promisify(execFile)(NJS_BINARY, ['-p', ROUTER_DIR, join(dir, `${name}.mjs`)], {
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as unknown);
    }

    it('gives the same h1 and shard as key-hash.ts, for every id and encoding', async () => {
      const got = (await inNjs(
        'ids',
        all.map((c) => `/promotions/${c.path}`),
        [
          'input.forEach((u) => { const id = shard.idFromUri(u);',
          '  out([id === undefined ? null : shard.keyHash1(id), shard.shardOfUri(u, 1), shard.shardOfUri(u, 6)]); });',
        ],
      )) as [number | null, number, number][];
      expect(got).to.have.length(all.length);
      const wrong = all
        .map(({ id, path }, i) => {
          const h1 = keyHash1(id);
          const want = [h1, h1 >>> 31, h1 >>> 26];
          return JSON.stringify(got[i]) === JSON.stringify(want)
            ? ''
            : `${path}: ${JSON.stringify(got[i])} != ${JSON.stringify(want)}`;
        })
        .filter((w) => w !== '');
      expect(wrong.slice(0, 5)).to.deep.equal([]);
    });

    it('routes batches as node does: the shared shard or "mixed", and POST hints', async () => {
      const lines = (await inNjs(
        'batches',
        batches.map((b) => b.query),
        [
          'input.forEach((q) => out([shard.shardOfBatch(q, 1), shard.shardOfBatch(q, 6)]));',
          "out(['3', '4', 'x'].map((h) => shard.shardOfHint(h, 2)));",
        ],
      )) as string[][];
      expect(lines.pop()).to.deep.equal(['3', 'unsaid', 'unsaid']);
      expect(lines).to.deep.equal(batches.map((b) => [b.want(1), b.want(6)]));
    });
  });
});
