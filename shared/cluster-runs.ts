/**
 * The cluster's run history. Each training worker keeps the experiments it orchestrated in its own
 * run store (`<data>/runs.sqlite`); asking every worker (shared/per-worker-services.ts) and merging
 * gives the whole cluster's history, whichever host trained what.
 */
import type { ZerveClient } from './client.ts';
import { ZerveError } from './errors.ts';
import { encodeJson } from './messages.ts';
import { askEveryWorker } from './per-worker-services.ts';
import { RUNS_GET, RUNS_LIST, type ExperimentDetail, type ExperimentSummary, type RunRecord, type RunsGetRequest, type RunsListRequest } from './training.ts';

/** The first failure that is not `except`, or `fallback`. */
function firstFailure(results: PromiseSettledResult<unknown>[], except: string, fallback: ZerveError): ZerveError {
  const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => ZerveError.from(r.reason));
  return errors.find((e) => e.code !== except) ?? fallback;
}

/** Reads run history from every training worker of the cluster. */
export class ClusterRuns {
  constructor(
    private readonly client: ZerveClient,
    private readonly timeoutMs = 10_000,
  ) {}

  /** Newest experiments first, each with its runs, from every run store (one copy of each); fails only if no store answers. */
  async list(limit = 50): Promise<ExperimentSummary[]> {
    const answers = await askEveryWorker<ExperimentSummary[]>(this.client, RUNS_LIST, [encodeJson({ limit } satisfies RunsListRequest)], this.timeoutMs);
    if (!answers.some((a) => a.status === 'fulfilled')) throw firstFailure(answers, '', new ZerveError('NO_WORKERS', 'no training worker answered runs.list'));
    const byId = new Map<string, ExperimentSummary>();
    for (const a of answers) if (a.status === 'fulfilled') for (const e of a.value) byId.set(e.id, e);
    return [...byId.values()].sort((a, b) => (a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : 0)).slice(0, limit);
  }

  /** A run with its epochs, or an experiment with its runs, from whichever run store has it; UNKNOWN_RUN when none does. */
  async get(id: string): Promise<RunRecord | ExperimentDetail> {
    const answers = await askEveryWorker<RunRecord | ExperimentDetail>(this.client, RUNS_GET, [encodeJson({ id } satisfies RunsGetRequest)], this.timeoutMs);
    for (const a of answers) if (a.status === 'fulfilled') return a.value;
    throw firstFailure(answers, 'UNKNOWN_RUN', new ZerveError('UNKNOWN_RUN', `no run or experiment ${id} in the cluster`));
  }
}

/** An experiment's runs as rows, the best one carrying the experiment's test metrics and model. */
export function experimentRuns(experiment: ExperimentSummary | ExperimentDetail): RunRecord[] {
  return experiment.runs.map((r) =>
    r.id === experiment.bestRunId ? { ...r, test: experiment.test, modelName: experiment.modelName, modelVersion: experiment.modelVersion } : r,
  );
}
