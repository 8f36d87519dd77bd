import type { Request, RequestHandler, Response } from 'express';
import { ANONYMOUS, type Principal } from '../shared/access-policy.ts';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { AuthStore, Scope } from '../shared/store/auth-store.ts';
import { ROUTE_SCOPES, type RouteAccess } from './route-scopes.ts';
import { TokenVerifier } from './token-verifier.ts';
import { AuthFailureLimiter } from './auth-failure-limiter.ts';
import { OIDC_LOGIN_PATH } from './oidc-login.ts';
import { retryAfterSeconds } from './http-status.ts';
import { tokenIdOf } from '../shared/api-token.ts';

/** The web app's auth modes (`--auth`). */
export const AUTH_MODES = ['off', 'tokens', 'oidc'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

export interface AuthGateOptions {
  /** @defaultValue 'off' */
  auth: AuthMode;
  /** `open` or `token`: whether `/metrics` asks a token with the `metrics` scope. @defaultValue 'open' */
  metricsAuth: 'open' | 'token';
  /** See TokenVerifierOptions.cacheMs. @defaultValue 2000 */
  authCacheMs: number;
  /** See AuthFailureLimiterOptions. @defaultValue 20 */
  maxAuthFailures: number;
  /** @defaultValue 60000 */
  authFailureWindowMs: number;
}

const PRINCIPAL = 'principal';
/** The page's session cookie (session-routes.ts): a short-lived token, HttpOnly. */
export const SESSION_COOKIE = 'zerve_session';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Express middleware that admits a request to a route group: reads `Authorization: Bearer`,
 * answers UNAUTHENTICATED (401) without a valid token and FORBIDDEN (403) without the route's
 * scope, and leaves the caller in `res.locals.principal` (`anonymous` with auth off).
 */
export class AuthGate {
  private readonly verifier: TokenVerifier | undefined;
  private readonly failures: AuthFailureLimiter;
  private readonly log: Logger;

  constructor(
    private readonly options: AuthGateOptions,
    store: AuthStore | undefined,
    log: Logger,
  ) {
    this.log = log.child({ component: 'auth' });
    this.failures = new AuthFailureLimiter(options);
    if (options.auth !== 'off') {
      if (!store) throw new ZerveError('BAD_CONFIG', `auth ${options.auth} needs an auth store`);
      this.verifier = new TokenVerifier(store, { cacheMs: options.authCacheMs });
    }
  }

  get enabled(): boolean {
    return this.verifier !== undefined;
  }

  /** The caller of a request the gate admitted. */
  static principalOf(res: Response): Principal {
    return (res.locals[PRINCIPAL] as Principal | undefined) ?? ANONYMOUS;
  }

  /** The session token in the request's cookie, if any. */
  static sessionTokenOf(req: Request): string | undefined {
    for (const part of (req.get('cookie') ?? '').split(';')) {
      const [name, ...value] = part.trim().split('=');
      if (name === SESSION_COOKIE) return decodeURIComponent(value.join('='));
    }
    return undefined;
  }

  /**
   * CSRF defence for cookie-authenticated requests (OWASP "verifying origin with standard headers"):
   * FORBIDDEN unless the browser says the request comes from this site. Browsers send `Origin` on
   * every POST and DELETE, and `Sec-Fetch-Site` on every request.
   */
  static requireSameOrigin(req: Request): void {
    const site = req.get('sec-fetch-site');
    const origin = req.get('origin');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new ZerveError('FORBIDDEN', `cross-site request refused (Sec-Fetch-Site: ${site})`);
    if (origin !== undefined && origin !== `${req.protocol}://${req.get('host') ?? ''}`) throw new ZerveError('FORBIDDEN', `cross-site request refused (Origin: ${origin})`);
  }

  /** The caller a token stands for, counting a failure per address and token id (TOO_MANY_ATTEMPTS past the limit). */
  async authenticate(req: Request, token: string): Promise<Principal> {
    if (!this.verifier) return ANONYMOUS;
    const tokenId = tokenIdOf(token);
    const keys = [`address:${req.ip ?? ''}`, ...(tokenId === undefined ? [] : [`token:${tokenId}`])];
    await this.failures.check(keys);
    try {
      return await this.verifier.verify(token);
    } catch (err) {
      // Only a refused token is a failed attempt: a store outage (STORE_UNAVAILABLE, 503) is not the caller's.
      if (err instanceof ZerveError && err.code === 'UNAUTHENTICATED') await this.failures.fail(keys);
      throw err;
    }
  }

  /** Middleware for the operation `operationId` (see ROUTE_SCOPES); throws at registration for an operation not in the table. */
  guard(operationId: string): RequestHandler {
    const access = ROUTE_SCOPES[operationId];
    if (access === undefined) throw new Error(`route ${operationId} has no entry in ROUTE_SCOPES`);
    return this.require(operationId === 'metrics' && this.options.metricsAuth === 'open' ? 'open' : access);
  }

  /** Middleware asking for `access`. */
  require(access: RouteAccess): RequestHandler {
    const verifier = this.verifier;
    if (!verifier || access === 'open') {
      // No await with auth off: the hot path stays as it was.
      return (_req, res, next) => {
        res.locals[PRINCIPAL] = ANONYMOUS;
        next();
      };
    }
    return (req, res, next) => {
      this.admit(req, res, access).then(() => next(), next);
    };
  }

  private async admit(req: Request, res: Response, access: Scope | 'any'): Promise<void> {
    const header = req.get('authorization');
    const match = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    const session = header === undefined ? AuthGate.sessionTokenOf(req) : undefined;
    try {
      // A request with no credentials at all is no failed attempt; a malformed header is.
      if (header !== undefined && !match) {
        await this.authenticate(req, '');
      }
      if (!match && session === undefined) throw new ZerveError('UNAUTHENTICATED', 'send Authorization: Bearer <token>, or log in');
      if (session !== undefined && !SAFE_METHODS.has(req.method)) AuthGate.requireSameOrigin(req);
      const principal = await this.authenticate(req, match ? match[1]! : session!);
      if (access !== 'any' && !principal.scopes.includes(access)) {
        throw new ZerveError('FORBIDDEN', `this token lacks the ${access} scope (it has: ${principal.scopes.join(', ') || 'none'})`);
      }
      res.locals[PRINCIPAL] = principal;
    } catch (err) {
      if (err instanceof ZerveError && err.code === 'UNAUTHENTICATED') {
        res.set('WWW-Authenticate', 'Bearer realm="zerve"');
        // Where the page sends a browser to log in through the OpenID provider.
        if (this.options.auth === 'oidc') throw new ZerveError('UNAUTHENTICATED', err.message, { cause: err, details: { login: OIDC_LOGIN_PATH } });
      }
      if (err instanceof ZerveError && err.code === 'TOO_MANY_ATTEMPTS') res.set('Retry-After', String(retryAfterSeconds(err, 1)));
      if (err instanceof ZerveError) this.log.info({ code: err.code, path: req.path, ip: req.ip }, err.message);
      throw err;
    }
  }
}

/** Whether `host` is a loopback address, reachable only from this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
