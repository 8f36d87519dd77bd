/**
 * Every training worker's datasets (shared/per-worker-services.ts), one entry per id: a dataset stored
 * on any host shows, with the name it was added under on its host.
 */
import type { ZerveClient } from './client.ts';
import { askEveryWorker } from './per-worker-services.ts';
import { DATASETS_LIST, type DatasetSummary } from './training.ts';

export async function clusterDatasets(client: ZerveClient, timeoutMs: number): Promise<DatasetSummary[]> {
  const answers = await askEveryWorker<DatasetSummary[]>(client, DATASETS_LIST, [], timeoutMs);
  const failed = answers.find((a): a is PromiseRejectedResult => a.status === 'rejected');
  if (failed && !answers.some((a) => a.status === 'fulfilled')) throw failed.reason;
  const byId = new Map<string, DatasetSummary>();
  for (const a of answers) {
    if (a.status !== 'fulfilled') continue;
    for (const d of a.value) {
      // A name lives in the run store of the worker it was added on.
      const name = d.name ?? byId.get(d.id)?.name;
      byId.set(d.id, name === undefined ? d : { ...d, name });
    }
  }
  return [...byId.values()];
}
