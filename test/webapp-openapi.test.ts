import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ERROR_CODES } from '../shared/errors.ts';
import { HTTP_STATUS_OF } from '../webapp/http-status.ts';
import { OPENAPI_DOCUMENT } from '../webapp/openapi.ts';
import { WebApp } from '../webapp/web-app.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

interface Operation {
  operationId: string;
  summary: string;
  parameters?: { name: string; in: string; required?: boolean; schema: object }[];
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { description: string; content?: Record<string, { schema?: object }> }>;
}
const paths = OPENAPI_DOCUMENT.paths as unknown as Record<string, Record<string, Operation>>;
const operations = Object.entries(paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, operation]) => ({ path, method, operation })),
);

/** Every `$ref` in the document, with where it is. */
function refs(value: unknown, at = '#'): { at: string; ref: string }[] {
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, v]) =>
    key === '$ref' && typeof v === 'string' ? [{ at, ref: v }] : refs(v, `${at}/${key}`),
  );
}

function resolvePointer(pointer: string): unknown {
  return pointer
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], OPENAPI_DOCUMENT);
}

describe('web app OpenAPI document', () => {
  let web: WebApp | undefined;
  afterEach(async () => {
    await web?.close();
    web = undefined;
  });

  it('is an OpenAPI 3.0 document with the required fields', () => {
    assert.match(OPENAPI_DOCUMENT.openapi, /^3\.0\.\d+$/);
    assert.ok(OPENAPI_DOCUMENT.info.title && OPENAPI_DOCUMENT.info.version);
    const ids = new Set<string>();
    for (const { path, method, operation } of operations) {
      assert.ok(path.startsWith('/'), path);
      assert.ok(METHODS.includes(method), `${path}: ${method} is not an HTTP method`);
      assert.ok(operation.operationId && !ids.has(operation.operationId), `${method} ${path}: unique operationId`);
      ids.add(operation.operationId);
      assert.ok(operation.summary, `${method} ${path}: summary`);
      assert.ok(Object.keys(operation.responses).length > 0, `${method} ${path}: responses`);
      for (const [status, response] of Object.entries(operation.responses)) {
        assert.match(status, /^[1-5]\d\d$/, `${method} ${path}: status ${status}`);
        assert.ok(response.description, `${method} ${path} ${status}: description`);
      }
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const declared = (operation.parameters ?? []).filter((p) => p.in === 'path');
      assert.deepEqual(declared.map((p) => p.name).sort(), templated.sort(), `${method} ${path}: path parameters`);
      assert.ok(declared.every((p) => p.required === true), `${method} ${path}: path parameters are required`);
      for (const parameter of operation.parameters ?? []) {
        assert.ok(['query', 'path', 'header', 'cookie'].includes(parameter.in));
        assert.ok(parameter.schema, `${method} ${path} ${parameter.name}: schema`);
      }
    }
  });

  it('resolves every $ref and compiles every schema', () => {
    for (const { at, ref } of refs(OPENAPI_DOCUMENT)) {
      assert.ok(ref.startsWith('#/'), `${at}: local refs only`);
      assert.ok(resolvePointer(ref) !== undefined, `${at}: ${ref} does not resolve`);
    }
    const ajv = new Ajv({ strict: false });
    addFormats(ajv);
    ajv.addFormat('binary', true);
    ajv.addSchema({ $id: 'api', components: OPENAPI_DOCUMENT.components });
    const rewrite = (schema: unknown): unknown =>
      typeof schema !== 'object' || schema === null
        ? schema
        : Array.isArray(schema)
          ? schema.map(rewrite)
          : Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, k === '$ref' ? `api${String(v)}` : rewrite(v)]));
    for (const { at, ref } of refs(OPENAPI_DOCUMENT)) assert.doesNotThrow(() => ajv.compile({ $ref: `api${ref}` }), at);
    for (const { path, method, operation } of operations) {
      for (const parameter of operation.parameters ?? []) ajv.compile(rewrite(parameter.schema) as object);
      for (const response of Object.values(operation.responses)) {
        for (const media of Object.values(response.content ?? {})) if (media.schema) ajv.compile(rewrite(media.schema) as object);
      }
      assert.ok(operation, `${method} ${path}`);
    }
  });

  it('lists every error code, and documents each error status a route can answer', () => {
    const schema = OPENAPI_DOCUMENT.components.schemas.Error.properties.error.properties.code;
    assert.deepEqual([...schema.enum].sort(), Object.keys(ERROR_CODES).sort());
    for (const code of Object.keys(ERROR_CODES) as (keyof typeof ERROR_CODES)[]) {
      assert.ok(HTTP_STATUS_OF[code] >= 400, `${code} maps to an error status`);
    }
    for (const { path, method, operation } of operations.filter((o) => o.path.startsWith('/api/classify') || o.path === '/api/jobs')) {
      for (const status of ['200', '202', '400', '404', '413', '503', '504']) {
        if (status === '200' && method === 'post' && path === '/api/jobs') continue;
        if (status === '202' && path === '/api/classify') continue;
        assert.ok(operation.responses[status], `${method} ${path} documents ${status}`);
      }
    }
    const v2 = operations.filter((o) => o.path.startsWith('/v2'));
    assert.deepEqual(
      v2.map((o) => `${o.method} ${o.path}`).sort(),
      [
        'get /v2',
        'get /v2/health/live',
        'get /v2/health/ready',
        'get /v2/models/{model}',
        'get /v2/models/{model}/ready',
        'get /v2/models/{model}/versions/{version}',
        'get /v2/models/{model}/versions/{version}/ready',
        'post /v2/models/{model}/infer',
        'post /v2/models/{model}/versions/{version}/infer',
      ],
    );
    for (const { path, method, operation } of v2) {
      const statuses = path.endsWith('/infer') ? ['200', '400', '404', '413', '503', '504'] : path.includes('/models/') ? ['200', '404', '503', '504'] : ['200'];
      for (const status of statuses) assert.ok(operation.responses[status], `${method} ${path} documents ${status}`);
      for (const [status, response] of Object.entries(operation.responses).filter(([s]) => s >= '400')) {
        const schema = (response.content?.['application/json']?.schema ?? {}) as { $ref?: string };
        if (path !== '/v2/health/ready') assert.equal(schema.$ref, '#/components/schemas/OipError', `${method} ${path} ${status}: the protocol's error body`);
      }
    }
  });

  it('documents exactly the routes the app serves, and serves itself at /api/openapi.json', async () => {
    web = new WebApp({ broker: 'tcp://127.0.0.1:1', http: 0 }, testLogger);
    const url = await web.start();
    const router = (web.app as unknown as { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } }).router;
    const served = router.stack
      .filter((layer) => layer.route && layer.route.path.startsWith('/'))
      .flatMap((layer) =>
        Object.keys(layer.route!.methods).map((m) => `${m} ${layer.route!.path.replace(/:(\w+)/g, '{$1}')}`),
      )
      .sort();
    const documented = operations.map(({ path, method }) => `${method} ${path}`).sort();
    assert.deepEqual(served, documented);
    const response = await fetch(new URL('/api/openapi.json', url));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), JSON.parse(JSON.stringify(OPENAPI_DOCUMENT)));
  });

  it('checks requests against the document before doing any work', async () => {
    web = new WebApp({ broker: 'tcp://127.0.0.1:1', http: 0 }, testLogger);
    const url = await web.start();
    const response = await fetch(new URL('/api/classify?model=squeezenet&topk=0', url), { method: 'POST' });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { code: string; details: { errors: { in: string; parameter: string }[] } } };
    assert.equal(body.error.code, 'BAD_REQUEST');
    assert.deepEqual(body.error.details.errors.map((e) => [e.in, e.parameter]), [['query', 'topk']]);
    const missing = await fetch(new URL('/api/classify', url), { method: 'POST' });
    const missingBody = (await missing.json()) as { error: { details: { errors: { parameter: string }[] } } };
    assert.equal(missingBody.error.details.errors[0]!.parameter, 'model');
  });
});
