import assert from 'node:assert/strict';
import { issueToken } from '../../shared/api-token.ts';
import type { AuthStore } from '../../shared/store/auth-store.ts';
import { rejectsWith } from './error-code.ts';

/**
 * The behaviour every AuthStore backend must have, as mocha `it`s over a factory of fresh, empty
 * stores; each backend's test file calls it inside its own describe.
 */
export function authStoreBehaviour(makeStore: () => Promise<AuthStore>): void {
  let store: AuthStore;
  beforeEach(async () => {
    store = await makeStore();
  });
  afterEach(async () => {
    await store.close();
  });

  it('adds users and finds them by name and id', async () => {
    const ada = await store.addUser({ name: 'ada', role: 'admin', email: 'ada@example.org' });
    const bob = await store.addUser({ name: 'bob', role: 'member' });
    assert.equal((await store.userByName('ada'))?.id, ada.id);
    assert.equal((await store.userById(bob.id))?.name, 'bob');
    assert.equal((await store.userById(bob.id))?.email, '');
    assert.equal(await store.userByName('carol'), undefined);
    assert.deepEqual((await store.listUsers()).map((u) => [u.name, u.role]), [['ada', 'admin'], ['bob', 'member']]);
  });

  it('refuses a second user of the same name with ALREADY_EXISTS', async () => {
    await store.addUser({ name: 'ada', role: 'admin' });
    await rejectsWith(store.addUser({ name: 'ada', role: 'viewer' }), 'ALREADY_EXISTS');
    assert.equal((await store.listUsers()).length, 1);
  });

  it('keeps a token by id with its hash, scopes and expiry, and lists it per user', async () => {
    const ada = await store.addUser({ name: 'ada', role: 'admin' });
    const bob = await store.addUser({ name: 'bob', role: 'member' });
    const t1 = issueToken();
    const t2 = issueToken();
    await store.createToken({ id: t1.id, userId: ada.id, scopes: ['read', 'admin'], hash: t1.hash, expiresAt: null });
    await store.createToken({ id: t2.id, userId: bob.id, scopes: ['infer'], hash: t2.hash, expiresAt: 1234 });
    const stored = await store.tokenById(t2.id);
    assert.deepEqual(
      { ...stored, createdAt: 0 },
      { id: t2.id, userId: bob.id, userName: 'bob', scopes: ['infer'], hash: t2.hash, createdAt: 0, expiresAt: 1234, revokedAt: null },
    );
    assert.deepEqual((await store.listTokens()).map((t) => t.id), [t1.id, t2.id]);
    assert.deepEqual((await store.listTokens(ada.id)).map((t) => t.id), [t1.id]);
    assert.equal(await store.tokenById('nope'), undefined);
  });

  it('refuses a token for a user that does not exist with UNKNOWN_USER', async () => {
    const t = issueToken();
    await rejectsWith(store.createToken({ id: t.id, userId: 'ghost', scopes: ['read'], hash: t.hash, expiresAt: null }), 'UNKNOWN_USER');
  });

  it('revokes a token once and keeps the first revocation time', async () => {
    const ada = await store.addUser({ name: 'ada', role: 'admin' });
    const t = issueToken();
    await store.createToken({ id: t.id, userId: ada.id, scopes: ['read'], hash: t.hash, expiresAt: null });
    assert.equal(await store.revokeToken(t.id, 1000), true);
    assert.equal(await store.revokeToken(t.id, 2000), true);
    assert.equal((await store.tokenById(t.id))?.revokedAt, 1000);
    assert.equal(await store.revokeToken('nope'), false);
  });

  it('appends audit entries in order and lists them since a time', async () => {
    await store.appendAudit({ user: 'ada', action: 'user.add', target: 'bob', at: 100 });
    await store.appendAudit({ user: 'ada', action: 'token.create', target: 'abc', at: 200, details: { scopes: ['read'] } });
    const all = await store.listAudit();
    assert.deepEqual(all.map((e) => [e.action, e.at]), [['user.add', 100], ['token.create', 200]]);
    assert.ok(all[0]!.seq < all[1]!.seq);
    assert.deepEqual(all[1]!.details, { scopes: ['read'] });
    assert.deepEqual((await store.listAudit(150)).map((e) => e.target), ['abc']);
  });

  it('records several owners of one item once each, and none for an item nobody recorded', async () => {
    await store.addOwner({ kind: 'dataset', id: 'abc', ownerId: 'u1' });
    await store.addOwner({ kind: 'dataset', id: 'abc', ownerId: 'u2', shared: true });
    await store.addOwner({ kind: 'dataset', id: 'abc', ownerId: 'u1', shared: true });
    assert.deepEqual((await store.ownersOf('dataset', 'abc')).map((o) => [o.ownerId, o.shared]), [['u1', false], ['u2', true]]);
    assert.deepEqual(await store.ownersOf('job', 'abc'), []);
  });

  it('closes twice without error', async () => {
    await store.close();
    await store.close();
  });
}
