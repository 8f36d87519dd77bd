import { performance } from 'node:perf_hooks';
import { percentile } from './percentile.ts';
import { processCpuUs } from './process-cpu.ts';

export interface LoadOptions {
  /** Requests kept in flight at once (closed loop: each loop starts its next request when one ends). */
  concurrency: number;
  /** Time run first and not measured (connections, JIT, caches). @defaultValue 1000 */
  warmUpMs?: number;
  /** Time measured. @defaultValue 3000 */
  durationMs?: number;
  /**
   * Keep the window open past `durationMs` until this many requests both started and ended inside it
   * (up to `maxDurationMs`): at a concurrency whose latency is longer than `durationMs`, a fixed window
   * would time no request at all. @defaultValue 0
   */
  minLatencies?: number;
  /** Longest window when `minLatencies` holds it open. @defaultValue 60000 */
  maxDurationMs?: number;
  /** Processes whose CPU to measure per task (`cpuMsPerTask`), e.g. the client, broker and workers. @defaultValue none */
  cpuPids?: readonly number[];
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
  /** Requests timed (started and ended inside the window): what p50 and p99 are of. */
  timed: number;
  p50Ms: number;
  p99Ms: number;
  /** The measured window (longer than asked when `minLatencies` held it open). */
  durationMs: number;
  /**
   * CPU (user + system, all threads) of `cpuPids` together per completed task, in ms, over the whole run
   * (warm-up included, every completion counted); absent without `cpuPids` or /proc. On a machine other
   * work shares, throughput moves with that work; CPU per task moves much less, and at saturation on
   * idle cores throughput follows it.
   */
  cpuMsPerTask?: number;
}

/**
 * Runs `task` from `concurrency` loops at once for a warm-up period, then for a measured period, and
 * reports throughput and latency percentiles of the requests that both started and ended inside the
 * measured window. A failing task counts as an error (the first is rethrown at the end, so a broken
 * setup cannot pass as a fast one).
 */
export async function runLoad(task: () => Promise<unknown>, options: LoadOptions): Promise<LoadResult> {
  const pids = options.cpuPids ?? [];
  if (pids.length === 0) return runClosedLoops(task, options);
  let done = 0;
  const before = pids.map(processCpuUs);
  const result = await runClosedLoops(async () => {
    await task();
    done++;
  }, options);
  const after = pids.map(processCpuUs);
  let used = 0;
  for (let i = 0; i < pids.length; i++) {
    const [start, end] = [before[i], after[i]];
    if (start === undefined || end === undefined) return result;
    used += end - start;
  }
  return done === 0 ? result : { ...result, cpuMsPerTask: used / done / 1000 };
}

async function runClosedLoops(task: () => Promise<unknown>, options: LoadOptions): Promise<LoadResult> {
  const warmUpMs = options.warmUpMs ?? 1000;
  const durationMs = options.durationMs ?? 3000;
  const minLatencies = options.minLatencies ?? 0;
  const started = performance.now();
  const measureFrom = started + warmUpMs;
  const longestMs = Math.max(durationMs, options.maxDurationMs ?? 60_000);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: unknown;
  let completedInWindow = 0;
  /** When the `minLatencies`-th request was timed: the window closes then, or at its planned end if later. */
  let enoughAt = minLatencies === 0 ? measureFrom : Number.POSITIVE_INFINITY;
  // As a length, not an end minus a start: a planned window of 40 ms reports 40, not 40.00000000000023.
  const windowMs = () => Math.max(durationMs, Math.min(enoughAt - measureFrom, longestMs));
  const open = (now: number) => now - measureFrom <= windowMs();

  const loop = async (): Promise<void> => {
    while (open(performance.now())) {
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
      if (!open(t1)) continue;
      if (t0 >= measureFrom && latencies.push(t1 - t0) === minLatencies) enoughAt = t1;
      if (t1 > measureFrom) completedInWindow++;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  latencies.sort((a, b) => a - b);
  const measuredMs = windowMs();
  return {
    concurrency: options.concurrency,
    completed: completedInWindow,
    errors,
    ...(errors > 0 ? { firstError: firstError instanceof Error ? firstError.message : String(firstError) } : {}),
    perSecond: (completedInWindow * 1000) / measuredMs,
    timed: latencies.length,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    durationMs: measuredMs,
  };
}

/** A table's errors cell: the count, and the first error's message when there was one. */
export function errorsCell(result: Pick<LoadResult, 'errors' | 'firstError'>): string {
  return result.firstError ? `${result.errors} (${result.firstError.slice(0, 60)})` : String(result.errors);
}
