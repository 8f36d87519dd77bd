/**
 * Experiments, their runs and epochs, and dataset names, as the training worker and the readers of
 * run history see them: each training worker's own SQLite file (`SqliteExperimentStore`, read
 * across the cluster by fan-out through the broker) or one PostgreSQL database every training
 * worker writes to (`PostgresExperimentStore`, read directly: `shared` is true).
 */
import type { EpochRecord, ExperimentDetail, ExperimentRecord, ExperimentSummary, RunRecord, RunStatus } from '../training.ts';

export interface ExperimentStart {
  id: string;
  name?: string;
  datasetId: string;
  request: unknown;
  seed: number;
  host: string;
  pid: number;
}

export interface ExperimentEnd {
  status: RunStatus;
  durationMs?: number;
  bestRunId?: string;
  test?: unknown;
  modelName?: string;
  modelVersion?: string;
  error?: string;
}

export interface RunStart {
  id: string;
  experimentId: string;
  index: number;
  params: Record<string, number | string>;
  host?: string;
}

export interface RunEnd {
  status: RunStatus;
  valAccuracy?: number;
  valLoss?: number;
  bestEpoch?: number;
  epochsRun?: number;
  durationMs?: number;
  host?: string;
}

/** One host holding a dataset's bytes: the dataset index a fresh host reads to find them. */
export interface DatasetHolder {
  /** The dataset's id: the SHA-256 of its content. */
  datasetId: string;
  host: string;
  images: number;
  bytes: number;
  /** ISO time the holder was first recorded. */
  addedAt?: string;
}

export interface ExperimentStore {
  /** What the store is, for logs: a file path or a URL without its password. */
  readonly location: string;
  /** True when every training worker writes here: history is read from the store, not by fan-out. */
  readonly shared: boolean;

  startExperiment(e: ExperimentStart): Promise<void>;
  /** Marks failed (WORKER_LOST) the experiments still running on `host` whose worker is gone; their ids. */
  failAbandoned(host: string, isAlive: (pid: number) => boolean): Promise<string[]>;
  startRun(r: RunStart): Promise<void>;
  addEpoch(runId: string, e: EpochRecord): Promise<void>;
  finishRun(id: string, r: RunEnd): Promise<void>;
  /** Ends the experiment; its runs still running end with it unless it succeeded. One transaction. */
  finishExperiment(id: string, e: ExperimentEnd): Promise<void>;
  experiment(id: string): Promise<ExperimentRecord | undefined>;
  /** Runs, newest experiment first; or the runs of one experiment. */
  runs(options?: { experimentId?: string; limit?: number }): Promise<RunRecord[]>;
  /** One run with its epochs, and the test metrics and model when it was its experiment's best. */
  run(id: string): Promise<RunRecord | undefined>;
  /** Newest experiments first, each with its runs. */
  summaries(limit?: number): Promise<ExperimentSummary[]>;
  /** A run with its epochs, or an experiment with its runs and their epochs; undefined when neither. */
  detail(id: string): Promise<RunRecord | ExperimentDetail | undefined>;
  /** Remembers a dataset's human name (`datasets.add` with `name`). */
  nameDataset(id: string, name: string): Promise<void>;
  datasetName(id: string): Promise<string | undefined>;
  /** The id of the dataset most recently added under `name`. */
  datasetByName(name: string): Promise<string | undefined>;
  /** Records that `host` holds a dataset's bytes (imported or fetched there); once per host. */
  addDatasetHolder(holder: DatasetHolder): Promise<void>;
  /** The hosts holding a dataset's bytes, first recorded first; empty when none recorded it. */
  datasetHolders(datasetId: string): Promise<DatasetHolder[]>;
  close(): Promise<void>;
}
