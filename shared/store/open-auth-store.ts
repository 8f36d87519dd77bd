import { join } from 'node:path';
import type { Logger } from '../logger.ts';
import type { AuthStore } from './auth-store.ts';
import { openPostgresPool, redactedUrl, type PostgresPoolOptions } from './postgres-pool.ts';
import { PostgresAuthStore } from './postgres-auth-store.ts';
import { AUTH_STORE_FILE, SqliteAuthStore } from './sqlite-auth-store.ts';
import { parseStoreLocation } from './store-location.ts';

/**
 * The auth store `--store` names: `auth.sqlite` in the SQLite folder (`--data` by default), or the
 * auth tables of a PostgreSQL database, migrated on open, which every web app replica shares. Fails
 * with a message naming the store when it cannot be opened.
 */
export async function openAuthStore(store: string, data: string, log: Logger, options: { pool?: Partial<PostgresPoolOptions> } = {}): Promise<AuthStore> {
  const location = parseStoreLocation(store, data);
  if (location.kind === 'sqlite') return new SqliteAuthStore(join(location.folder, AUTH_STORE_FILE));
  const pool = await openPostgresPool(location.url, options.pool ?? {}, log);
  try {
    return await PostgresAuthStore.open(pool, redactedUrl(location.url));
  } catch (err) {
    await pool.end();
    throw err;
  }
}
