import type { Logger } from '../logger.ts';
import type { ExperimentStore } from './experiment-store.ts';
import { openPostgresPool, redactedUrl, type PostgresPoolOptions } from './postgres-pool.ts';
import { PostgresExperimentStore } from './postgres-experiment-store.ts';
import { SqliteExperimentStore } from './sqlite-experiment-store.ts';
import { parseStoreLocation } from './store-location.ts';

/**
 * The experiment store `--store` names: `runs.sqlite` in the SQLite folder (`--data` by default;
 * `readonly` opens an existing file only, for `zerve runs --data`), or the experiment tables of a
 * PostgreSQL database, migrated on open.
 */
export async function openExperimentStore(
  store: string,
  data: string,
  log: Logger,
  options: { readonly?: boolean; pool?: Partial<PostgresPoolOptions> } = {},
): Promise<ExperimentStore> {
  const location = parseStoreLocation(store, data);
  if (location.kind === 'sqlite') return new SqliteExperimentStore(location.folder, { readonly: options.readonly ?? false });
  const pool = await openPostgresPool(location.url, options.pool ?? {}, log);
  try {
    return await PostgresExperimentStore.open(pool, redactedUrl(location.url), log);
  } catch (err) {
    await pool.end();
    throw err;
  }
}
