/** Reads a folder of class folders into an import session; symlinks are skipped, never followed. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { ZerveError } from '../../../shared/errors.ts';
import type { ImportSession } from './import-session.ts';

/**
 * The folder's files (`/`-separated paths, sorted) and its dataset id: the SHA-256 of its sorted
 * `path NUL sha256` listing, so it needs one pass over the contents before the import.
 */
export async function folderListing(folder: string): Promise<{ files: string[]; id: string }> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else files.push(relative(folder, full).split(sep).join('/'));
    }
  };
  try {
    await walk(folder);
  } catch (err) {
    throw new ZerveError('BAD_DATASET', `cannot read folder ${folder}`, { cause: err });
  }
  const listing = createHash('sha256');
  for (const path of files) {
    const info = await lstat(join(folder, path));
    let digest = 'symlink';
    if (info.isFile()) {
      const h = createHash('sha256');
      for await (const chunk of createReadStream(join(folder, path))) h.update(chunk as Buffer);
      digest = h.digest('hex');
    }
    listing.update(`${path}\0${digest}\n`);
  }
  return { files, id: listing.digest('hex') };
}

/** Feeds `files` (from `folderListing`) of `folder` to the session. */
export async function readFolder(folder: string, files: string[], session: ImportSession): Promise<void> {
  for (const path of files) {
    session.countEntry();
    if (!session.accepts(path)) continue;
    const info = await lstat(join(folder, path));
    if (info.isSymbolicLink()) session.skip(path, 'symlink');
    else if (!info.isFile()) session.skip(path, 'not-an-image', 'not a regular file');
    else await session.addFile(path, await session.collect(createReadStream(join(folder, path))));
  }
}
