/**
 * Experiments and runs in SQLite (`<data>/runs.sqlite`, WAL): parameters, per-epoch metrics, final
 * metrics, dataset id, seed, code version (package version and git commit), durations and the model
 * version produced. Written by the training worker that orchestrates an experiment; read by
 * `zerve runs ...` straight from the file (WAL lets readers run beside the writer).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { codeVersion } from '../code-version.ts';
import { ZerveError } from '../errors.ts';
import type { EpochRecord, ExperimentDetail, ExperimentRecord, ExperimentSummary, ExperimentTest, RunRecord, RunStatus } from '../training.ts';
import type { DatasetHolder, ExperimentStore, ExperimentStart, ExperimentEnd, RunEnd, RunStart } from './experiment-store.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS experiments (
  id TEXT PRIMARY KEY, name TEXT, dataset_id TEXT NOT NULL, request TEXT NOT NULL, seed INTEGER NOT NULL,
  code_version TEXT NOT NULL, git_commit TEXT, status TEXT NOT NULL, started_at TEXT NOT NULL,
  finished_at TEXT, duration_ms REAL, best_run_id TEXT, test TEXT, model_name TEXT, model_version TEXT, error TEXT,
  host TEXT, pid INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL REFERENCES experiments(id), idx INTEGER NOT NULL,
  params TEXT NOT NULL, status TEXT NOT NULL, host TEXT, val_accuracy REAL, val_loss REAL, best_epoch INTEGER,
  epochs_run INTEGER, duration_ms REAL, started_at TEXT NOT NULL, finished_at TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
  run_id TEXT NOT NULL REFERENCES runs(id), phase TEXT NOT NULL, epoch INTEGER NOT NULL, loss REAL, val_accuracy REAL,
  val_loss REAL, elapsed_ms REAL
);
CREATE TABLE IF NOT EXISTS dataset_names (id TEXT PRIMARY KEY, name TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dataset_holders (
  dataset_id TEXT NOT NULL, host TEXT NOT NULL, images INTEGER NOT NULL, bytes INTEGER NOT NULL, added_at TEXT NOT NULL,
  PRIMARY KEY (dataset_id, host)
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment_id, idx);
CREATE INDEX IF NOT EXISTS epochs_by_run ON epochs(run_id);
`;

export type Row = Record<string, unknown>;
const json = (value: unknown) => (typeof value === 'string' ? (JSON.parse(value) as unknown) : null);

/** The run-tracking store of one data directory: each training worker's own file, read elsewhere by fan-out. */
export class SqliteExperimentStore implements ExperimentStore {
  readonly location: string;
  readonly shared = false;
  private readonly db: Database.Database;
  private closed = false;

