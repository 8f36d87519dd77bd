import { availableParallelism } from 'node:os';

/** How `zerve up` splits the machine's cores between inference worker processes and their onnxruntime threads. */
export interface InferenceSizing {
  /** Inference worker processes. */
  workers: number;
  /** onnxruntime intra-op threads per worker. */
  threads: number;
}

/**
 * Most intra-op threads one worker gets by default. On 2 cores, 1 worker x 2 threads beat 2 workers x
 * 1 thread in `npm run bench -- inference` (latency at concurrency 1 and images/s at saturation); past a
 * few threads, a session as small as squeezenet's gains little per thread, so more cores become more
 * workers. Larger machines were not measured here (see docs/performance.md).
 */
export const MAX_DEFAULT_THREADS_PER_WORKER = 4;

/**
 * `zerve up`'s default inference sizing for a machine of `cores` cores: each worker takes up to
 * {@link MAX_DEFAULT_THREADS_PER_WORKER} threads, and the cores are divided into as many such workers
 * as fit (at least one). 1 core: 1 x 1; 2 cores: 1 x 2; 8 cores: 2 x 4.
 */
export function inferenceSizing(cores: number = availableParallelism()): InferenceSizing {
  const usable = Math.max(1, Math.floor(cores));
  const threads = Math.min(usable, MAX_DEFAULT_THREADS_PER_WORKER);
  return { workers: Math.max(1, Math.floor(usable / threads)), threads };
}
