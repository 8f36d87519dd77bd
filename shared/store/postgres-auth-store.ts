import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { ZerveError } from '../errors.ts';
import type { AuditEntry, AuthStore, NewAuditEntry, NewOwnership, NewToken, NewUser, OwnedKind, Ownership, TokenRecord, User } from './auth-store.ts';
import { storeErrorOf } from './postgres-pool.ts';
import { tokenOf, userOf, type TokenRow, type UserRow } from './auth-rows.ts';
import { migratePostgres, type Migration } from './schema-migrations.ts';

/**
 * The auth tables' schema in PostgreSQL, version by version; columns as in `auth.sqlite`, prefixed
 * `auth_` beside the jobs and experiment tables. `seq` keeps rows made in the same millisecond in order.
 */
export const POSTGRES_AUTH_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users, tokens, owners and the audit log',
    sql: `
CREATE TABLE auth_users (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  email TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  seq BIGSERIAL NOT NULL
);
CREATE TABLE auth_tokens (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES auth_users (id),
  scopes TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT,
  seq BIGSERIAL NOT NULL
);
CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id, created_at, seq);
CREATE TABLE auth_audit (
  seq BIGSERIAL PRIMARY KEY,
  at BIGINT NOT NULL,
  user_name TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  details JSONB NOT NULL
);
CREATE INDEX auth_audit_at ON auth_audit (at);
CREATE TABLE auth_owners (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  shared BOOLEAN NOT NULL DEFAULT FALSE,
  created_at BIGINT NOT NULL,
  seq BIGSERIAL NOT NULL,
  PRIMARY KEY (kind, id, owner_id)
);`,
  },
];


const USER_COLUMNS = `id, name, role, email, created_at`;
const TOKEN_COLUMNS = `t.id, t.user_id, u.name AS user_name, t.scopes, t.hash, t.created_at, t.expires_at, t.revoked_at`;
const UNIQUE_VIOLATION = '23505';
const FOREIGN_KEY_VIOLATION = '23503';

/**
 * Users, tokens, owners and the audit log in a PostgreSQL database, so that every web app replica
 * and the `zerve users|tokens|audit` commands on any host given the same `--store` see the same rows.
 * A failure to reach the server is `STORE_UNAVAILABLE` (503 to an HTTP caller); the pool reconnects by itself.
 * @example
 * const store = await PostgresAuthStore.open(await openPostgresPool(url, {}, log), redactedUrl(url));
 * await store.addUser({ name: 'ada', role: 'admin' });
 * await store.close();
 */
