/**
 * Keeps the OpenAPI documents honest: each is a valid OpenAPI 3.1 document, every route an app serves is in its
 * role's document and every documented route is served, every error code is documented with its status, and the
 * files in docs/openapi are the modules' output. A route added without its documentation fails here.
 */
import { readFile } from 'node:fs/promises';
import type Router from '@koa/router';
import { Validator } from '@seriousme/openapi-schema-validator';
import { expect } from 'chai';
import type Koa from 'koa';
import { loadReplicaConfig } from '../../../common/config.js';
import { ERROR_CODES } from '../../../common/errors.js';
import type { OpenApiObject } from '../../../common/openapi.js';
import { LEADER_OPENAPI } from '../../../leader/openapi.js';
import { createReplicaApp } from '../../../replica/app.js';
import { LiveIndex } from '../../../replica/live-index.js';
import { REPLICA_OPENAPI } from '../../../replica/openapi.js';
import { READ_ROUTES } from '../../../replica/read-handler.js';
import { Syncer } from '../../../replica/sync.js';
import { OPENAPI_FILES } from '../../../scripts/openapi.js';
import { cleanup, http, quietLogger, REPLICA_TOKEN, startLeader, startReplica } from '../../helpers.js';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** `METHOD /path/{param}` for every operation of a document. */
function documented(doc: OpenApiObject): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(item))
      if (METHODS.includes(method)) out.push(`${method.toUpperCase()} ${path}`);
  }
  return out.sort();
}

/**
 * `METHOD /path/{param}` for every route of a Koa app's routers. A GET route answers HEAD too (@koa/router adds
 * it); that implicit HEAD is GET's and is not listed unless the document gives it its own operation.
 */
function served(app: Koa): string[] {
  const out = new Set<string>();
  for (const mw of app.middleware) {
    const router = (mw as { router?: Router }).router;
    if (router === undefined) continue;
    for (const layer of router.stack) {
      const path = String(layer.path).replace(/:(\w+)/g, '{$1}');
      for (const method of layer.methods) {
        if (method === 'HEAD' && layer.methods.includes('GET')) continue;
        out.add(`${method} ${path}`);
      }
    }
  }
  return [...out].sort();
}

