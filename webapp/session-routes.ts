import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Principal } from '../shared/access-policy.ts';
import { issueToken, tokenIdOf } from '../shared/api-token.ts';
import { ZerveError } from '../shared/errors.ts';
import type { AuthStore } from '../shared/store/auth-store.ts';
import { AuthGate, SESSION_COOKIE } from './auth-gate.ts';
import type { AuditTrail } from './audit-trail.ts';

/** Starts a page session for a caller already authenticated (by a token, or by an OpenID provider). */
export interface SessionIssuer {
  start(req: Request, res: Response, principal: Principal): Promise<{ expiresAt: number }>;
}

export interface SessionRoutesOptions {
  /** Lifetime of a page session. @defaultValue 43200000 (12 h) */
  sessionTtlMs: number;
  /** Whether the web app runs open on a non-loopback address: the page then warns. */
  insecure: boolean;
}

/**
 * Login on the page with an API token, for sites without single sign-on: `POST /api/session`
 * checks the token and answers a session cookie (HttpOnly, SameSite=Lax, Secure behind TLS) holding
 * a new short-lived token of the same user and scopes, kept in the store like any token, so a
 * logout (`DELETE /api/session`) or a revocation holds on every replica. `GET /api/session` says who is logged in.
 */
export class SessionRoutes implements SessionIssuer {
  constructor(
    private readonly store: AuthStore | undefined,
    private readonly gate: AuthGate,
    private readonly audit: AuditTrail,
    private readonly options: SessionRoutesOptions,
  ) {
    if (!(options.sessionTtlMs > 0)) throw new ZerveError('BAD_REQUEST', `sessionTtlMs must be positive, got ${options.sessionTtlMs}`);
  }

  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    app.get('/api/session', check('getSession'), this.getSession);
    app.post('/api/session', check('login'), express.json({ limit: '4kb' }), this.login);
    app.delete('/api/session', check('logout'), this.logout);
  }

  private readonly getSession: RequestHandler = async (_req, res) => {
    const p = AuthGate.principalOf(res);
    res.json({ auth: this.gate.enabled, insecure: this.options.insecure, user: p.userName, role: p.role, scopes: p.scopes });
  };

  private readonly login: RequestHandler = async (req, res) => {
    if (!this.store) throw new ZerveError('BAD_REQUEST', 'auth is off: there is nothing to log in to');
    const token = (req.body as { token?: unknown } | undefined)?.token;
    if (typeof token !== 'string') throw new ZerveError('BAD_REQUEST', 'send {"token": "zrv_..."} as JSON');
    AuthGate.requireSameOrigin(req); // no login CSRF: another site cannot log a browser in as someone else
    const principal = await this.gate.authenticate(req, token);
    res.locals.principal = principal;
    const { expiresAt } = await this.start(req, res, principal);
    res.status(201).json({ user: principal.userName, role: principal.role, scopes: principal.scopes, expiresAt: new Date(expiresAt).toISOString() });
  };

  async start(req: Request, res: Response, principal: Principal): Promise<{ expiresAt: number }> {
    if (!this.store) throw new ZerveError('BAD_REQUEST', 'auth is off: there is nothing to log in to');
    const session = issueToken();
    const expiresAt = Date.now() + this.options.sessionTtlMs;
    await this.store.createToken({ id: session.id, userId: principal.userId, scopes: [...principal.scopes], hash: session.hash, expiresAt });
    await this.audit.record(res, 'session.login', session.id);
    res.cookie(SESSION_COOKIE, session.token, { httpOnly: true, sameSite: 'lax', secure: req.secure, path: '/', maxAge: this.options.sessionTtlMs });
    return { expiresAt };
  }

  private readonly logout: RequestHandler = async (req, res) => {
    const id = sessionIdOf(req);
    if (this.store && id !== undefined) {
      await this.store.revokeToken(id);
      await this.audit.record(res, 'session.logout', id);
    }
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'lax', secure: req.secure, path: '/' });
    res.status(204).end();
  };
}

function sessionIdOf(req: Request): string | undefined {
  const token = AuthGate.sessionTokenOf(req);
  return token === undefined ? undefined : tokenIdOf(token);
}
