import { readFileSync } from 'node:fs';

/**
 * CPU time (user + system, all threads) a process has used so far, in microseconds, from
 * /proc/<pid>/stat; undefined where /proc is not available (not Linux).
 */
export function processCpuUs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? (ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND : undefined;
  } catch {
    return undefined;
  }
}

/** USER_HZ: 100 on every Linux platform Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Measures the CPU each of `pids` spends while `fn` runs, in microseconds (undefined if unknown). */
export async function withProcessCpu<T>(pids: Record<string, number>, fn: () => Promise<T>): Promise<{ result: T; cpuUs: Record<string, number | undefined> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, processCpuUs(pid)]));
  const result = await fn();
  const cpuUs: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const start = before[name];
    const end = processCpuUs(pid);
    cpuUs[name] = start === undefined || end === undefined ? undefined : end - start;
  }
  return { result, cpuUs };
}
