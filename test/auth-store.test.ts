import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { issueToken, tokenIdOf, tokenMatches } from '../shared/api-token.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { authStoreBehaviour } from './helpers/auth-store-behaviour.ts';

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
