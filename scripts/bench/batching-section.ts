/**
 * Dynamic batching, measured before building it: the most a worker could gain by running the
 * requests waiting in it as one `session.run` of batch N, on `squeezenet-fp32` (dynamic batch
 * dimension). The same decoded tensor is run as batches of 1, 2, 4 and 8, with the thread budgets
 * the cluster uses (1 session x 2 threads, and 1 thread as each of 2 workers has). Every setup is
 * loaded at once and run in alternating rounds (forward, then backward), and each figure is judged
 * on the median of its per-round ratios to batch 1 with the same threads: measured one after another,
 * the table flipped between 0.4x and 1.3x with the machine's load. images/s over batch 1 is the upper
 * bound of the gain (gathering requests only adds a wait).
 */
import { performance } from 'node:perf_hooks';
import { median } from './percentile.ts';
import { processCpuUs } from './process-cpu.ts';
import { RawClassifier } from './raw-classifier.ts';

export const BATCH_SIZES = [1, 2, 4, 8];
export const BATCH_THREADS = [2, 1];

export interface BatchRow {
  threads: number;
  batch: number;
  /** Median over rounds. */
  imagesPerSecond: number;
  /** Milliseconds per session.run of the whole batch (median over every run of every round). */
  runMs: number;
  /** Median over rounds of images/s over batch 1's with the same threads in the same round. */
  ratioToBatch1: number;
  /** Median over rounds of CPU per image (this process, all threads) over batch 1's in the same round. */
  cpuToBatch1: number;
  /** images/s of each round. */
  perRound: number[];
}

export async function benchBatching(options: {
  modelPath: string;
  image: Buffer;
  /** ImageNet class the image must get in every batch. */
  expected: number;
  /** Measured time of each setup in each round. */
  durationMs: number;
  /** @defaultValue 5 */
  rounds?: number;
  progress: (message: string) => void;
}): Promise<BatchRow[]> {
  const rounds = options.rounds ?? 5;
  const classifiers = new Map<number, RawClassifier>();
  try {
    for (const threads of BATCH_THREADS) classifiers.set(threads, await RawClassifier.load({ modelPath: options.modelPath, threads, allowSpinning: false }));
    const tensor = await classifiers.get(BATCH_THREADS[0]!)!.decode(options.image);
    const setups = BATCH_THREADS.flatMap((threads) =>
      BATCH_SIZES.map((batch) => ({ threads, batch, tensors: Array.from({ length: batch }, () => tensor), perSecond: [] as number[], cpuPerImage: [] as number[], runMs: [] as number[] })),
    );
    for (const s of setups) await classifiers.get(s.threads)!.runBatch(s.tensors); // warm-up: a new batch size allocates
    for (let round = 0; round < rounds; round++) {
      options.progress(`dynamic batching: round ${round + 1} of ${rounds} (${setups.length} setups, ${options.durationMs} ms each)`);
      for (const s of round % 2 === 0 ? setups : [...setups].reverse()) {
        const classifier = classifiers.get(s.threads)!;
        let images = 0;
        const cpuBefore = processCpuUs(process.pid);
        const started = performance.now();
        while (performance.now() - started < options.durationMs) {
          const t0 = performance.now();
          const classes = await classifier.runBatch(s.tensors);
          s.runMs.push(performance.now() - t0);
          if (classes.some((c) => c !== options.expected)) throw new Error(`batch ${s.batch}: classes ${classes.join(',')}`);
          images += s.batch;
        }
        const elapsed = performance.now() - started;
        s.perSecond.push((images * 1000) / elapsed);
        s.cpuPerImage.push(((processCpuUs(process.pid) ?? Number.NaN) - (cpuBefore ?? Number.NaN)) / images);
      }
    }
    return setups.map((s) => {
      const base = setups.find((b) => b.threads === s.threads && b.batch === 1)!;
      return {
        threads: s.threads,
        batch: s.batch,
        imagesPerSecond: median(s.perSecond),
        runMs: median(s.runMs),
        ratioToBatch1: median(s.perSecond.map((x, i) => x / base.perSecond[i]!)),
        cpuToBatch1: median(s.cpuPerImage.map((x, i) => x / base.cpuPerImage[i]!)),
        perRound: s.perSecond,
      };
    });
  } finally {
    await Promise.all([...classifiers.values()].map((c) => c.release()));
  }
}
