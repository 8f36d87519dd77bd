import { ZerveError } from './errors.ts';
import { ROLES, SCOPES, type Role, type Scope } from './store/auth-store.ts';

/** The most each role's tokens may carry; a token's scopes beyond its user's role count for nothing. */
export const ROLE_SCOPES: Readonly<Record<Role, readonly Scope[]>> = {
  admin: SCOPES,
  member: ['infer', 'read', 'train', 'models'],
  viewer: ['infer', 'read'],
};

/** Who is calling, once authenticated: what the web app passes on and checks scopes against. */
export interface Principal {
  userId: string;
  userName: string;
  role: Role;
  /** The token's scopes within the role's (all of the role's for a session or with auth off). */
  scopes: readonly Scope[];
}

/** The caller when auth is off: `anonymous`, with every scope. */
export const ANONYMOUS: Principal = { userId: 'anonymous', userName: 'anonymous', role: 'admin', scopes: SCOPES };

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/** Parses `read,infer` into scopes a token of `role` may hold; BAD_REQUEST names the first that is not. */
export function parseScopes(text: string, role: Role): Scope[] {
  const scopes = [...new Set(text.split(',').map((s) => s.trim()).filter((s) => s !== ''))];
  if (scopes.length === 0) throw new ZerveError('BAD_REQUEST', `no scopes given (choose from ${SCOPES.join(', ')})`);
  for (const scope of scopes) {
    if (!(SCOPES as readonly string[]).includes(scope)) {
      throw new ZerveError('BAD_REQUEST', `unknown scope ${JSON.stringify(scope)} (choose from ${SCOPES.join(', ')})`);
    }
    if (!ROLE_SCOPES[role].includes(scope as Scope)) {
      throw new ZerveError('BAD_REQUEST', `scope ${scope} is beyond the role ${role} (${ROLE_SCOPES[role].join(', ')})`);
    }
  }
  return scopes as Scope[];
}
