import { performance } from 'node:perf_hooks';

export interface LoadOptions {
  /** Requests kept in flight at once (closed loop: each loop starts its next request when one ends). */
  concurrency: number;
  /** Time run first and not measured (connections, JIT, caches). @defaultValue 1000 */
  warmUpMs?: number;
  /** Time measured. @defaultValue 3000 */
  durationMs?: number;
}

export interface LoadResult {
  concurrency: number;
  /** Requests completed inside the measured window. */
  completed: number;
  errors: number;
  /** The first error's message, when there were errors: a row that failed says why instead of ending the bench. */
  firstError?: string;
  /** Completed requests per second over the measured window. */
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  durationMs: number;
}

/**
 * Runs `task` from `concurrency` loops at once for a warm-up period, then for a measured period, and
 * reports throughput and latency percentiles of the requests that both started and ended inside the
 * measured window. A failing task counts as an error (the first is rethrown at the end, so a broken
 * setup cannot pass as a fast one).
 */
export async function runLoad(task: () => Promise<unknown>, options: LoadOptions): Promise<LoadResult> {
  const warmUpMs = options.warmUpMs ?? 1000;
  const durationMs = options.durationMs ?? 3000;
  const started = performance.now();
  const measureFrom = started + warmUpMs;
  const measureUntil = measureFrom + durationMs;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: unknown;
  let completedInWindow = 0;

  const loop = async (): Promise<void> => {
    while (performance.now() < measureUntil) {
      const t0 = performance.now();
      try {
        await task();
      } catch (err) {
        errors++;
        firstError ??= err;
        if (errors > 100) return;
        continue;
      }
      const t1 = performance.now();
      if (t1 <= measureUntil && t0 >= measureFrom) latencies.push(t1 - t0);
      if (t1 > measureFrom && t1 <= measureUntil) completedInWindow++;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  latencies.sort((a, b) => a - b);
  return {
    concurrency: options.concurrency,
    completed: completedInWindow,
    errors,
    ...(errors > 0 ? { firstError: firstError instanceof Error ? firstError.message : String(firstError) } : {}),
    perSecond: (completedInWindow * 1000) / durationMs,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    durationMs,
  };
}

/** Nearest-rank percentile of sorted values; NaN when there are none. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** A table's errors cell: the count, and the first error's message when there was one. */
export function errorsCell(result: Pick<LoadResult, 'errors' | 'firstError'>): string {
  return result.firstError ? `${result.errors} (${result.firstError.slice(0, 60)})` : String(result.errors);
}
