import assert from 'node:assert/strict';
import { AuthAdmin } from '../shared/auth-admin.ts';
import { issueToken } from '../shared/api-token.ts';
import { ERROR_CODES } from '../shared/errors.ts';
import type { AuthStore, Scope } from '../shared/store/auth-store.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { OPENAPI_DOCUMENT } from '../webapp/openapi.ts';
import { ROUTE_SCOPES, BEARER_SCHEME } from '../webapp/route-scopes.ts';
import { WebApp } from '../webapp/web-app.ts';
import { SAMPLES, startWebCluster, testLogger, type WebCluster } from './fixtures/webapp-cluster.ts';
import { runCli, TEST_HEARTBEAT_MS } from './helpers/cluster.ts';
import { rejectsWith } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';
import { join } from 'node:path';
import { launchBrowser, SCREENSHOTS, type Browser } from './helpers/browser.ts';

interface Route {
  operationId: string;
  method: 'GET' | 'POST' | 'DELETE';
  /** A request the route answers; `JOB` stands for a finished job's id, `TOKENID` for a revoked token's id. */
  path: string;
  body?: () => RequestInit;
  /** What the right scope gets, the same as a web app with auth off answers unless `offStatus` says otherwise. */
  status: number;
  /** What the web app with auth off answers, when not `status` (user management needs the auth store). */
  offStatus?: number;
}

const json = (value: unknown) => () => ({ body: JSON.stringify(value), headers: { 'content-type': 'application/json' } });
const infer = json({ inputs: [{ name: 'image', shape: [1], datatype: 'BYTES', data: ['not base64 image bytes'] }] });

/** Every guarded route of the OpenAPI document. Those of the training services answer 503 here: no training worker runs in this cluster. */
const ROUTES: Route[] = [
  { operationId: 'info', method: 'GET', path: '/api/info', status: 200 },
  { operationId: 'sample', method: 'GET', path: '/api/samples/kitten.png', status: 200 },
  { operationId: 'classify', method: 'POST', path: '/api/classify?model=squeezenet&sample=kitten.png', status: 200 },
  { operationId: 'submitJob', method: 'POST', path: '/api/jobs?model=squeezenet&sample=kitten.png', status: 202 },
  { operationId: 'jobStatus', method: 'GET', path: '/api/jobs/JOB', status: 200 },
  { operationId: 'jobEvents', method: 'GET', path: '/api/jobs/JOB/events', status: 200 },
  { operationId: 'cancelJob', method: 'DELETE', path: '/api/jobs/JOB', status: 200 },
  { operationId: 'addModel', method: 'POST', path: '/api/models?name=bad', body: () => ({ body: 'not onnx', headers: { 'content-type': 'application/octet-stream' } }), status: 400 },
  { operationId: 'removeModel', method: 'DELETE', path: '/api/models/nosuchmodel', status: 404 },
  { operationId: 'removeModelVersion', method: 'DELETE', path: '/api/models/squeezenet/versions/99', status: 404 },
  { operationId: 'listDatasets', method: 'GET', path: '/api/datasets', status: 503 },
  { operationId: 'addDataset', method: 'POST', path: '/api/datasets', body: () => ({ body: 'x', headers: { 'content-type': 'application/zip' } }), status: 503 },
  { operationId: 'startTraining', method: 'POST', path: '/api/train', body: json({ dataset: 'd' }), status: 400 },
  { operationId: 'listRuns', method: 'GET', path: '/api/runs', status: 503 },
  { operationId: 'getRun', method: 'GET', path: '/api/runs/r1', status: 503 },
  { operationId: 'oipServerMetadata', method: 'GET', path: '/v2', status: 200 },
  { operationId: 'oipModelMetadata', method: 'GET', path: '/v2/models/squeezenet', status: 200 },
  { operationId: 'oipModelVersionMetadata', method: 'GET', path: '/v2/models/squeezenet/versions/1', status: 200 },
  { operationId: 'oipModelReady', method: 'GET', path: '/v2/models/squeezenet/ready', status: 200 },
  { operationId: 'oipModelVersionReady', method: 'GET', path: '/v2/models/squeezenet/versions/1/ready', status: 200 },
  { operationId: 'oipInfer', method: 'POST', path: '/v2/models/squeezenet/infer', body: infer, status: 400 },
  { operationId: 'oipVersionInfer', method: 'POST', path: '/v2/models/squeezenet/versions/1/infer', body: infer, status: 400 },
  { operationId: 'listUsers', method: 'GET', path: '/api/users', status: 200, offStatus: 400 },
  { operationId: 'addUser', method: 'POST', path: '/api/users', body: () => json({ name: `u${Math.random().toString(36).slice(2, 10)}`, role: 'viewer' })(), status: 201, offStatus: 400 },
  { operationId: 'listTokens', method: 'GET', path: '/api/tokens', status: 200, offStatus: 400 },
  { operationId: 'createToken', method: 'POST', path: '/api/tokens', body: json({ user: 'ada', scopes: 'read', expires: '1h' }), status: 201, offStatus: 400 },
  { operationId: 'revokeToken', method: 'DELETE', path: '/api/tokens/TOKENID', status: 200, offStatus: 400 },
  { operationId: 'listAudit', method: 'GET', path: '/api/audit?since=0', status: 200, offStatus: 400 },
];
const OPEN_ROUTES = [
  { operationId: 'health', path: '/healthz' },
  { operationId: 'ready', path: '/readyz' },
  { operationId: 'oipLive', path: '/v2/health/live' },
  { operationId: 'oipReady', path: '/v2/health/ready' },
  { operationId: 'openapi', path: '/api/openapi.json' },
  { operationId: 'metrics', path: '/metrics' },
];
/** The page's session routes, tested on their own below. */
const SESSION_OPERATIONS = ['getSession', 'login', 'logout'];

