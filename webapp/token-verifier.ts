import { LRUCache } from 'lru-cache';
import { ROLE_SCOPES, type Principal } from '../shared/access-policy.ts';
import { tokenIdOf, tokenMatches } from '../shared/api-token.ts';
import { ZerveError } from '../shared/errors.ts';
import type { AuthStore, TokenRecord, User } from '../shared/store/auth-store.ts';

export interface TokenVerifierOptions {
  /** How long a token's record and user are trusted before the store is read again. @defaultValue 2000 */
  cacheMs: number;
  /** Token ids remembered at once (unknown ids included, so a flood of them does not reach the store). @defaultValue 10000 */
  maxCached: number;
}

export const DEFAULT_TOKEN_VERIFIER_OPTIONS: TokenVerifierOptions = { cacheMs: 2000, maxCached: 10_000 };

type Cached = { token: TokenRecord; user: User } | { missing: true };

/**
 * Turns a bearer token into a Principal, reading the auth store through a short cache, so a
 * revocation made anywhere holds here within `cacheMs`. The secret is compared by hash in constant time.
 */
export class TokenVerifier {
  private readonly options: TokenVerifierOptions;
  private readonly cache: LRUCache<string, Cached>;

  constructor(
    private readonly store: AuthStore,
    options: Partial<TokenVerifierOptions> = {},
  ) {
    this.options = { ...DEFAULT_TOKEN_VERIFIER_OPTIONS, ...options };
    if (!(this.options.cacheMs >= 0)) throw new ZerveError('BAD_REQUEST', `authCacheMs must be >= 0, got ${this.options.cacheMs}`);
    this.cache = new LRUCache({ max: this.options.maxCached, ttl: Math.max(1, this.options.cacheMs) });
  }

  /** The caller a token stands for; UNAUTHENTICATED when it is malformed, unknown, revoked or expired. */
  async verify(token: string, now = Date.now()): Promise<Principal> {
    const id = tokenIdOf(token);
    if (id === undefined) throw new ZerveError('UNAUTHENTICATED', 'the bearer token is malformed');
    const entry = await this.lookup(id);
    if ('missing' in entry || !tokenMatches(token, entry.token.hash)) {
      throw new ZerveError('UNAUTHENTICATED', 'the bearer token is unknown');
    }
    const { token: record, user } = entry;
    if (record.revokedAt !== null) throw new ZerveError('UNAUTHENTICATED', `token ${id} was revoked`);
    if (record.expiresAt !== null && record.expiresAt <= now) throw new ZerveError('UNAUTHENTICATED', `token ${id} has expired`);
    const allowed = ROLE_SCOPES[user.role];
    return { userId: user.id, userName: user.name, role: user.role, scopes: record.scopes.filter((s) => allowed.includes(s)) };
  }

  private async lookup(id: string): Promise<Cached> {
    const cached = this.options.cacheMs > 0 ? this.cache.get(id) : undefined;
    if (cached) return cached;
    const token = await this.store.tokenById(id);
    const user = token && (await this.store.userById(token.userId));
    const entry: Cached = token && user ? { token, user } : { missing: true };
    if (this.options.cacheMs > 0) this.cache.set(id, entry);
    return entry;
  }
}
