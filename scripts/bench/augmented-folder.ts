import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { photoVariants } from '../../test/helpers/photo-variants.ts';

export interface AugmentedFolderOptions {
  /** Folder to write: `<label>/<i>.jpg` and `test/<label>/<i>.jpg`. */
  folder: string;
  /** Class label to source photo. */
  classes: Record<string, string>;
  /** Images per class, test ones included. */
  perClass: number;
  /** Of those, images per class under `test/` (the dataset's explicit test split). */
  testPerClass: number;
}

/**
 * A folder dataset (class folders plus an explicit `test/`) of JPEG variants of a few photos:
 * crops, flips, rotations, tints, brightness and blur, made by the transfer tests' own `photoVariants`.
 * Resolves with every written file's path.
 */
export async function writeAugmentedFolder(options: AugmentedFolderOptions): Promise<string[]> {
  const written: string[] = [];
  for (const [label, photoPath] of Object.entries(options.classes)) {
    const photo = await readFile(photoPath);
    const trainDir = path.join(options.folder, label);
    const testDir = path.join(options.folder, 'test', label);
    await mkdir(trainDir, { recursive: true });
    await mkdir(testDir, { recursive: true });
    const variants = await photoVariants(photo, options.perClass, 0);
    for (const [i, bytes] of variants.entries()) {
      const file = path.join(i < options.perClass - options.testPerClass ? trainDir : testDir, `${i}.jpg`);
      await writeFile(file, bytes);
      written.push(file);
    }
  }
  return written;
}
