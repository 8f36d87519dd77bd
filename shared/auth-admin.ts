import { isRole, parseScopes } from './access-policy.ts';
import { issueToken } from './api-token.ts';
import { parseDurationMs } from './duration.ts';
import { ZerveError } from './errors.ts';
import type { AuthStore, Scope, TokenRecord, User } from './store/auth-store.ts';

/** What `zerve tokens create --json` prints: the token in clear, this once. */
export interface CreatedToken {
  id: string;
  token: string;
  user: string;
  scopes: Scope[];
  /** ISO 8601, or null for a token that does not expire. */
  expiresAt: string | null;
}

/** A token as listed: never its secret or hash. */
export interface TokenListing {
  id: string;
  user: string;
  scopes: Scope[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

const USER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/**
 * The management actions on users and tokens, each checked and written to the audit log with the
 * user who acted: what `zerve users` and `zerve tokens` run against the store.
 */
export class AuthAdmin {
  constructor(
    private readonly store: AuthStore,
    /** Who acts, as the audit log names them. */
    private readonly actor: string,
  ) {}

  async addUser(name: string, role: string, email = ''): Promise<User> {
    if (!USER_NAME.test(name)) throw new ZerveError('BAD_REQUEST', `a user name is 1-64 of A-Z a-z 0-9 . _ @ -, got ${JSON.stringify(name)}`);
    if (!isRole(role)) throw new ZerveError('BAD_REQUEST', `role must be admin, member or viewer, got ${JSON.stringify(role)}`);
    const user = await this.store.addUser({ name, role, email });
    await this.store.appendAudit({ user: this.actor, action: 'user.add', target: name, details: { role } });
    return user;
  }

  /** Makes a token for `userName` with `scopes` (comma-separated), valid for `expires` (`90d`; '' never expires). */
  async createToken(userName: string, scopes: string, expires = '', now = Date.now()): Promise<CreatedToken> {
    const user = await this.store.userByName(userName);
    if (!user) throw new ZerveError('UNKNOWN_USER', `no user named ${JSON.stringify(userName)} (zerve users add ${userName})`);
    const parsed = parseScopes(scopes, user.role);
    const expiresAt = expires === '' ? null : now + parseDurationMs(expires);
    const issued = issueToken();
    await this.store.createToken({ id: issued.id, userId: user.id, scopes: parsed, hash: issued.hash, expiresAt });
    await this.store.appendAudit({ user: this.actor, action: 'token.create', target: issued.id, details: { user: user.name, scopes: parsed } });
    return { id: issued.id, token: issued.token, user: user.name, scopes: parsed, expiresAt: isoOrNull(expiresAt) };
  }

  async listTokens(): Promise<TokenListing[]> {
    return (await this.store.listTokens()).map(listingOf);
  }

  async revokeToken(id: string): Promise<void> {
    if (!(await this.store.revokeToken(id))) throw new ZerveError('UNKNOWN_TOKEN', `no token with id ${JSON.stringify(id)}`);
    await this.store.appendAudit({ user: this.actor, action: 'token.revoke', target: id });
  }
}

function listingOf(t: TokenRecord): TokenListing {
  return {
    id: t.id,
    user: t.userName,
    scopes: t.scopes,
    createdAt: new Date(t.createdAt).toISOString(),
    expiresAt: isoOrNull(t.expiresAt),
    revokedAt: isoOrNull(t.revokedAt),
  };
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