  constructor(data: string, options: { readonly?: boolean } = {}) {
    if (!options.readonly) mkdirSync(data, { recursive: true });
    const path = join(data, 'runs.sqlite');
    this.location = `sqlite:${path}`;
    try {
      this.db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    } catch (err) {
      throw new ZerveError('BAD_CONFIG', `cannot open the run store ${path}`, { cause: err });
    }
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.exec(SCHEMA);
      // Stores written before experiments recorded their worker. Checked under the write lock: the
      // training workers of one host (`zerve up`) open the same file at once.
      this.db
        .transaction(() => {
          const columns = new Set((this.db.prepare(`PRAGMA table_info(experiments)`).all() as { name: string }[]).map((c) => c.name));
          if (!columns.has('host')) this.db.exec(`ALTER TABLE experiments ADD COLUMN host TEXT; ALTER TABLE experiments ADD COLUMN pid INTEGER;`);
        })
        .immediate();
    }
    this.db.pragma('busy_timeout = 5000');
  }

  async startExperiment(e: ExperimentStart): Promise<void> {
    const { codeVersion: version, gitCommit } = codeVersion();
    this.db
      .prepare(
        `INSERT INTO experiments (id, name, dataset_id, request, seed, code_version, git_commit, status, started_at, host, pid)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)`,
      )
      .run(e.id, e.name ?? null, e.datasetId, JSON.stringify(e.request), e.seed, version, gitCommit, new Date().toISOString(), e.host, e.pid);
  }

  /**
   * Marks failed (WORKER_LOST) the experiments still `running` whose worker on `host` is gone, so
   * none stays running forever after a crash. Returns their ids.
   */
  async failAbandoned(host: string, isAlive: (pid: number) => boolean): Promise<string[]> {
    const rows = this.db.prepare(`SELECT id, pid FROM experiments WHERE status = 'running' AND host = ?`).all(host) as { id: string; pid: number | null }[];
    const gone = rows.filter((r) => r.pid === null || !isAlive(r.pid)).map((r) => r.id);
    for (const id of gone) await this.finishExperiment(id, { status: 'failed', error: 'WORKER_LOST: the training worker died during the experiment' });
    return gone;
  }

  async startRun(r: RunStart): Promise<void> {
    this.db
      .prepare(`INSERT OR REPLACE INTO runs (id, experiment_id, idx, params, status, host, started_at) VALUES (?, ?, ?, ?, 'running', ?, ?)`)
      .run(r.id, r.experimentId, r.index, JSON.stringify(r.params), r.host ?? null, new Date().toISOString());
  }

  async addEpoch(runId: string, e: EpochRecord): Promise<void> {
    this.db
      .prepare(`INSERT INTO epochs (run_id, phase, epoch, loss, val_accuracy, val_loss, elapsed_ms) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      .run(runId, e.phase, e.epoch, e.loss, e.valAccuracy, e.valLoss, e.elapsedMs);
  }

  async finishRun(id: string, r: RunEnd): Promise<void> {
    this.db
      .prepare(
        `UPDATE runs SET status = ?, val_accuracy = ?, val_loss = ?, best_epoch = ?, epochs_run = ?, duration_ms = ?,
         host = COALESCE(?, host), finished_at = ? WHERE id = ?`,
      )
      .run(r.status, r.valAccuracy ?? null, r.valLoss ?? null, r.bestEpoch ?? null, r.epochsRun ?? null, r.durationMs ?? null, r.host ?? null, new Date().toISOString(), id);
  }

  async finishExperiment(id: string, e: ExperimentEnd): Promise<void> {
    // Runs still marked running (canceled or failed mid-search) end with the experiment.
    const finishedAt = new Date().toISOString();
    this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE experiments SET status = ?, finished_at = ?, duration_ms = ?, best_run_id = ?, test = ?, model_name = ?,
           model_version = ?, error = ? WHERE id = ?`,
        )
        .run(e.status, finishedAt, e.durationMs ?? null, e.bestRunId ?? null, e.test === undefined ? null : JSON.stringify(e.test), e.modelName ?? null, e.modelVersion ?? null, e.error ?? null, id);
      if (e.status !== 'succeeded') {
        this.db.prepare(`UPDATE runs SET status = ?, finished_at = ? WHERE experiment_id = ? AND status = 'running'`).run(e.status, finishedAt, id);
      }
    })();
  }

  private experiments(limit = 50): ExperimentRecord[] {
    return (this.db.prepare(`SELECT * FROM experiments ORDER BY started_at DESC LIMIT ?`).all(limit) as Row[]).map(toExperiment);
  }

  async experiment(id: string): Promise<ExperimentRecord | undefined> {
    return this.experimentNow(id);
  }

  private experimentNow(id: string): ExperimentRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM experiments WHERE id = ?`).get(id) as Row | undefined;
    return row ? toExperiment(row) : undefined;
  }

  /** Runs, newest experiment first; or the runs of one experiment. */
  async runs(options: { experimentId?: string; limit?: number } = {}): Promise<RunRecord[]> {
    return this.runsNow(options);
  }

  private runsNow(options: { experimentId?: string; limit?: number } = {}): RunRecord[] {
    const rows = options.experimentId
      ? (this.db.prepare(`SELECT r.*, e.dataset_id, e.seed FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.experiment_id = ? ORDER BY r.idx`).all(options.experimentId) as Row[])
      : (this.db
          .prepare(`SELECT r.*, e.dataset_id, e.seed FROM runs r JOIN experiments e ON e.id = r.experiment_id ORDER BY e.started_at DESC, r.idx LIMIT ?`)
          .all(options.limit ?? 200) as Row[]);
    return rows.map(toRun);
  }

  /** One run with its epochs, and the test metrics and model when it was its experiment's best. */
  async run(id: string): Promise<RunRecord | undefined> {
    return this.runNow(id);
  }

  private runNow(id: string): RunRecord | undefined {
    const row = this.db.prepare(`SELECT r.*, e.dataset_id, e.seed FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?`).get(id) as Row | undefined;
    if (!row) return undefined;
    const run = toRun(row);
    run.epochs = (this.db.prepare(`SELECT * FROM epochs WHERE run_id = ? ORDER BY rowid`).all(id) as Row[]).map((e) => ({
      phase: e.phase as 'run' | 'refit',
      epoch: Number(e.epoch),
      loss: Number(e.loss),
      valAccuracy: Number(e.val_accuracy),
      valLoss: Number(e.val_loss),
      elapsedMs: Number(e.elapsed_ms),
    }));
    const experiment = this.experimentNow(run.experimentId);
    if (experiment?.bestRunId === id) {
      run.test = experiment.test;
      run.modelName = experiment.modelName;
      run.modelVersion = experiment.modelVersion;
    }
    return run;
  }

  /** Newest experiments first, each with its runs. */
  async summaries(limit = 50): Promise<ExperimentSummary[]> {
    return this.experiments(limit).map((e) => ({ ...e, runs: this.runsNow({ experimentId: e.id }) }));
  }

  /** A run with its epochs, or an experiment with its runs and their epochs; undefined when neither. */
  async detail(id: string): Promise<RunRecord | ExperimentDetail | undefined> {
    const run = this.runNow(id);
    if (run) return run;
    const experiment = this.experimentNow(id);
    return experiment && { ...experiment, runs: this.runsNow({ experimentId: id }).map((r) => this.runNow(r.id)!) };
  }

  /** Remembers a dataset's human name (`datasets.add` with `name`). */
  async nameDataset(id: string, name: string): Promise<void> {
    this.db.prepare(`INSERT OR REPLACE INTO dataset_names (id, name, added_at) VALUES (?, ?, ?)`).run(id, name, new Date().toISOString());
  }

  async datasetName(id: string): Promise<string | undefined> {
    return (this.db.prepare(`SELECT name FROM dataset_names WHERE id = ?`).get(id) as { name: string } | undefined)?.name;
  }

  /** The id of the dataset most recently added under `name`. */
  async datasetByName(name: string): Promise<string | undefined> {
    return (this.db.prepare(`SELECT id FROM dataset_names WHERE name = ? ORDER BY added_at DESC LIMIT 1`).get(name) as { id: string } | undefined)?.id;
  }

  async addDatasetHolder(h: DatasetHolder): Promise<void> {
    this.db
      .prepare(`INSERT OR IGNORE INTO dataset_holders (dataset_id, host, images, bytes, added_at) VALUES (?, ?, ?, ?, ?)`)
      .run(h.datasetId, h.host, h.images, h.bytes, new Date().toISOString());
  }

  async datasetHolders(datasetId: string): Promise<DatasetHolder[]> {
    // A runs.sqlite written before the index has no such table (opened read-only, it is not added).
    const known = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dataset_holders'`).get();
    if (!known) return [];
    const rows = this.db.prepare(`SELECT * FROM dataset_holders WHERE dataset_id = ? ORDER BY added_at, host`).all(datasetId) as Row[];
    return rows.map(holderOf);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