describe('web app auth', function () {
  this.timeout(120_000);
  let cluster: WebCluster;
  let store: AuthStore;
  let guarded: WebApp;
  let replica: WebApp | undefined;
  let jobId: string;
  let revokedId: string;
  /** Tokens by name: one per scope (`infer`, `read`, ...), plus `revoked` and `expired` with every scope. */
  const tokens: Record<string, string> = {};

  before(async () => {
    cluster = await startWebCluster();
    store = SqliteAuthStore.inDataDir(cluster.data);
    const admin = new AuthAdmin(store, 'test');
    await admin.addUser('ada', 'admin');
    for (const scope of ['infer', 'read', 'train', 'models', 'admin', 'metrics'] satisfies Scope[]) {
      tokens[scope] = (await admin.createToken('ada', scope)).token;
    }
    const revoked = await admin.createToken('ada', 'infer,read,train,models');
    await admin.revokeToken(revoked.id);
    tokens.revoked = revoked.token;
    revokedId = revoked.id;
    const ada = (await store.userByName('ada'))!;
    const expired = issueToken();
    await store.createToken({ id: expired.id, userId: ada.id, scopes: ['infer', 'read', 'train', 'models'], hash: expired.hash, expiresAt: Date.now() - 1 });
    tokens.expired = expired.token;
    guarded = await startGuarded();
    const submitted = await fetch(new URL('/api/jobs?model=squeezenet&sample=kitten.png', cluster.url), { method: 'POST' });
    jobId = ((await submitted.json()) as { id: string }).id;
    await eventually('the job to finish', async () => {
      const status = (await (await fetch(new URL(`/api/jobs/${jobId}`, cluster.url))).json()) as { state: string };
      return status.state === 'succeeded';
    });
  });
  after(async () => {
    await replica?.close();
    await guarded?.close();
    await store?.close();
    await cluster?.close();
  });

  function startGuarded(options: Record<string, unknown> = {}): Promise<WebApp> {
    const web = new WebApp(
      { broker: cluster.broker.frontendEndpoint, http: 0, samples: SAMPLES, heartbeatIntervalMs: TEST_HEARTBEAT_MS, auth: 'tokens', data: cluster.data, authCacheMs: 200, maxAuthFailures: 100_000, ...options },
      testLogger,
    );
    return web.start().then(() => web);
  }

  async function call(web: WebApp | string, route: Pick<Route, 'method' | 'path' | 'body'>, token?: string) {
    const base = typeof web === 'string' ? web : web.url;
    const init = route.body?.() ?? {};
    const headers = { ...(init.headers as Record<string, string> | undefined), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) };
    const res = await fetch(new URL(route.path.replace('JOB', jobId).replace('TOKENID', revokedId), base), { ...init, method: route.method, headers });
    const text = await res.text();
    let body: { error?: { code?: string } | string; code?: string } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // an image, an event stream, metrics text
    }
    // Ours: {"error":{"code","message"}}; the OIP routes': {"error":"message","code"}.
    const code = typeof body.error === 'object' ? body.error.code : body.code;
    return { status: res.status, code, headers: res.headers };
  }

  it('has a scope for every operation of the OpenAPI document, and a row here for each guarded one', () => {
    const ids = Object.values(OPENAPI_DOCUMENT.paths as unknown as Record<string, Record<string, { operationId: string }>>).flatMap((item) =>
      Object.values(item).map((op) => op.operationId),
    );
    assert.deepEqual(ids.filter((id) => ROUTE_SCOPES[id] === undefined), []);
    assert.deepEqual(
      [...ROUTES.map((r) => r.operationId), ...OPEN_ROUTES.map((r) => r.operationId), ...SESSION_OPERATIONS].sort(),
      ids.sort(),
      'every operation is in the table test',
    );
  });

  for (const route of ROUTES) {
    it(`${route.method} ${route.path}: none 401, wrong scope 403, revoked 401, expired 401, right scope as with auth off`, async () => {
      const scope = ROUTE_SCOPES[route.operationId] as Scope;
      const none = await call(guarded, route);
      assert.deepEqual([none.status, none.code], [401, 'UNAUTHENTICATED'], 'no token');
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer /);
      const wrong = await call(guarded, route, tokens[scope === 'read' ? 'infer' : 'read']);
      assert.deepEqual([wrong.status, wrong.code], [403, 'FORBIDDEN'], 'wrong scope');
      for (const name of ['revoked', 'expired']) {
        const refused = await call(guarded, route, tokens[name]);
        assert.deepEqual([refused.status, refused.code], [401, 'UNAUTHENTICATED'], name);
      }
      const right = await call(guarded, route, tokens[scope]);
      const open = await call(cluster.url, route);
      assert.equal(right.status, route.status, `right scope: ${right.code ?? ''}`);
      if (route.offStatus === undefined) assert.deepEqual([right.status, right.code], [open.status, open.code], 'the same as with auth off');
      else assert.equal(open.status, route.offStatus, 'with auth off');
    });
  }

  it('keeps health, readiness, the OpenAPI document and /metrics open', async () => {
    for (const route of OPEN_ROUTES) {
      const res = await call(guarded, { method: 'GET', path: route.path });
      assert.ok(res.status !== 401 && res.status !== 403, `${route.path}: ${res.status}`);
    }
  });

  it('asks /metrics for a token with the metrics scope when metricsAuth is token', async () => {
    const web = await startGuarded({ metricsAuth: 'token' });
    try {
      const route = { method: 'GET' as const, path: '/metrics' };
      assert.equal((await call(web, route)).status, 401);
      assert.equal((await call(web, route, tokens.read)).status, 403);
      assert.equal((await call(web, route, tokens.metrics)).status, 200);
    } finally {
      await web.close();
    }
  });

  it('asks the /cluster page, its snapshot and its event stream for the read scope', async () => {
    for (const path of ['/cluster/', '/cluster/snapshot']) {
      const route = { method: 'GET' as const, path };
      assert.deepEqual([(await call(guarded, route)).status, (await call(guarded, route)).code], [401, 'UNAUTHENTICATED'], `${path} without a token`);
      assert.deepEqual([(await call(guarded, route, tokens.infer)).status, (await call(guarded, route, tokens.infer)).code], [403, 'FORBIDDEN'], `${path} with infer only`);
      assert.equal((await call(guarded, route, tokens.read)).status, 200, `${path} with read`);
    }
    const events = await fetch(new URL('/cluster/events', guarded.url));
    assert.equal(events.status, 401, 'the event stream without a token');
    await events.body?.cancel();
  });

  it('answers 401 to a malformed Authorization header and to an unknown or forged token', async () => {
    const route = { method: 'GET' as const, path: '/api/info' };
    const real = tokens.read!;
    const forged = real.slice(0, -4) + (real.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    for (const header of ['Basic dXNlcjpwYXNz', 'Bearer', `Token ${real}`]) {
      const res = await fetch(new URL(route.path, guarded.url), { headers: { authorization: header } });
      assert.equal(res.status, 401, header);
    }
    for (const token of ['garbage', issueToken().token, forged]) {
      assert.deepEqual(Object.values(await call(guarded, route, token)).slice(0, 2), [401, 'UNAUTHENTICATED'], token);
    }
  });

  it('gives a token no scope beyond its user’s role', async () => {
    const viewer = await store.addUser({ name: 'vic', role: 'viewer' });
    const t = issueToken();
    await store.createToken({ id: t.id, userId: viewer.id, scopes: ['read', 'train'], hash: t.hash, expiresAt: null });
    assert.equal((await call(guarded, { method: 'GET', path: '/api/info' }, t.token)).status, 200);
    const train = await call(guarded, { method: 'GET', path: '/api/jobs/JOB' }, t.token);
    assert.deepEqual([train.status, train.code], [403, 'FORBIDDEN']);
    await rejectsWith(new AuthAdmin(store, 'test').createToken('vic', 'train'), 'BAD_REQUEST');
  });

  it('declares the bearer scheme and each route’s scope in the served OpenAPI document', async () => {
    const doc = (await (await fetch(new URL('/api/openapi.json', guarded.url))).json()) as {
      paths: Record<string, Record<string, { operationId: string; security: Record<string, string[]>[]; responses: Record<string, unknown> }>>;
      components: { securitySchemes: Record<string, { type: string; scheme: string }> };
    };
    assert.deepEqual(doc.components.securitySchemes[BEARER_SCHEME], { ...doc.components.securitySchemes[BEARER_SCHEME], type: 'http', scheme: 'bearer' });
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        const access = ROUTE_SCOPES[op.operationId];
        assert.deepEqual(op.security, access === 'open' ? [] : [{ [BEARER_SCHEME]: access === 'any' ? [] : [access] }], op.operationId);
        if (access !== 'open') assert.ok(op.responses['401'], op.operationId);
        if (access !== 'open' && access !== 'any') assert.ok(op.responses['403'], op.operationId);
      }
    }
  });

  it('refuses a token revoked through the CLI on a second replica on the same store', async () => {
    replica ??= await startGuarded();
    const added = await runCli(['users', 'add', 'cli-user', '--role', 'viewer', '--json', '--data', cluster.data]);
    assert.equal(added.code, 0, added.stderr);
    assert.equal((await store.userByName('cli-user'))?.role, 'viewer', "the web app's store sees the CLI's user");
    const refused = await runCli(['users', 'add', 'cli-user', '--data', cluster.data]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /zerve: ALREADY_EXISTS: /);
    const created = await runCli(['tokens', 'create', '--user', 'ada', '--scope', 'read', '--expires', '1d', '--json', '--data', cluster.data]);
    assert.equal(created.code, 0, created.stderr);
    const printed = JSON.parse(created.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(printed).sort(), ['expiresAt', 'id', 'scopes', 'token', 'user']);
    const token = String(printed.token);
    const route = { method: 'GET' as const, path: '/api/info' };
    assert.equal((await call(guarded, route, token)).status, 200);
    assert.equal((await call(replica, route, token)).status, 200);
    const listed = await runCli(['tokens', 'list', '--json', '--data', cluster.data]);
    assert.ok(!listed.stdout.includes(token), 'a listing never shows the secret');
    const revoked = await runCli(['tokens', 'revoke', String(printed.id), '--data', cluster.data]);
    assert.equal(revoked.code, 0, revoked.stderr);
    for (const web of [guarded, replica]) {
      await eventually('the revocation to hold', async () => (await call(web, route, token)).status === 401, 10_000);
    }
    const audit = await runCli(['audit', '--json', '--since', '1h', '--data', cluster.data]);
    const actions = audit.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { action: string; target: string }));
    assert.ok(actions.some((a) => a.action === 'token.revoke' && a.target === printed.id), audit.stdout);
  });

  it('manages users and tokens over HTTP as the CLI does, acting as the caller in the audit log', async () => {
    const post = (path: string, body: unknown) => ({ method: 'POST' as const, path, body: json(body) });
    assert.equal((await call(guarded, post('/api/users', { name: 'http-user', role: 'member' }), tokens.admin)).status, 201);
    const dup = await call(guarded, post('/api/users', { name: 'http-user' }), tokens.admin);
    assert.deepEqual([dup.status, dup.code], [409, 'ALREADY_EXISTS']);
    const res = await fetch(new URL('/api/tokens', guarded.url), {
      method: 'POST',
      body: JSON.stringify({ user: 'http-user', scopes: 'read' }),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.admin}` },
    });
    assert.equal(res.status, 201);
    const created = (await res.json()) as { id: string; token: string };
    assert.equal((await call(guarded, { method: 'GET', path: '/api/info' }, created.token)).status, 200);
    const beyond = await call(guarded, post('/api/tokens', { user: 'http-user', scopes: 'admin' }), tokens.admin);
    assert.deepEqual([beyond.status, beyond.code], [400, 'BAD_REQUEST'], 'a member holds no admin scope');
    const ghost = await call(guarded, post('/api/tokens', { user: 'ghost', scopes: 'read' }), tokens.admin);
    assert.deepEqual([ghost.status, ghost.code], [404, 'UNKNOWN_USER']);
    const unknown = await call(guarded, { method: 'DELETE', path: '/api/tokens/0123456789ab' }, tokens.admin);
    assert.deepEqual([unknown.status, unknown.code], [404, 'UNKNOWN_TOKEN']);
    assert.equal((await call(guarded, { method: 'DELETE', path: `/api/tokens/${created.id}` }, tokens.admin)).status, 200);
    await eventually('the revocation to hold', async () => (await call(guarded, { method: 'GET', path: '/api/info' }, created.token)).status === 401, 10_000);
    const audit = await store.listAudit();
    assert.ok(audit.some((e) => e.action === 'token.revoke' && e.target === created.id && e.user === 'ada'), 'ada revoked it, per the audit log');
    const bad = await call(guarded, { method: 'POST', path: '/api/users', body: () => ({ body: '[1]', headers: { 'content-type': 'application/json' } }) }, tokens.admin);
    assert.deepEqual([bad.status, bad.code], [400, 'BAD_REQUEST']);
  });

  it('logs the page in with a token into an HttpOnly SameSite=Lax cookie, refuses cross-site writes, and logs out on every replica', async () => {
    const origin = new URL(guarded.url).origin;
    const member = await new AuthAdmin(store, 'test').addUser('pat', 'member');
    const { token } = await new AuthAdmin(store, 'test').createToken(member.name, 'read,infer');
    const session = (init: RequestInit & { cookie?: string; from?: string } = {}) =>
      fetch(new URL('/api/session', guarded.url), {
        ...init,
        headers: { 'content-type': 'application/json', origin: init.from ?? origin, ...(init.cookie ? { cookie: init.cookie } : {}) },
      });
    const crossSite = await session({ method: 'POST', body: JSON.stringify({ token }), from: 'http://evil.example' });
    assert.equal(crossSite.status, 403, 'no login from another site');
    assert.equal((await session({ method: 'POST', body: JSON.stringify({ token: 'zrv_nope' }) })).status, 401);
    const login = await session({ method: 'POST', body: JSON.stringify({ token }) });
    assert.equal(login.status, 201);
    const setCookie = login.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /^zerve_session=zrv_[0-9a-f]{12}_/);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Lax/);
    assert.doesNotMatch(setCookie, /Secure/, 'not Secure over plain HTTP');
    const cookie = setCookie.split(';')[0]!;
    const who = (await (await session({ cookie })).json()) as { user: string; scopes: string[] };
    assert.deepEqual([who.user, who.scopes], ['pat', ['read', 'infer']]);
    const classify = (headers: Record<string, string>) =>
      fetch(new URL('/api/classify?model=squeezenet&sample=kitten.png', guarded.url), { method: 'POST', headers: { cookie, ...headers } });
    assert.equal((await classify({ origin: 'http://evil.example' })).status, 403, 'a cross-site POST with the cookie');
    assert.equal((await classify({ 'sec-fetch-site': 'cross-site' })).status, 403);
    assert.equal((await classify({ origin })).status, 200, 'the page itself');
    const job = await fetch(new URL('/api/jobs?model=squeezenet&sample=kitten.png', guarded.url), { method: 'POST', headers: { cookie, origin } });
    assert.equal(job.status, 403, 'the session has the scopes of its token, no more');
    replica ??= await startGuarded();
    assert.equal((await fetch(new URL('/api/info', replica.url), { headers: { cookie } })).status, 200, 'a session holds on every replica');
    assert.equal((await session({ method: 'DELETE', cookie })).status, 204);
    for (const web of [guarded, replica]) {
      await eventually('the logout to hold', async () => (await fetch(new URL('/api/info', web.url), { headers: { cookie } })).status === 401, 10_000);
    }
    assert.equal((await fetch(new URL('/api/session', guarded.url))).status, 401, 'nobody is logged in without a cookie');
    assert.equal((await fetch(new URL('/api/info', guarded.url), { headers: { authorization: `Bearer ${token}` } })).status, 200, 'the token itself stays valid');
  });

  it('answers 429 TOO_MANY_ATTEMPTS with Retry-After to an address past its failed authentications, even with a good token', async () => {
    const web = await startGuarded({ maxAuthFailures: 3, authFailureWindowMs: 60_000 });
    try {
      const route = { method: 'GET' as const, path: '/api/info' };
      assert.equal((await call(web, route)).status, 401, 'no credentials at all is no attempt');
      for (let i = 0; i < 3; i++) assert.equal((await call(web, route, issueToken().token)).status, 401);
      for (const token of [issueToken().token, tokens.read]) {
        const limited = await call(web, route, token);
        assert.deepEqual([limited.status, limited.code], [429, 'TOO_MANY_ATTEMPTS']);
        assert.match(limited.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
      }
    } finally {
      await web.close();
    }
  });

  it("keeps user B's job from user A: status, events and cancel answer 403, while B and an admin get through", async () => {
    const admin = new AuthAdmin(store, 'test');
    await admin.addUser('alice', 'member');
    await admin.addUser('bert', 'member');
    const a = (await admin.createToken('alice', 'train')).token;
    const b = (await admin.createToken('bert', 'train')).token;
    const submit = await fetch(new URL('/api/jobs?model=squeezenet&sample=kitten.png', guarded.url), { method: 'POST', headers: { authorization: `Bearer ${b}` } });
    assert.equal(submit.status, 202);
    const id = ((await submit.json()) as { id: string }).id;
    const at = (path: string, method: Route['method'] = 'GET') => ({ method, path: path.replace('ID', id) });
    for (const route of [at('/api/jobs/ID'), at('/api/jobs/ID/events'), at('/api/jobs/ID', 'DELETE')]) {
      const refused = await call(guarded, route, a);
      assert.deepEqual([refused.status, refused.code], [403, 'FORBIDDEN'], `alice: ${route.method} ${route.path}`);
    }
    assert.equal((await call(guarded, at('/api/jobs/ID'), b)).status, 200);
    assert.equal((await call(guarded, at('/api/jobs/ID'), tokens.train)).status, 200, 'an admin reads it');
    assert.equal((await call(guarded, at('/api/jobs/ID', 'DELETE'), b)).status, 200, 'its owner cancels it');
    const audit = await store.listAudit();
    assert.ok(audit.some((e) => e.action === 'job.cancel' && e.target === id && e.user === 'bert'), 'the cancel is in the audit log with its user');
  });

  it('refuses to start open on a non-loopback address unless insecure, and refuses unknown modes', async () => {
    await rejectsWith(Promise.resolve().then(() => new WebApp({ host: '0.0.0.0', auth: 'off' }, testLogger)), 'BAD_CONFIG');
    await rejectsWith(Promise.resolve().then(() => new WebApp({ auth: 'maybe' }, testLogger)), 'BAD_CONFIG');
    await rejectsWith(Promise.resolve().then(() => new WebApp({ auth: 'tokens', metricsAuth: 'sometimes', data: cluster.data }, testLogger)), 'BAD_CONFIG');
    await rejectsWith(Promise.resolve().then(() => new WebApp({ auth: 'tokens', maxAuthFailures: 0, data: cluster.data }, testLogger)), 'BAD_CONFIG');
    await rejectsWith(Promise.resolve().then(() => new WebApp({ auth: 'oidc', data: cluster.data }, testLogger)), 'BAD_CONFIG');
    const open = new WebApp({ host: '0.0.0.0', auth: 'off', insecure: true, http: 0, broker: cluster.broker.frontendEndpoint }, testLogger);
    await open.close();
    assert.ok(ERROR_CODES.UNAUTHENTICATED && ERROR_CODES.FORBIDDEN);
  });

  describe('on the page', () => {
    let browser: Browser;
    before(async () => {
      browser = await launchBrowser({ width: 1100, height: 900 });
    });
    after(async () => {
      await browser?.close();
    });

    it('logs in with a token, classifies, is told FORBIDDEN beyond its scopes, and logs out (screenshots)', async () => {
      const admin = new AuthAdmin(store, 'test');
      await admin.addUser('vera', 'viewer');
      const { token } = await admin.createToken('vera', 'read,infer');
      const page = await browser.context.newPage();
      try {
        await page.goto(guarded.url);
        await page.waitForSelector('body[data-session="logged-out"]');
        await page.screenshot({ path: join(SCREENSHOTS, 'auth-logged-out.png'), fullPage: true });
        await page.fill('#login-token', token);
        await Promise.all([page.waitForEvent('load'), page.click('#login button[type="submit"]')]);
        await page.waitForSelector('body[data-session="logged-in"]');
        await page.waitForSelector('body[data-ready="true"]');
        assert.match((await page.textContent('#whoami')) ?? '', /^vera \(viewer: read, infer\)/);
        await page.click('button[data-sample="kitten.png"]');
        await page.waitForFunction(() => /tabby/.test(document.getElementById('status')?.textContent ?? ''));
        await page.screenshot({ path: join(SCREENSHOTS, 'auth-logged-in.png'), fullPage: true });
        await page.click('#add-model-title');
        await page.setInputFiles('#add-model-file', { name: 'm.onnx', mimeType: 'application/octet-stream', buffer: Buffer.from('not onnx') });
        await page.fill('#add-model-name', 'veras');
        await page.click('#add-model button[type="submit"]');
        await page.waitForFunction(() => /FORBIDDEN/.test(document.getElementById('add-model-status')?.textContent ?? ''));
        await page.screenshot({ path: join(SCREENSHOTS, 'auth-forbidden.png'), fullPage: true });
        await Promise.all([page.waitForEvent('load'), page.click('#logout')]);
        await page.waitForSelector('body[data-session="logged-out"]');
      } finally {
        await page.close();
      }
    });

    it('warns on the page of a web app open on a non-loopback address (--insecure)', async () => {
      const open = new WebApp({ host: '0.0.0.0', http: 0, auth: 'off', insecure: true, broker: cluster.broker.frontendEndpoint, samples: SAMPLES }, testLogger);
      const page = await browser.context.newPage();
      try {
        await open.start();
        await page.goto(open.url);
        await page.waitForSelector('body[data-session="open"] .insecure[role="alert"]');
      } finally {
        await page.close();
        await open.close();
      }
    });
  });
});
