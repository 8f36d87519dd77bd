import express, { type RequestHandler, type Response } from 'express';
import { AuthAdmin } from '../shared/auth-admin.ts';
import { ZerveError } from '../shared/errors.ts';
import type { AuthStore } from '../shared/store/auth-store.ts';
import { AuthGate } from './auth-gate.ts';
import type { CheckedParameters } from './request-validator.ts';

const MAX_BODY = '16kb';

/**
 * User and token management over HTTP (`/api/users`, `/api/tokens`, `/api/audit`, scope `admin`):
 * what `zerve users`, `zerve tokens` and `zerve audit` do, acting as the caller in the audit log.
 * With auth off there is no store, and these routes answer BAD_REQUEST saying so.
 */
export class AuthRoutes {
  constructor(private readonly store: AuthStore | undefined) {}

  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    const json = express.json({ limit: MAX_BODY });
    app.get('/api/users', check('listUsers'), this.listUsers);
    app.post('/api/users', check('addUser'), json, this.addUser);
    app.get('/api/tokens', check('listTokens'), this.listTokens);
    app.post('/api/tokens', check('createToken'), json, this.createToken);
    app.delete('/api/tokens/:id', check('revokeToken'), this.revokeToken);
    app.get('/api/audit', check('listAudit'), this.listAudit);
  }

  private readonly listUsers: RequestHandler = async (_req, res) => {
    res.json(await this.storeOf().listUsers());
  };

  private readonly addUser: RequestHandler = async (req, res) => {
    const body = objectBody(req.body);
    const user = await this.admin(res).addUser(text(body, 'name'), text(body, 'role', 'member'), text(body, 'email', ''));
    res.status(201).json(user);
  };

  private readonly listTokens: RequestHandler = async (_req, res) => {
    res.json(await this.admin(res).listTokens());
  };

  private readonly createToken: RequestHandler = async (req, res) => {
    const body = objectBody(req.body);
    res.status(201).json(await this.admin(res).createToken(text(body, 'user'), text(body, 'scopes'), text(body, 'expires', '')));
  };

  private readonly revokeToken: RequestHandler = async (_req, res) => {
    const id = (res.locals.params as CheckedParameters).path.id as string;
    await this.admin(res).revokeToken(id);
    res.json({ id, revoked: true });
  };

  private readonly listAudit: RequestHandler = async (_req, res) => {
    const { since } = (res.locals.params as CheckedParameters).query as { since?: number };
    res.json(await this.storeOf().listAudit(since ?? 0));
  };

  private storeOf(): AuthStore {
    if (!this.store) throw new ZerveError('BAD_REQUEST', 'auth is off: there are no users or tokens here (start the web app with --auth tokens)');
    return this.store;
  }

  private admin(res: Response): AuthAdmin {
    return new AuthAdmin(this.storeOf(), AuthGate.principalOf(res).userName);
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ZerveError('BAD_REQUEST', 'send a JSON object, with content-type application/json');
  }
  return body as Record<string, unknown>;
}

function text(body: Record<string, unknown>, key: string, fallback?: string): string {
  const value = body[key] ?? fallback;
  if (typeof value !== 'string') throw new ZerveError('BAD_REQUEST', `${key} must be a string`);
  return value;
}
