import { processCpuUs } from './process-cpu.ts';
import { runLoad, type LoadOptions, type LoadResult } from './load-runner.ts';

export interface LoadCpuResult extends LoadResult {
  /**
   * CPU (user + system, all threads) of `pids` together per completed task, in ms, over the whole run
   * (warm-up included, every completion counted). On a machine other work shares, throughput moves with
   * that work; CPU per task moves much less, and at saturation on idle cores throughput follows it.
   */
  cpuMsPerTask?: number;
}

/** `runLoad`, also measuring the CPU that the processes `pids` spend per task. */
export async function runLoadWithCpu(task: () => Promise<unknown>, options: LoadOptions, pids: number[]): Promise<LoadCpuResult> {
  let done = 0;
  const before = pids.map(processCpuUs);
  const result = await runLoad(async () => {
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