export class PostgresAuthStore implements AuthStore {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
  ) {}

  /** Migrates the schema (once, under a lock) and returns the store; it owns the pool from here on. */
  static async open(pool: pg.Pool, location: string): Promise<PostgresAuthStore> {
    try {
      await migratePostgres(pool, 'auth', POSTGRES_AUTH_MIGRATIONS);
    } catch (err) {
      throw storeErrorOf(err, location);
    }
    return new PostgresAuthStore(pool, location);
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw storeErrorOf(err, this.location);
    }
  }

  addUser(user: NewUser): Promise<User> {
    const row: UserRow = { id: randomUUID(), name: user.name, role: user.role, email: user.email ?? '', created_at: Date.now() };
    return this.run(async () => {
      try {
        await this.pool.query(`INSERT INTO auth_users (id, name, role, email, created_at) VALUES ($1, $2, $3, $4, $5)`, [
          row.id,
          row.name,
          row.role,
          row.email,
          row.created_at,
        ]);
      } catch (err) {
        if (err instanceof pg.DatabaseError && err.code === UNIQUE_VIOLATION) {
          throw new ZerveError('ALREADY_EXISTS', `a user named ${JSON.stringify(user.name)} already exists`, { cause: err });
        }
        throw err;
      }
      return userOf(row);
    });
  }

  userByName(name: string): Promise<User | undefined> {
    return this.run(async () => {
      const { rows } = await this.pool.query<UserRow>(`SELECT ${USER_COLUMNS} FROM auth_users WHERE name = $1`, [name]);
      return rows[0] && userOf(rows[0]);
    });
  }

  userById(id: string): Promise<User | undefined> {
    return this.run(async () => {
      const { rows } = await this.pool.query<UserRow>(`SELECT ${USER_COLUMNS} FROM auth_users WHERE id = $1`, [id]);
      return rows[0] && userOf(rows[0]);
    });
  }

  listUsers(): Promise<User[]> {
    return this.run(async () => (await this.pool.query<UserRow>(`SELECT ${USER_COLUMNS} FROM auth_users ORDER BY created_at, seq`)).rows.map(userOf));
  }

  createToken(token: NewToken): Promise<TokenRecord> {
    return this.run(async () => {
      const user = await this.userById(token.userId);
      const unknown = () => new ZerveError('UNKNOWN_USER', `no user with id ${JSON.stringify(token.userId)}`);
      if (!user) throw unknown();
      const createdAt = Date.now();
      try {
        await this.pool.query(`INSERT INTO auth_tokens (id, user_id, scopes, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`, [
          token.id,
          token.userId,
          token.scopes.join(','),
          token.hash,
          createdAt,
          token.expiresAt,
        ]);
      } catch (err) {
        if (err instanceof pg.DatabaseError && err.code === FOREIGN_KEY_VIOLATION) throw unknown();
        throw err;
      }
      return { ...token, scopes: [...token.scopes], userName: user.name, createdAt, revokedAt: null };
    });
  }

  tokenById(id: string): Promise<TokenRecord | undefined> {
    return this.run(async () => {
      const { rows } = await this.pool.query<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM auth_tokens t JOIN auth_users u ON u.id = t.user_id WHERE t.id = $1`, [id]);
      return rows[0] && tokenOf(rows[0]);
    });
  }

  listTokens(userId?: string): Promise<TokenRecord[]> {
    return this.run(async () => {
      const { rows } =
        userId === undefined
          ? await this.pool.query<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM auth_tokens t JOIN auth_users u ON u.id = t.user_id ORDER BY t.created_at, t.seq`)
          : await this.pool.query<TokenRow>(
              `SELECT ${TOKEN_COLUMNS} FROM auth_tokens t JOIN auth_users u ON u.id = t.user_id WHERE t.user_id = $1 ORDER BY t.created_at, t.seq`,
              [userId],
            );
      return rows.map(tokenOf);
    });
  }

  revokeToken(id: string, at = Date.now()): Promise<boolean> {
    return this.run(async () => {
      const { rowCount } = await this.pool.query(`UPDATE auth_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, [at, id]);
      return (rowCount ?? 0) > 0;
    });
  }

  addOwner(o: NewOwnership): Promise<void> {
    return this.run(async () => {
      await this.pool.query(`INSERT INTO auth_owners (kind, id, owner_id, shared, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, [
        o.kind,
        o.id,
        o.ownerId,
        o.shared ?? false,
        Date.now(),
      ]);
    });
  }

  ownersOf(kind: OwnedKind, id: string): Promise<Ownership[]> {
    return this.run(async () => {
      const { rows } = await this.pool.query<{ kind: OwnedKind; id: string; owner_id: string; shared: boolean; created_at: number }>(
        `SELECT kind, id, owner_id, shared, created_at FROM auth_owners WHERE kind = $1 AND id = $2 ORDER BY created_at, seq`,
        [kind, id],
      );
      return rows.map((r) => ({ kind: r.kind, id: r.id, ownerId: r.owner_id, shared: r.shared, createdAt: r.created_at }));
    });
  }

  appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    const at = entry.at ?? Date.now();
    const details = entry.details ?? {};
    return this.run(async () => {
      const { rows } = await this.pool.query<{ seq: number }>(
        `INSERT INTO auth_audit (at, user_name, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING seq`,
        [at, entry.user, entry.action, entry.target, JSON.stringify(details)],
      );
      return { seq: rows[0]!.seq, at, user: entry.user, action: entry.action, target: entry.target, details };
    });
  }

  listAudit(since = 0): Promise<AuditEntry[]> {
    return this.run(async () => {
      const { rows } = await this.pool.query<{ seq: number; at: number; user_name: string; action: string; target: string; details: Record<string, unknown> }>(
        `SELECT seq, at, user_name, action, target, details FROM auth_audit WHERE at >= $1 ORDER BY seq`,
        [since],
      );
      return rows.map((r) => ({ seq: r.seq, at: r.at, user: r.user_name, action: r.action, target: r.target, details: r.details }));
    });
  }

  /** Closes the pool; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
}