export function holderOf(row: Row): DatasetHolder {
  return { datasetId: String(row.dataset_id), host: String(row.host), images: Number(row.images), bytes: Number(row.bytes), addedAt: String(row.added_at) };
}

export function toExperiment(row: Row): ExperimentRecord {
  return {
    id: String(row.id),
    name: (row.name as string | null) ?? null,
    datasetId: String(row.dataset_id),
    request: json(row.request),
    seed: Number(row.seed),
    codeVersion: String(row.code_version),
    gitCommit: (row.git_commit as string | null) ?? null,
    status: row.status as RunStatus,
    startedAt: String(row.started_at),
    finishedAt: (row.finished_at as string | null) ?? null,
    durationMs: (row.duration_ms as number | null) ?? null,
    bestRunId: (row.best_run_id as string | null) ?? null,
    test: json(row.test) as ExperimentTest | null,
    modelName: (row.model_name as string | null) ?? null,
    modelVersion: (row.model_version as string | null) ?? null,
    error: (row.error as string | null) ?? null,
    host: (row.host as string | null) ?? null,
    pid: (row.pid as number | null) ?? null,
  };
}

export function toRun(row: Row): RunRecord {
  return {
    id: String(row.id),
    experimentId: String(row.experiment_id),
    index: Number(row.idx),
    params: json(row.params) as Record<string, number | string>,
    status: row.status as RunStatus,
    datasetId: String(row.dataset_id),
    seed: Number(row.seed),
    host: (row.host as string | null) ?? null,
    valAccuracy: (row.val_accuracy as number | null) ?? null,
    valLoss: (row.val_loss as number | null) ?? null,
    bestEpoch: (row.best_epoch as number | null) ?? null,
    epochsRun: (row.epochs_run as number | null) ?? null,
    durationMs: (row.duration_ms as number | null) ?? null,
    startedAt: String(row.started_at),
    finishedAt: (row.finished_at as string | null) ?? null,
  };
}
