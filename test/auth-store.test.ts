import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { issueToken, tokenIdOf, tokenMatches } from '../shared/api-token.ts';
import { AuthAdmin } from '../shared/auth-admin.ts';
import { openAuthStore } from '../shared/store/open-auth-store.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { authStoreBehaviour } from './helpers/auth-store-behaviour.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { hasCode, rejectsWith } from './helpers/error-code.ts';
import { AuthFailureLimiter } from '../webapp/auth-failure-limiter.ts';

describe('auth store (SQLite)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zerve-auth-store-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  let n = 0;
  authStoreBehaviour(async () => SqliteAuthStore.inDataDir(join(dir, `d${n++}`)));

  it('shows one process the users and revocations another wrote to the same data directory', async () => {
    const a = SqliteAuthStore.inDataDir(join(dir, 'shared'));
    const b = SqliteAuthStore.inDataDir(join(dir, 'shared'));
    try {
      const ada = await a.addUser({ name: 'ada', role: 'admin' });
      const t = issueToken();
      await a.createToken({ id: t.id, userId: ada.id, scopes: ['read'], hash: t.hash, expiresAt: null });
      assert.equal((await b.userByName('ada'))?.id, ada.id);
      await b.revokeToken(t.id);
      assert.notEqual((await a.tokenById(t.id))?.revokedAt, null);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('auth store (PostgreSQL)', () => {
  let server: TestPostgres | undefined;
  let databases = 0;
  before(async function () {
    skipUnlessPostgres(this);
    this.timeout(30_000);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  authStoreBehaviour(async () => openAuthStore(await server!.createDatabase(`auth${++databases}`), '.', testLogger));

  it('migrates once when two stores open one database together, beside the jobs tables', async () => {
    const url = await server!.createDatabase('auth_shared');
    const { openJobStore } = await import('../shared/store/open-job-store.ts');
    const jobs = await openJobStore(url, '.', { resultTtlMs: 60_000, maxProgressEntries: 3 }, testLogger);
    const [a, b] = await Promise.all([openAuthStore(url, '.', testLogger), openAuthStore(url, '.', testLogger)]);
    try {
      const ada = await a.addUser({ name: 'ada', role: 'admin' });
      const t = issueToken();
      await a.createToken({ id: t.id, userId: ada.id, scopes: ['read'], hash: t.hash, expiresAt: null });
      assert.equal((await b.userByName('ada'))?.id, ada.id);
      await b.revokeToken(t.id);
      assert.notEqual((await a.tokenById(t.id))?.revokedAt, null);
      assert.equal(await jobs.count('queued'), 0, 'the jobs tables are untouched');
    } finally {
      await Promise.all([a.close(), b.close(), jobs.close()]);
    }
  });

  it('answers STORE_UNAVAILABLE while the server is down, and serves again once it is back', async function () {
    this.timeout(60_000);
    const store = await openAuthStore(await server!.createDatabase('auth_outage'), '.', testLogger, { pool: { connectTimeoutMs: 1000 } });
    try {
      await store.addUser({ name: 'ada', role: 'admin' });
      await server!.stop();
      try {
        await rejectsWith(store.userByName('ada'), 'STORE_UNAVAILABLE');
      } finally {
        await server!.up();
      }
      assert.equal((await store.userByName('ada'))?.name, 'ada');
    } finally {
      await store.close();
    }
  });
});

describe('API tokens', () => {
  it('match their own hash only, and carry their id', () => {
    const t = issueToken();
    const other = issueToken();
    assert.equal(tokenIdOf(t.token), t.id);
    assert.ok(tokenMatches(t.token, t.hash));
    assert.ok(!tokenMatches(other.token, t.hash));
    assert.ok(!tokenMatches(t.token, 'abcd'), 'a short stored hash never matches');
  });

  it('have no id when malformed', () => {
    for (const bad of ['', 'Bearer x', 'zrv_', 'zrv_0123456789ab_short', `zrv_XYZ_${'a'.repeat(43)}`]) {
      assert.equal(tokenIdOf(bad), undefined, bad);
    }
  });
});

describe('failed authentication limits', () => {
  it('refuse a token id past its failures, from any address, and not other keys', async () => {
    const limiter = new AuthFailureLimiter({ maxAuthFailures: 2, authFailureWindowMs: 60_000 });
    await limiter.fail(['address:a', 'token:t1']);
    await limiter.fail(['address:b', 'token:t1']);
    await rejectsWith(limiter.check(['address:c', 'token:t1']), 'TOO_MANY_ATTEMPTS');
    await limiter.check(['address:a', 'token:t2']);
    await limiter.fail(['token:t1']); // past the limit already: counted without an error
  });

  it('refuse settings that cannot work', () => {
    assert.throws(() => new AuthFailureLimiter({ maxAuthFailures: 0, authFailureWindowMs: 60_000 }), hasCode('BAD_CONFIG'));
    assert.throws(() => new AuthFailureLimiter({ maxAuthFailures: 3, authFailureWindowMs: 10 }), hasCode('BAD_CONFIG'));
  });
});

describe('user and token management', () => {
  let dir: string;
  let store: SqliteAuthStore;
  let admin: AuthAdmin;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zerve-auth-admin-'));
    store = SqliteAuthStore.inDataDir(dir);
    admin = new AuthAdmin(store, 'tester');
    await admin.addUser('ada', 'member', 'ada@example.org');
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a bad user name or role with BAD_REQUEST', async () => {
    for (const name of ['', 'with space', 'a/b', 'x'.repeat(65)]) await rejectsWith(admin.addUser(name, 'member'), 'BAD_REQUEST');
    await rejectsWith(admin.addUser('bob', 'owner'), 'BAD_REQUEST');
    assert.deepEqual((await store.listUsers()).map((u) => u.name), ['ada']);
  });

  it('refuses unknown scopes, scopes beyond the role, no scopes, a bad lifetime and an unknown user', async () => {
    await rejectsWith(admin.createToken('ada', 'read,everything'), 'BAD_REQUEST');
    await rejectsWith(admin.createToken('ada', 'admin'), 'BAD_REQUEST');
    await rejectsWith(admin.createToken('ada', ' , '), 'BAD_REQUEST');
    for (const expires of ['90', '90x', '-1d', '0d', 'soon']) await rejectsWith(admin.createToken('ada', 'read', expires), 'BAD_REQUEST');
    await rejectsWith(admin.createToken('nobody', 'read'), 'UNKNOWN_USER');
    assert.deepEqual(await store.listTokens(), [], 'nothing was stored');
  });

  it('makes a token that expires when asked, lists it without its secret, and audits who did it', async () => {
    const now = Date.UTC(2030, 0, 1);
    const created = await admin.createToken('ada', 'read,infer,read', '90d', now);
    assert.deepEqual(created.scopes, ['read', 'infer']);
    assert.equal(created.expiresAt, new Date(now + 90 * 86_400_000).toISOString());
    const [listed] = await admin.listTokens();
    assert.deepEqual(Object.keys(listed!).sort(), ['createdAt', 'expiresAt', 'id', 'revokedAt', 'scopes', 'user']);
    await rejectsWith(admin.revokeToken('000000000000'), 'UNKNOWN_TOKEN');
    await admin.revokeToken(created.id);
    assert.deepEqual((await store.listAudit()).map((e) => [e.user, e.action]), [['tester', 'user.add'], ['tester', 'token.create'], ['tester', 'token.revoke']]);
  });
});
