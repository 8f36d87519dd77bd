import type { Request, RequestHandler } from 'express';
import * as client from 'openid-client';
import { ROLE_SCOPES } from '../shared/access-policy.ts';
import type { WebAuthOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { AuthStore, Role, User } from '../shared/store/auth-store.ts';
import type { SessionIssuer } from './session-routes.ts';

/** Cookie carrying the state and PKCE verifier of a login in progress (HttpOnly, SameSite=Lax, 10 minutes). */
const PENDING_COOKIE = 'zerve_oidc';
const PENDING_MAX_AGE_MS = 10 * 60_000;
export const OIDC_LOGIN_PATH = '/auth/login';
export const OIDC_CALLBACK_PATH = '/auth/callback';

/** The `oidc*` options of WebAuthOptions (shared/config.ts), with their documentation. */
export type OidcLoginOptions = Pick<WebAuthOptions, 'oidcIssuer' | 'oidcClientId' | 'oidcClientSecret' | 'oidcAdmins' | 'oidcMembers' | 'oidcAllowHttp'>;

/**
 * Login on the page through an OpenID Connect provider: authorization code with PKCE
 * (`openid-client`). `GET /auth/login` sends the browser to the provider; `GET /auth/callback`
 * checks state, code and ID token, creates the user on first login with the role of their group or
 * domain, and starts a page session (session-routes.ts).
 */
export class OidcLogin {
  private config: Promise<client.Configuration> | undefined;
  private readonly log: Logger;

  constructor(
    private readonly options: OidcLoginOptions,
    private readonly store: AuthStore,
    private readonly sessions: SessionIssuer,
    log: Logger,
  ) {
    if (options.oidcIssuer === '' || options.oidcClientId === '') {
      throw new ZerveError('BAD_CONFIG', 'auth oidc needs --oidc-issuer and --oidc-client-id');
    }
    this.log = log.child({ component: 'oidc' });
  }

  /** The provider's configuration, discovered once; a discovery that fails is tried again next time. */
  private configuration(): Promise<client.Configuration> {
    this.config ??= client
      .discovery(new URL(this.options.oidcIssuer), this.options.oidcClientId, this.options.oidcClientSecret, undefined, {
        ...(this.options.oidcAllowHttp ? { execute: [client.allowInsecureRequests] } : {}),
      })
      .catch((err: unknown) => {
        this.config = undefined;
        throw new ZerveError('UNAUTHENTICATED', `the OpenID provider ${this.options.oidcIssuer} cannot be used: ${(err as Error).message}`, { cause: err });
      });
    return this.config;
  }

  readonly login: RequestHandler = async (req, res) => {
    const config = await this.configuration();
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: callbackUrl(req),
      scope: 'openid email profile',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    res.cookie(PENDING_COOKIE, Buffer.from(JSON.stringify({ state, verifier })).toString('base64url'), {
      httpOnly: true,
      sameSite: 'lax',
      secure: req.secure,
      path: '/auth/',
      maxAge: PENDING_MAX_AGE_MS,
    });
    res.redirect(303, url.href);
  };

  readonly callback: RequestHandler = async (req, res) => {
    const pending = pendingOf(req);
    res.clearCookie(PENDING_COOKIE, { httpOnly: true, sameSite: 'lax', secure: req.secure, path: '/auth/' });
    if (!pending) throw new ZerveError('UNAUTHENTICATED', 'no login in progress in this browser: start again');
    const config = await this.configuration();
    let claims: Record<string, unknown>;
    try {
      const current = new URL(req.originalUrl, `${req.protocol}://${req.get('host') ?? ''}`);
      const tokens = await client.authorizationCodeGrant(config, current, { pkceCodeVerifier: pending.verifier, expectedState: pending.state });
      claims = (tokens.claims() ?? {}) as Record<string, unknown>;
    } catch (err) {
      this.log.info({ err: (err as Error).message }, 'login refused');
      throw new ZerveError('UNAUTHENTICATED', `login refused: ${(err as Error).message}`, { cause: err });
    }
    const user = await this.userOf(claims);
    const principal = { userId: user.id, userName: user.name, role: user.role, scopes: ROLE_SCOPES[user.role] };
    res.locals.principal = principal;
    await this.sessions.start(req, res, principal);
    res.redirect(303, '/');
  };

  /** The user of these claims, created on first login with the role of their group or domain. */
  private async userOf(claims: Record<string, unknown>): Promise<User> {
    const email = typeof claims.email === 'string' ? claims.email : '';
    const name = email !== '' ? email : String(claims.sub);
    const known = await this.store.userByName(name);
    if (known) return known;
    const role = this.roleOf(email, Array.isArray(claims.groups) ? claims.groups.map(String) : []);
    const user = await this.store.addUser({ name, role, email });
    await this.store.appendAudit({ user: name, action: 'user.add', target: name, details: { role, via: 'oidc' } });
    return user;
  }

  private roleOf(email: string, groups: string[]): Role {
    const domain = email.includes('@') ? `@${email.split('@').pop()!.toLowerCase()}` : undefined;
    const matches = (list: string) =>
      list
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
        .some((entry) => (entry.startsWith('@') ? entry.toLowerCase() === domain : groups.includes(entry)));
    if (matches(this.options.oidcAdmins)) return 'admin';
    if (matches(this.options.oidcMembers)) return 'member';
    return 'viewer';
  }
}

function callbackUrl(req: Request): string {
  return `${req.protocol}://${req.get('host') ?? ''}${OIDC_CALLBACK_PATH}`;
}

function pendingOf(req: Request): { state: string; verifier: string } | undefined {
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const [name, value] = part.trim().split('=');
    if (name !== PENDING_COOKIE || value === undefined) continue;
    try {
      const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { state?: unknown; verifier?: unknown };
      if (typeof parsed.state === 'string' && typeof parsed.verifier === 'string') return { state: parsed.state, verifier: parsed.verifier };
    } catch {
      return undefined; // a cookie that is not ours: no login in progress
    }
  }
  return undefined;
}
