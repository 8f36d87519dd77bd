import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { issueToken, tokenIdOf, tokenMatches } from '../shared/api-token.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { authStoreBehaviour } from './helpers/auth-store-behaviour.ts';
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
    assert.throws(() => new AuthFailureLimiter({ maxAuthFailures: 0, authFailureWindowMs: 60_000 }), hasCode('BAD_REQUEST'));
    assert.throws(() => new AuthFailureLimiter({ maxAuthFailures: 3, authFailureWindowMs: 10 }), hasCode('BAD_REQUEST'));
  });
});
