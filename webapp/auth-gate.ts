import type { Request, RequestHandler, Response } from 'express';
import { ANONYMOUS, type Principal } from '../shared/access-policy.ts';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { AuthStore, Scope } from '../shared/store/auth-store.ts';
import { ROUTE_SCOPES, type RouteAccess } from './route-scopes.ts';
import { TokenVerifier } from './token-verifier.ts';
import { AuthFailureLimiter } from './auth-failure-limiter.ts';
import { retryAfterSeconds } from './http-status.ts';
import { tokenIdOf } from '../shared/api-token.ts';

/** The web app's auth modes (`--auth`). */
export const AUTH_MODES = ['off', 'tokens'] as const;
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
      if (!store) throw new ZerveError('BAD_REQUEST', `auth ${options.auth} needs an auth store`);
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
      this.admit(verifier, req, res, access).then(() => next(), next);
    };
  }

  private async admit(verifier: TokenVerifier, req: Request, res: Response, access: Scope): Promise<void> {
    const header = req.get('authorization');
    const match = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    // Failures count per address and per token id; a request with no credentials at all is no attempt.
    const tokenId = match ? tokenIdOf(match[1]!) : undefined;
    const keys = header === undefined ? [] : [`address:${req.ip ?? ''}`, ...(tokenId === undefined ? [] : [`token:${tokenId}`])];
    try {
      await this.failures.check(keys);
      if (!match) throw new ZerveError('UNAUTHENTICATED', header === undefined ? 'send Authorization: Bearer <token>' : 'the Authorization header is not "Bearer <token>"');
      let principal: Principal;
      try {
        principal = await verifier.verify(match[1]!);
      } catch (err) {
        await this.failures.fail(keys);
        throw err;
      }
      if (!principal.scopes.includes(access)) {
        throw new ZerveError('FORBIDDEN', `this token lacks the ${access} scope (it has: ${principal.scopes.join(', ') || 'none'})`);
      }
      res.locals[PRINCIPAL] = principal;
    } catch (err) {
      if (err instanceof ZerveError && err.code === 'UNAUTHENTICATED') res.set('WWW-Authenticate', 'Bearer realm="zerve"');
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
