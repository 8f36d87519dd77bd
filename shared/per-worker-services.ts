/**
 * Asking every training worker, not just any one. The broker routes a service to one of its workers,
 * so answers that live on each host (run stores, datasets) come from all only if each worker also
 * offers a name of its own: `runs.list.<worker>`, `runs.get.<worker>`, `datasets.list.<worker>`,
 * where `<worker>` is `<host>-<pid>-<tag>`. A client lists those with `mmi.services` and asks each.
 */
import type { ZerveClient } from './client.ts';
import { DATASETS_LIST, RUNS_GET, RUNS_LIST } from './training.ts';

/** Services a training worker also offers under a name of its own. */
export const PER_WORKER_SERVICES = [RUNS_LIST, RUNS_GET, DATASETS_LIST] as const;

export function perWorkerService(base: string, worker: string): string {
  return `${base}.${worker}`;
}

/** The base service a per-worker name stands for, if it is one of this worker's. */
export function basePerWorkerService(service: string, worker: string): string | undefined {
  return PER_WORKER_SERVICES.find((base) => service === perWorkerService(base, worker));
}

/**
 * Sends `body` to every worker's own `<base>.<worker>` service (to `base` itself when no worker has
 * one: older workers) and settles with each answer.
 */
export async function askEveryWorker<T>(client: ZerveClient, base: string, body: Buffer[], timeoutMs: number): Promise<PromiseSettledResult<T>[]> {
  const own = (await client.services({ timeoutMs })).map((s) => s.name).filter((n) => n.startsWith(`${base}.`));
  const services = own.length > 0 ? own : [base];
  return Promise.allSettled(services.map((s) => client.requestJson<T>(s, body, { timeoutMs })));
}
