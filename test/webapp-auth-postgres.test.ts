import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AuthAdmin } from '../shared/auth-admin.ts';
import type { AuthStore } from '../shared/store/auth-store.ts';
import { openAuthStore } from '../shared/store/open-auth-store.ts';
import { AUTH_STORE_FILE } from '../shared/store/sqlite-auth-store.ts';
import { WebApp } from '../webapp/web-app.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { runCli, tempDir, TEST_ENV } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

/** Routes that need only the auth store: no broker runs here. */
const LIST_USERS = '/api/users';

describe('web app auth on a PostgreSQL store', function () {
  this.timeout(120_000);
  let server: TestPostgres | undefined;
  let databases = 0;
  let url: string;
  let data: { path: string; remove: () => Promise<void> };
  let store: AuthStore;
  const apps: WebApp[] = [];

  before(async function () {
    skipUnlessPostgres(this);
    this.timeout(30_000);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  beforeEach(async () => {
    url = await server!.createDatabase(`webauth${++databases}`);
    data = await tempDir('zerve-webauth-pg-');
    store = await openAuthStore(url, data.path, testLogger);
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((web) => web.close()));
    await store.close();
    await data.remove();
  });

  /** A replica on the test's database; its `--data` holds no auth store, so a 200 comes from PostgreSQL. */
  async function startReplica(options: Partial<WebApp['options']> = {}): Promise<WebApp> {
    const web = new WebApp(
      { broker: 'tcp://127.0.0.1:1', http: 0, auth: 'tokens', store: url, data: data.path, authCacheMs: 200, maxAuthFailures: 100_000, ...options },
      testLogger,
    );
    apps.push(web);
    await web.start();
    return web;
  }

  async function call(web: WebApp, token: string): Promise<{ status: number; code?: string; retryAfter: string | null }> {
    const res = await fetch(new URL(LIST_USERS, web.url), { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.json()) as { error?: { code?: string }; code?: string };
    return { status: res.status, code: body.error?.code ?? body.code, retryAfter: res.headers.get('retry-after') };
  }

  it('refuses a token revoked with zerve tokens revoke --store on two replicas on that store', async () => {
    const [a, b] = await Promise.all([startReplica(), startReplica()]);
    const added = await runCli(['users', 'add', 'ada', '--role', 'admin', '--store', url]);
    assert.equal(added.code, 0, added.stderr);
    const created = await runCli(['tokens', 'create', '--user', 'ada', '--scope', 'admin', '--json', '--store', url]);
    assert.equal(created.code, 0, created.stderr);
    const { id, token } = JSON.parse(created.stdout) as { id: string; token: string };
    for (const web of [a, b]) assert.equal((await call(web, token)).status, 200);
    assert.ok(!existsSync(join(data.path, AUTH_STORE_FILE)), 'nothing was written to the SQLite store of --data');

    const revoked = await runCli(['tokens', 'revoke', id, '--store', url]);
    assert.equal(revoked.code, 0, revoked.stderr);
    for (const web of [a, b]) {
      await eventually('the revocation to hold', async () => (await call(web, token)).status === 401, 10_000);
    }
    const audit = await runCli(['audit', '--json'], { ...TEST_ENV, ZERVE_STORE: url });
    assert.equal(audit.code, 0, audit.stderr);
    const actions = audit.stdout.trim().split('\n').map((line) => JSON.parse(line) as { action: string; target: string });
    assert.ok(actions.some((e) => e.action === 'token.revoke' && e.target === id), audit.stdout);
  });

  it('answers 503 STORE_UNAVAILABLE, not 500 nor 429, to requests needing auth while PostgreSQL is down', async () => {
    const admin = new AuthAdmin(store, 'test');
    await admin.addUser('ada', 'admin');
    const { token } = await admin.createToken('ada', 'admin');
    // No cache: every request has the gate read the token from the store (and find it down).
    const web = await startReplica({ authCacheMs: 0, maxAuthFailures: 2 });
    assert.equal((await call(web, token)).status, 200);
    await server!.stop();
    try {
      for (let i = 0; i < 4; i++) {
        const down = await call(web, token);
        assert.deepEqual([down.status, down.code], [503, 'STORE_UNAVAILABLE'], 'an outage is no failed authentication');
        assert.notEqual(down.retryAfter, null);
      }
    } finally {
      await server!.up();
    }
    await eventually('the store to serve again', async () => (await call(web, token)).status === 200, 30_000);
  });

  it('does not start on a store it cannot open, and says why', async () => {
    const web = new WebApp({ broker: 'tcp://127.0.0.1:1', http: 0, auth: 'tokens', store: server!.urlFor(`webauth${databases}`, 'wrong'), data: data.path }, testLogger);
    apps.push(web);
    await assert.rejects(web.start(), (err: { code?: string }) => err.code === 'BAD_CONFIG');
  });
});
