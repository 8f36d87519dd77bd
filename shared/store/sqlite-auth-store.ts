import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { ZerveError } from '../errors.ts';
import { tokenOf, userOf, type TokenRow, type UserRow } from './auth-rows.ts';
import type { AuditEntry, AuthStore, NewAuditEntry, NewOwnership, NewToken, NewUser, OwnedKind, Ownership, TokenRecord, User } from './auth-store.ts';

/** File name of the auth store inside `--data`. */
export const AUTH_STORE_FILE = 'auth.sqlite';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  email TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  scopes TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  user TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE TABLE IF NOT EXISTS owners (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  shared INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (kind, id, owner_id)
);
`;


interface AuditRow {
  seq: number;
  at: number;
  user: string;
  action: string;
  target: string;
  details: string;
}

const TOKEN_COLUMNS = `t.id, t.user_id, u.name AS user_name, t.scopes, t.hash, t.created_at, t.expires_at, t.revoked_at`;

/**
 * The auth store in one SQLite file (WAL, so the CLI and several web apps on one host share it).
 * @example
 * const store = SqliteAuthStore.inDataDir('./data');
 * await store.addUser({ name: 'ada', role: 'admin' });
 * await store.close();
 */
export class SqliteAuthStore implements AuthStore {
  readonly file: string;
  private readonly db: Database.Database;
  private closed = false;

  constructor(file: string) {
    this.file = file;
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // better-sqlite3 writes on the event loop: with FULL every owner and audit row would wait for an
    // fsync there, stalling the web app's other requests on a busy disk. NORMAL in WAL mode keeps
    // every commit across a process crash; only a power loss may drop the last ones (docs/auth.md).
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
  }

  /** The store of a data directory: `<data>/auth.sqlite`. */
  static inDataDir(data: string): SqliteAuthStore {
    return new SqliteAuthStore(join(data, AUTH_STORE_FILE));
  }

  async addUser(user: NewUser): Promise<User> {
    const row: UserRow = { id: randomUUID(), name: user.name, role: user.role, email: user.email ?? '', created_at: Date.now() };
    try {
      this.db
        .prepare(`INSERT INTO users (id, name, role, email, created_at) VALUES (@id, @name, @role, @email, @created_at)`)
        .run(row);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new ZerveError('ALREADY_EXISTS', `a user named ${JSON.stringify(user.name)} already exists`, { cause: err });
      }
      throw err;
    }
    return userOf(row);
  }

  async userByName(name: string): Promise<User | undefined> {
    const row = this.db.prepare(`SELECT * FROM users WHERE name = ?`).get(name) as UserRow | undefined;
    return row && userOf(row);
  }

  async userById(id: string): Promise<User | undefined> {
    const row = this.db.prepare(`SELECT * FROM users WHERE id = ?`).get(id) as UserRow | undefined;
    return row && userOf(row);
  }

  async listUsers(): Promise<User[]> {
    return (this.db.prepare(`SELECT * FROM users ORDER BY created_at, rowid`).all() as UserRow[]).map(userOf);
  }

  async createToken(token: NewToken): Promise<TokenRecord> {
    const user = await this.userById(token.userId);
    if (!user) throw new ZerveError('UNKNOWN_USER', `no user with id ${JSON.stringify(token.userId)}`);
    const createdAt = Date.now();
    this.db
      .prepare(`INSERT INTO tokens (id, user_id, scopes, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(token.id, token.userId, token.scopes.join(','), token.hash, createdAt, token.expiresAt);
    return { ...token, scopes: [...token.scopes], userName: user.name, createdAt, revokedAt: null };
  }

  async tokenById(id: string): Promise<TokenRecord | undefined> {
    const row = this.db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?`).get(id) as
      | TokenRow
      | undefined;
    return row && tokenOf(row);
  }

  async listTokens(userId?: string): Promise<TokenRecord[]> {
    const rows =
      userId === undefined
        ? this.db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id ORDER BY t.created_at, t.rowid`).all()
        : this.db
            .prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.user_id = ? ORDER BY t.created_at, t.rowid`)
            .all(userId);
    return (rows as TokenRow[]).map(tokenOf);
  }

  async revokeToken(id: string, at = Date.now()): Promise<boolean> {
    const result = this.db.prepare(`UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`).run(at, id);
    return result.changes > 0;
  }

  async addOwner(o: NewOwnership): Promise<void> {
    this.db
      .prepare(`INSERT OR IGNORE INTO owners (kind, id, owner_id, shared, created_at) VALUES (?, ?, ?, ?, ?)`)
      .run(o.kind, o.id, o.ownerId, o.shared ? 1 : 0, Date.now());
  }

  async ownersOf(kind: OwnedKind, id: string): Promise<Ownership[]> {
    const rows = this.db.prepare(`SELECT * FROM owners WHERE kind = ? AND id = ? ORDER BY created_at, rowid`).all(kind, id) as {
      kind: OwnedKind;
      id: string;
      owner_id: string;
      shared: number;
      created_at: number;
    }[];
    return rows.map((r) => ({ kind: r.kind, id: r.id, ownerId: r.owner_id, shared: r.shared === 1, createdAt: r.created_at }));
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    const at = entry.at ?? Date.now();
    const details = entry.details ?? {};
    const result = this.db
      .prepare(`INSERT INTO audit (at, user, action, target, details) VALUES (?, ?, ?, ?, ?)`)
      .run(at, entry.user, entry.action, entry.target, JSON.stringify(details));
    return { seq: Number(result.lastInsertRowid), at, user: entry.user, action: entry.action, target: entry.target, details };
  }

  async listAudit(since = 0): Promise<AuditEntry[]> {
    const rows = this.db.prepare(`SELECT * FROM audit WHERE at >= ? ORDER BY seq`).all(since) as AuditRow[];
    return rows.map((r) => ({ ...r, details: JSON.parse(r.details) as Record<string, unknown> }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
