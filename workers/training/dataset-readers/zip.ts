/** Reads a zip archive's entries into an import session (yauzl; symlinks skipped, declared sizes checked first). */
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { ZerveError } from '../../../shared/errors.ts';
import type { ImportSession } from './import-session.ts';

export async function readZip(bytes: Buffer, session: ImportSession): Promise<void> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(bytes, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true });
  } catch (err) {
    throw new ZerveError('BAD_DATASET', 'corrupt zip archive', { cause: err });
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown): void => {
        reject(err instanceof ZerveError ? err : new ZerveError('BAD_DATASET', 'corrupt zip archive', { cause: err }));
      };
      zip.on('error', fail);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        zipEntry(zip, entry, session).then(() => zip.readEntry(), fail);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
}

async function zipEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, session: ImportSession): Promise<void> {
  const rawName = Buffer.isBuffer(entry.fileName) ? entry.fileName.toString('utf8') : String(entry.fileName);
  const name = session.checkName(rawName);
  session.countEntry();
  if (rawName.endsWith('/')) {
    if (name !== '') session.accepts(`${name}/x`);
    return;
  }
  if (!session.accepts(name)) return;
  const mode = (entry.externalFileAttributes >>> 16) & 0o170000;
  if (mode === 0o120000) {
    session.skip(name, 'symlink');
    return;
  }
  // Stop before reading when the declared sizes alone exceed the limit; actual bytes are counted too.
  session.checkDeclared(entry.uncompressedSize);
  const stream = await new Promise<Readable>((resolve, reject) => {
    zip.openReadStream(entry, (err, s) => (err ? reject(err) : resolve(s)));
  });
  await session.addFile(name, await session.collect(stream));
}
