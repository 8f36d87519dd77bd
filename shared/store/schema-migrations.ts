/**
 * Versioned schema migrations, run at start under a lock so that two processes starting together
 * migrate once: SQLite keeps the version in `PRAGMA user_version` and migrates in one IMMEDIATE
 * transaction (the file's write lock); PostgreSQL keeps it in `zerve_schema` and migrates under a
 * transaction-level advisory lock. A migration is applied whole or not at all.
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { inTransaction } from './postgres-pool.ts';

export interface Migration {
  /** 1, 2, 3, ...: applied in order, each once. */
  version: number;
  /** What it changes, for the log. */
  name: string;
  sql: string;
}

function check(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new RangeError(`migration ${m.name} has version ${m.version}, expected ${i + 1}`);
  });
}

/** Brings a SQLite file to the newest version; returns the versions applied. */
export function migrateSqlite(db: Database.Database, migrations: readonly Migration[]): number[] {
  check(migrations);
  return db
    .transaction((): number[] => {
      const current = db.pragma('user_version', { simple: true }) as number;
      const pending = migrations.filter((m) => m.version > current);
      for (const m of pending) db.exec(m.sql);
      if (pending.length > 0) db.pragma(`user_version = ${pending.at(-1)!.version}`);
      return pending.map((m) => m.version);
    })
    .immediate();
}

/**
 * Brings a PostgreSQL schema to the newest version; returns the versions applied. `component`
 * names the set of migrations (each set has its own version row and lock).
 */
export async function migratePostgres(pool: pg.Pool, component: string, migrations: readonly Migration[]): Promise<number[]> {
  check(migrations);
  return inTransaction(pool, async (client) => {
    // Transaction-level: released by COMMIT or ROLLBACK, and by the server when the session dies.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`zerve-schema:${component}`]);
    await client.query('CREATE TABLE IF NOT EXISTS zerve_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)');
    const { rows } = await client.query<{ version: number }>('SELECT version FROM zerve_schema WHERE component = $1', [component]);
    const current = rows[0]?.version ?? 0;
    const pending = migrations.filter((m) => m.version > current);
    for (const m of pending) await client.query(m.sql);
    if (pending.length > 0) {
      await client.query(
        'INSERT INTO zerve_schema (component, version) VALUES ($1, $2) ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version',
        [component, pending.at(-1)!.version],
      );
    }
    return pending.map((m) => m.version);
  });
}
