/**
 * Tombstones of removed model versions, kept in the repository folder so a removal outlives a restart:
 *
 * ```
 * <models>/.removed/<name>/<version>     (a small JSON file: when it was removed)
 * ```
 *
 * The repository ignores a version with a tombstone (even if its folder comes back, copied by hand or
 * left by a crash between the two steps of `add`; the holder deletes such folders when it starts), the holder offers `models.removed.<name>.<version>`
 * for each, and model sync neither fetches such a version nor keeps it (docs/models.md).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RemovedVersion } from '../models.ts';

/** Hidden folder of a repository holding its tombstones. */
export const REMOVED_FOLDER = '.removed';

/** Where the version folders go to be deleted: hidden, so a scan never sees one half-deleted. */
const TRASH_FOLDER = '.incoming';

/**
 * The tombstones of one repository folder.
 *
 * @example
 * const tombstones = new ModelTombstones('./models');
 * await tombstones.add({ name: 'squeezenet', version: '2' });
 */
export class ModelTombstones {
  readonly models: string;

  constructor(models: string) {
    this.models = path.resolve(models);
  }

  /** The removed versions of `name`. */
  async versionsOf(name: string): Promise<Set<string>> {
    const files = await readdir(path.join(this.models, REMOVED_FOLDER, name)).catch(() => [] as string[]);
    return new Set(files.filter((f) => !f.startsWith('.')));
  }

  /** Every removed version. */
  async list(): Promise<RemovedVersion[]> {
    const names = await readdir(path.join(this.models, REMOVED_FOLDER)).catch(() => [] as string[]);
    const removed: RemovedVersion[] = [];
    for (const name of names.filter((n) => !n.startsWith('.')).sort()) {
      for (const version of [...(await this.versionsOf(name))].sort()) removed.push({ name, version });
    }
    return removed;
  }

  /**
   * Writes the tombstone, then deletes the version folder if there is one. The tombstone comes first:
   * a crash in between leaves a folder the repository already ignores, deleted by the next `sweep`.
   * Resolves true when the tombstone is new.
   */
  async add(removed: RemovedVersion): Promise<boolean> {
    const dir = path.join(this.models, REMOVED_FOLDER, removed.name);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, removed.version);
    const created = await writeFile(file, `${JSON.stringify({ removedAt: new Date().toISOString() })}\n`, { flag: 'wx' }).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return false;
        throw err;
      },
    );
    await this.#deleteVersion(removed);
    return created;
  }

  /** Deletes the folder of every removed version still there (a crash between the two steps of `add`, a copy by hand). */
  async sweep(): Promise<void> {
    for (const removed of await this.list()) await this.#deleteVersion(removed);
  }

  async #deleteVersion({ name, version }: RemovedVersion): Promise<void> {
    const folder = path.join(this.models, name, version);
    const trash = path.join(this.models, TRASH_FOLDER);
    await mkdir(trash, { recursive: true });
    const target = path.join(trash, `removed-${name}.${version}.${randomUUID()}`);
    // One rename takes the whole folder out of the repository; the files are deleted after.
    const moved = await rename(folder, target).then(() => true, () => false);
    if (moved) await rm(target, { recursive: true, force: true });
    await rmdir(trash).catch(() => undefined);
    await rmdir(path.join(this.models, name)).catch(() => undefined);
  }
}
