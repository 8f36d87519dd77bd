import { ZerveError } from '../errors.ts';
import type { ExperimentDetail, ExperimentSummary, RunRecord } from '../training.ts';
import type { ExperimentStore } from './experiment-store.ts';

/**
 * The cluster's run history read from a shared experiment store (PostgreSQL): the same answers as
 * `ClusterRuns` (shared/cluster-runs.ts) without asking any training worker, so a worker that is
 * down loses nothing from history.
 */
export class StoreRuns {
  constructor(readonly store: ExperimentStore) {}

  /** Newest experiments first, each with its runs. */
  list(limit = 50): Promise<ExperimentSummary[]> {
    return this.store.summaries(limit);
  }

  /** A run with its epochs, or an experiment with its runs; UNKNOWN_RUN when neither. */
  async get(id: string): Promise<RunRecord | ExperimentDetail> {
    const found = await this.store.detail(id);
    if (!found) throw new ZerveError('UNKNOWN_RUN', `no run or experiment ${id} in the store`);
    return found;
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
