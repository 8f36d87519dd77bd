import { join } from 'node:path';
import type { Logger } from '../logger.ts';
import type { JobStore, JobStoreOptions } from './job-store.ts';
import { openPostgresPool, redactedUrl, type PostgresPoolOptions } from './postgres-pool.ts';
import { PostgresJobStore } from './postgres-job-store.ts';
import { SqliteJobStore } from './sqlite-job-store.ts';
import { parseStoreLocation } from './store-location.ts';

/** Name of the job store file inside a SQLite store's folder. */
export const JOBS_DB_FILE = 'jobs.sqlite';

/**
 * The job store `--store` names: `jobs.sqlite` in the SQLite folder (`--data` by default), or the
 * jobs tables of a PostgreSQL database, migrated on open. Fails with a message naming the store
 * when it cannot be opened.
 */
export async function openJobStore(
  store: string,
  data: string,
  options: JobStoreOptions & { pool?: Partial<PostgresPoolOptions> },
  log: Logger,
): Promise<JobStore> {
  const location = parseStoreLocation(store, data);
  if (location.kind === 'sqlite') return new SqliteJobStore({ ...options, file: join(location.folder, JOBS_DB_FILE) });
  const pool = await openPostgresPool(location.url, options.pool ?? {}, log);
  try {
    return await PostgresJobStore.open(pool, redactedUrl(location.url), options);
  } catch (err) {
    await pool.end();
    throw err;
  }
}
