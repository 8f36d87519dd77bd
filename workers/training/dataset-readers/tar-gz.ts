/** Reads a tar.gz archive's entries into an import session (tar-stream; links and special files skipped). */
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { ZerveError } from '../../../shared/errors.ts';
import type { ImportSession } from './import-session.ts';

export async function readTarGz(bytes: Buffer, session: ImportSession): Promise<void> {
  const extract = tar.extract();
  const gunzip = createGunzip();
  const done = (async () => {
    for await (const entry of extract) {
      const name = session.checkName(entry.header.name);
      session.countEntry();
      const type = entry.header.type;
      if (type === 'directory') {
        if (name !== '') session.accepts(`${name}/x`);
        entry.resume();
        continue;
      }
      if (!session.accepts(name)) {
        entry.resume();
        continue;
      }
      if (type === 'symlink' || type === 'link') {
        session.skip(name, 'symlink', entry.header.linkname ?? undefined);
        entry.resume();
        continue;
      }
      if (type !== 'file' && type !== 'contiguous-file') {
        session.skip(name, 'not-an-image', `tar entry of type ${type}`);
        entry.resume();
        continue;
      }
      await session.addFile(name, await session.collect(entry as unknown as Readable));
    }
  })();
  const fail = (err: unknown): void => {
    extract.destroy(err as Error);
  };
  gunzip.on('error', fail);
  gunzip.pipe(extract);
  gunzip.end(bytes);
  try {
    await done;
  } catch (err) {
    gunzip.destroy();
    if (err instanceof ZerveError) throw err;
    throw new ZerveError('BAD_DATASET', 'corrupt tar.gz archive', { cause: err });
  }
}