/** Every (status, codes) of error answers in a document, wherever they are. */
function documentedCodes(doc: unknown): { status: string; codes: string[] }[] {
  const found: { status: string; codes: string[] }[] = [];
  const walk = (node: unknown, status: string | undefined) => {
    if (Array.isArray(node)) {
      for (const n of node) walk(n, status);
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    const o = node as Record<string, unknown>;
    const error = (o.properties as { error?: { enum?: string[] } } | undefined)?.error;
    if (error?.enum !== undefined && status !== undefined) found.push({ status, codes: error.enum });
    for (const [k, v] of Object.entries(o)) {
      walk(v, /^[1-5]\d\d$/.test(k) ? k : k === 'MethodNotAllowed' || k === 'NoRoute' ? undefined : status);
    }
  };
  const d = doc as { paths: unknown; components: { responses?: Record<string, unknown> } };
  walk(d.paths, undefined);
  for (const r of Object.values(d.components.responses ?? {})) {
    const desc = JSON.stringify(r);
    const code = Object.keys(ERROR_CODES).find((c) => desc.includes(`"${c}"`));
    if (code !== undefined) walk(r, String(ERROR_CODES[code as keyof typeof ERROR_CODES]));
  }
  return found;
}

/** Every `$ref` in a document points at something in it. */
function danglingRefs(doc: OpenApiObject): string[] {
  const refs: string[] = [];
  const walk = (node: unknown) => {
    if (typeof node !== 'object' || node === null) return;
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') refs.push(v);
      else walk(v);
    }
  };
  walk(doc);
  return refs.filter((ref) => {
    let at: unknown = doc;
    for (const part of ref.replace(/^#\//, '').split('/'))
      at = (at as Record<string, unknown> | undefined)?.[part];
    return at === undefined;
  });
}

describe('OpenAPI documents', () => {
  afterEach(cleanup);

  for (const [role, doc] of [
    ['leader', LEADER_OPENAPI],
    ['replica', REPLICA_OPENAPI],
  ] as const) {
    it(`the ${role}'s is a valid OpenAPI 3.1 document whose references all resolve`, async () => {
      const validator = new Validator();
      const result = await validator.validate(structuredClone(doc));
      expect(result.errors, JSON.stringify(result.errors, null, 2)).to.equal(undefined);
      expect(result.valid).to.equal(true);
      expect(validator.version).to.equal('3.1');
      expect(danglingRefs(doc)).to.deep.equal([]);
      // The validator does refuse a broken document: an answer without its (required) description.
      const broken = structuredClone(doc) as {
        paths: Record<string, Record<string, { responses: Record<string, { description?: string }> }>>;
      };
      delete broken.paths['/healthz'].get.responses['200'].description;
      expect((await new Validator().validate(broken)).valid).to.equal(false);
    });
  }

  it("lists every route the leader's app serves, and serves every route it lists", async () => {
    const leader = await startLeader();
    expect(served(leader.app)).to.deep.equal(documented(LEADER_OPENAPI));
    const res = await http(`${leader.url}/openapi.json`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    expect(res.json).to.deep.equal(LEADER_OPENAPI);
  });

  it('lists every route the replica serves (fast path, read handler, Koa), and serves every route it lists', async () => {
    const config = loadReplicaConfig({ REPLICA_TOKEN, PORT: '0' });
    const index = new LiveIndex();
    const app = createReplicaApp({
      config,
      logger: quietLogger(),
      index,
      syncer: new Syncer(config, index, quietLogger()),
    });
    const routes = [...served(app.koa), ...READ_ROUTES.map((r) => `${r.method} ${r.path}`)].sort();
    expect(routes).to.deep.equal(documented(REPLICA_OPENAPI));
    const replica = await startReplica('http://127.0.0.1:9');
    const res = await http(`${replica.url}/openapi.json`);
    expect(res.status).to.equal(200);
    expect(res.json).to.deep.equal(REPLICA_OPENAPI);
    // The read routes listed are the ones answered: none of them falls through to Koa's 404 for unknown routes.
    for (const r of READ_ROUTES) {
      const path = r.path.replace('{id}', 'x');
      const answer = await http(`${replica.url}${path}`, {
        method: r.method,
        headers: { 'content-type': 'application/json' },
        body: r.method === 'POST' || r.method === 'PUT' ? '{"ids":["x"]}' : undefined,
      });
      if (r.method !== 'HEAD')
        expect(answer.json.message ?? '', `${r.method} ${path}`).to.not.match(/^no route for/);
    }
  });

  it('documents every error code with its status, and no code that does not exist', () => {
    const all = [...documentedCodes(LEADER_OPENAPI), ...documentedCodes(REPLICA_OPENAPI)];
    for (const { status, codes } of all) {
      for (const code of codes) {
        expect(ERROR_CODES, code).to.have.property(code);
        // An unsatisfiable Range is 416 with the code REQUEST_BAD (leader/app.ts): the status is Range's own.
        if (code === 'REQUEST_BAD' && status === '416') continue;
        expect(String(ERROR_CODES[code as keyof typeof ERROR_CODES]), `${code} under ${status}`).to.equal(
          status,
        );
      }
    }
    const seen = new Set(all.flatMap((a) => a.codes));
    // ROUTER_* codes are the shard router's (k8s/router/nginx.conf), answered by nginx, not by either role.
    const ours = Object.keys(ERROR_CODES).filter((c) => !c.startsWith('ROUTER_'));
    expect(ours.filter((c) => !seen.has(c))).to.deep.equal([]);
  });

  it('has its files in docs/openapi up to date (node --import tsx scripts/openapi.ts writes them)', async () => {
    for (const [name, text] of OPENAPI_FILES) {
      const file = await readFile(new URL(`../../../docs/openapi/${name}`, import.meta.url), 'utf8');
      expect(file === text, `docs/openapi/${name} is stale`).to.equal(true);
    }
  });
});
