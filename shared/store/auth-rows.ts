import type { Role, Scope, TokenRecord, User } from './auth-store.ts';

/** Users and tokens as both auth store backends keep them in their tables, and back. */
export interface UserRow {
  id: string;
  name: string;
  role: string;
  email: string;
  created_at: number;
}

export interface TokenRow {
  id: string;
  user_id: string;
  user_name: string;
  scopes: string;
  hash: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export function userOf(row: UserRow): User {
  return { id: row.id, name: row.name, role: row.role as Role, email: row.email, createdAt: row.created_at };
}

export function tokenOf(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    userId: row.user_id,
    userName: row.user_name,
    scopes: row.scopes === '' ? [] : (row.scopes.split(',') as Scope[]),
    hash: row.hash,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}
