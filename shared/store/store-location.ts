/**
 * Where state is kept, from `--store` (`ZERVE_STORE`, config key `store`): `sqlite:PATH` (a folder
 * of SQLite files), a `postgres://` URL, or '' for the SQLite files in `--data` (the default, as
 * before there was a choice).
 */
import { ZerveError } from '../errors.ts';

export type StoreLocation = { kind: 'sqlite'; folder: string } | { kind: 'postgres'; url: string };

export function parseStoreLocation(store: string, data: string): StoreLocation {
  if (store === '') return { kind: 'sqlite', folder: data };
  if (store.startsWith('sqlite:')) {
    const folder = store.slice('sqlite:'.length);
    if (folder === '') throw new ZerveError('BAD_CONFIG', 'the store sqlite: needs a folder, as in sqlite:./data');
    return { kind: 'sqlite', folder };
  }
  if (store.startsWith('postgres://') || store.startsWith('postgresql://')) return { kind: 'postgres', url: store };
  throw new ZerveError('BAD_CONFIG', `the store "${store.replace(/:[^:@/]*@/, ':***@')}" is neither sqlite:FOLDER nor a postgres:// URL`);
}
