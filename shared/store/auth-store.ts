/**
 * Where users, API tokens and the audit log live, whatever the backend (SQLite in `--data` by
 * default; PostgreSQL where the store allows). Every web app replica and the `zerve users`,
 * `zerve tokens` and `zerve audit` commands given the same store see the same rows.
 *
 * The store never sees a token in clear: it keeps the SHA-256 of the whole token
 * (shared/api-token.ts makes and checks them). Methods are async so a networked backend fits.
 */

/** What a user may do at most; a token's scopes are further limited by its user's role. */
export const ROLES = ['admin', 'member', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/** Route groups a token may be allowed (docs/auth.md lists the routes of each). */
export const SCOPES = ['infer', 'read', 'train', 'models', 'admin', 'metrics'] as const;
export type Scope = (typeof SCOPES)[number];

export interface User {
  /** Stable id, used as owner of datasets, runs, jobs and models. */
  id: string;
  /** Unique login name (`zerve users add NAME`, or the OIDC subject's preferred name). */
  name: string;
  role: Role;
  /** Where experiment e-mails go by default; '' when unknown. */
  email: string;
  /** Epoch milliseconds. */
  createdAt: number;
}

export interface NewUser {
  name: string;
  role: Role;
  email?: string;
}

/** A token as stored: no secret, only its hash. */
export interface TokenRecord {
  /** Public id, part of the token itself; what `zerve tokens revoke ID` takes. */
  id: string;
  userId: string;
  /** The user's name, joined in for listings. */
  userName: string;
  scopes: Scope[];
  /** SHA-256 of the whole token, hex. */
  hash: string;
  createdAt: number;
  /** Epoch ms, or null for a token that does not expire. */
  expiresAt: number | null;
  /** Epoch ms, or null while the token is valid. */
  revokedAt: number | null;
}

export interface NewToken {
  id: string;
  userId: string;
  scopes: Scope[];
  hash: string;
  expiresAt: number | null;
}

/** One management action: model added or removed, token made or revoked, user added, training started, job cancelled. */
export interface AuditEntry {
  /** Increasing, assigned by the store. */
  seq: number;
  /** Epoch ms. */
  at: number;
  /** Name of the user who acted (`anonymous` when auth is off). */
  user: string;
  /** e.g. `user.add`, `token.create`, `token.revoke`, `model.add`, `model.remove`, `train.start`, `job.cancel`. */
  action: string;
  /** What was acted on: a user name, token id, `model@version`, job id. */
  target: string;
  details: Record<string, unknown>;
}

/** Kinds of items that record who made them. */
export const OWNED_KINDS = ['dataset', 'job', 'model'] as const;
export type OwnedKind = (typeof OWNED_KINDS)[number];

/** One owner of one item. An item may have several: a dataset two users uploaded (deduplicated by hash) is each one's. */
export interface Ownership {
  kind: OwnedKind;
  id: string;
  ownerId: string;
  /** Visible to every user (read, not cancel). */
  shared: boolean;
  createdAt: number;
}

export type NewOwnership = Omit<Ownership, 'createdAt' | 'shared'> & { shared?: boolean };

export type NewAuditEntry = Omit<AuditEntry, 'seq' | 'at' | 'details'> & { at?: number; details?: Record<string, unknown> };

/**
 * Users, tokens and audit, shared by every replica. Errors are ZerveErrors: `ALREADY_EXISTS`
 * for a second user of the same name, `UNKNOWN_USER` for a token of a user that is not there.
 */
export interface AuthStore {
  addUser(user: NewUser): Promise<User>;
  /** The user of that name, or undefined. */
  userByName(name: string): Promise<User | undefined>;
  userById(id: string): Promise<User | undefined>;
  /** All users, oldest first. */
  listUsers(): Promise<User[]>;
  createToken(token: NewToken): Promise<TokenRecord>;
  /** The token of that id, revoked and expired ones included (callers decide), or undefined. */
  tokenById(id: string): Promise<TokenRecord | undefined>;
  /** Tokens, oldest first; only one user's when `userId` is given. */
  listTokens(userId?: string): Promise<TokenRecord[]>;
  /** Marks the token revoked; false when there is no such token (revoking twice is true and keeps the first time). */
  revokeToken(id: string, at?: number): Promise<boolean>;
  /** Records an owner of an item; adding the same owner again keeps one row (and its first `shared`). */
  addOwner(ownership: NewOwnership): Promise<void>;
  /** The owners of an item, oldest first; empty for an item nobody recorded (made with auth off). */
  ownersOf(kind: OwnedKind, id: string): Promise<Ownership[]>;
  appendAudit(entry: NewAuditEntry): Promise<AuditEntry>;
  /** Entries at or after `since` (epoch ms), oldest first. */
  listAudit(since?: number): Promise<AuditEntry[]>;
  /** Idempotent. */
  close(): Promise<void>;
}
