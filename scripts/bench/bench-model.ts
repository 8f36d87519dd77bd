/** The model and images that the inference sections (rounds, inference, curve) measure. */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const BENCH_MODEL = 'squeezenet-fp32';
export const BENCH_IMAGES = ['kitten.png', 'kitten-1600.jpg'];
/** ImageNet class of the kitten: every setup must get it right, or its speed means nothing. */
export const TABBY = 281;
/** onnxruntime intra-op threads in total, in every setup. */
export const THREAD_BUDGET = 2;
export const HTTP_IMAGE = 'kitten-1600.jpg';
export const HTTP_CONCURRENCIES = [1, 16, 1000];

export function benchModelDir(fixtures: string): string {
  return path.join(fixtures, 'models', BENCH_MODEL);
}

export function loadBenchImages(fixtures: string): Map<string, Buffer> {
  return new Map(BENCH_IMAGES.map((name) => [name, readFileSync(path.join(fixtures, 'images', name))]));
}
