import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

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
 * crops, flips, rotations, tints, brightness and blur, as test/training-transfer.test.ts makes them.
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
    const variants = await augmentations(photo, options.perClass);
    for (const [i, bytes] of variants.entries()) {
      const file = path.join(i < options.perClass - options.testPerClass ? trainDir : testDir, `${i}.jpg`);
      await writeFile(file, bytes);
      written.push(file);
    }
  }
  return written;
}

async function augmentations(photo: Buffer, count: number): Promise<Buffer[]> {
  const { width = 224, height = 224 } = await sharp(photo).metadata();
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const crop = 0.6 + 0.05 * (i % 8);
    const w = Math.floor(width * crop);
    const h = Math.floor(height * crop);
    let image = sharp(photo).extract({ left: Math.floor(((width - w) * (i % 3)) / 2), top: Math.floor(((height - h) * ((i >> 1) % 3)) / 2), width: w, height: h });
    if (i % 2) image = image.flop();
    if (i % 5 === 0) image = image.rotate(90 * (1 + (i % 3)));
    image = image.tint({ r: 255 - 10 * (i % 4), g: 255 - 15 * (i % 3), b: 255 - 8 * (i % 5) }).modulate({ brightness: 0.8 + 0.05 * (i % 7) });
    if (i % 4 === 3) image = image.blur(1.2);
    out.push(await image.jpeg({ quality: 85 }).toBuffer());
  }
  return out;
}
