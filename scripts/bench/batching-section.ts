/**
 * Dynamic batching, measured before building it: the most a worker could gain by running the
 * requests waiting in it as one `session.run` of batch N, on `squeezenet-fp32` (dynamic batch
 * dimension). The same decoded tensor is run as batches of 1, 2, 4 and 8, with the thread budgets
 * the cluster uses (1 session x 2 threads, and 1 thread as each of 2 workers has), for the same
 * time each; images/s over batch 1 is the upper bound of the gain (gathering requests only adds a wait).
 */
import { performance } from 'node:perf_hooks';
import { RawClassifier } from './raw-classifier.ts';

export const BATCH_SIZES = [1, 2, 4, 8];

export interface BatchRow {
  threads: number;
  batch: number;
  imagesPerSecond: number;
  /** Milliseconds per session.run of the whole batch (median). */
  runMs: number;
  /** images/s over batch 1 with the same threads. */
  ratioToBatch1: number;
}

export async function benchBatching(options: {
  modelPath: string;
  image: Buffer;
  /** ImageNet class the image must get in every batch. */
  expected: number;
  durationMs: number;
  progress: (message: string) => void;
}): Promise<BatchRow[]> {
  const rows: BatchRow[] = [];
  for (const threads of [2, 1]) {
    const classifier = await RawClassifier.load({ modelPath: options.modelPath, threads, allowSpinning: false });
    try {
      const tensor = await classifier.decode(options.image);
      for (const batch of BATCH_SIZES) {
        options.progress(`dynamic batching: ${threads} thread(s), batch ${batch}`);
        const tensors = Array.from({ length: batch }, () => tensor);
        await classifier.runBatch(tensors); // warm-up: a new batch size allocates
        const times: number[] = [];
        let images = 0;
        const started = performance.now();
        while (performance.now() - started < options.durationMs) {
          const t0 = performance.now();
          const classes = await classifier.runBatch(tensors);
          times.push(performance.now() - t0);
          if (classes.some((c) => c !== options.expected)) throw new Error(`batch ${batch}: classes ${classes.join(',')}`);
          images += batch;
        }
        const elapsed = performance.now() - started;
        times.sort((a, b) => a - b);
        const imagesPerSecond = (images * 1000) / elapsed;
        const base = rows.find((r) => r.threads === threads && r.batch === 1)?.imagesPerSecond ?? imagesPerSecond;
        rows.push({ threads, batch, imagesPerSecond, runMs: times[Math.floor(times.length / 2)]!, ratioToBatch1: imagesPerSecond / base });
      }
    } finally {
      await classifier.release();
    }
  }
  return rows;
}
