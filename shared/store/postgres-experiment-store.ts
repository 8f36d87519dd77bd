import type pg from 'pg';
import { codeVersion } from '../code-version.ts';
import type { Logger } from '../logger.ts';
import type { EpochRecord, ExperimentDetail, ExperimentRecord, ExperimentSummary, RunRecord } from '../training.ts';
import type { DatasetHolder, ExperimentEnd, ExperimentStart, ExperimentStore, RunEnd, RunStart } from './experiment-store.ts';
import { inTransaction, storeErrorOf } from './postgres-pool.ts';
import { migratePostgres, type Migration } from './schema-migrations.ts';
import { holderOf, toExperiment, toRun, type Row } from './sqlite-experiment-store.ts';

/** The experiment tables' schema in PostgreSQL, version by version; columns as in each worker's runs.sqlite. */
export const POSTGRES_EXPERIMENT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'experiments, runs, epochs and dataset names',
    sql: `
CREATE TABLE experiments (
  id TEXT PRIMARY KEY, name TEXT, dataset_id TEXT NOT NULL, request TEXT NOT NULL, seed INTEGER NOT NULL,
  code_version TEXT NOT NULL, git_commit TEXT, status TEXT NOT NULL, started_at TEXT NOT NULL,
  finished_at TEXT, duration_ms DOUBLE PRECISION, best_run_id TEXT, test TEXT, model_name TEXT, model_version TEXT, error TEXT,
  host TEXT, pid INTEGER
);
CREATE INDEX experiments_by_start ON experiments (started_at DESC);
CREATE INDEX experiments_running ON experiments (host) WHERE status = 'running';
CREATE TABLE runs (
  id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL REFERENCES experiments(id), idx INTEGER NOT NULL,
  params TEXT NOT NULL, status TEXT NOT NULL, host TEXT, val_accuracy DOUBLE PRECISION, val_loss DOUBLE PRECISION, best_epoch INTEGER,
  epochs_run INTEGER, duration_ms DOUBLE PRECISION, started_at TEXT NOT NULL, finished_at TEXT
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, idx);
CREATE TABLE epochs (
  seq BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL REFERENCES runs(id), phase TEXT NOT NULL, epoch INTEGER NOT NULL, loss DOUBLE PRECISION,
  val_accuracy DOUBLE PRECISION, val_loss DOUBLE PRECISION, elapsed_ms DOUBLE PRECISION
);
CREATE INDEX epochs_by_run ON epochs (run_id, seq);
CREATE TABLE dataset_names (id TEXT PRIMARY KEY, name TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE INDEX dataset_names_by_name ON dataset_names (name, added_at DESC);`,
  },
  {
    version: 2,
    name: 'where dataset bytes are held',
    sql: `
CREATE TABLE dataset_holders (
  dataset_id TEXT NOT NULL, host TEXT NOT NULL, images INTEGER NOT NULL, bytes BIGINT NOT NULL, added_at TEXT NOT NULL,
  PRIMARY KEY (dataset_id, host)
);`,
  },
];

/** How long a write waits for an unreachable store before it gives up. */
const WRITE_RETRY_FOR_MS = 60_000;
const WRITE_RETRY_EVERY_MS = 1000;

const RUN_COLUMNS = `r.*, e.dataset_id, e.seed`;

/**
 * Experiments, runs and epochs of every training worker in one PostgreSQL database, so that run
 * history outlives any one host and is read without asking the workers. Writes are applied in the
 * order they were made (an epoch never lands before its run), and wait for an unreachable store
 * (up to a minute) rather than lose history.
 */
export class PostgresExperimentStore implements ExperimentStore {
  readonly shared = true;
  private tail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
    private readonly log: Logger,
  ) {}

  /** Migrates the schema (once, under a lock) and returns the store; it owns the pool from here on. */
  static async open(pool: pg.Pool, location: string, log: Logger): Promise<PostgresExperimentStore> {
    try {
      await migratePostgres(pool, 'experiments', POSTGRES_EXPERIMENT_MIGRATIONS);
    } catch (err) {
      throw storeErrorOf(err, location);
    }
    return new PostgresExperimentStore(pool, location, log.child({ store: location }));
  }

  private async read<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw storeErrorOf(err, this.location);
    }
  }

  /** Queues a write behind the earlier ones; retried while the store is unreachable. */
  private write(work: () => Promise<unknown>): Promise<void> {
    const attempt = async (): Promise<void> => {
      const since = Date.now();
      for (;;) {
        try {
          await work();
          return;
        } catch (err) {
          const error = storeErrorOf(err, this.location);
          if (error.code !== 'STORE_UNAVAILABLE' || this.closing || Date.now() - since > WRITE_RETRY_FOR_MS) throw error;
          this.log.warn({ reason: error.message }, 'the experiment store is unavailable; retrying the write');
          await new Promise((resolve) => setTimeout(resolve, WRITE_RETRY_EVERY_MS));
        }
      }
    };
    const done = this.tail.then(attempt, attempt);
    this.tail = done.catch(() => undefined);
    return done;
  }

  startExperiment(e: ExperimentStart): Promise<void> {
    const { codeVersion: version, gitCommit } = codeVersion();
    const startedAt = new Date().toISOString();
    return this.write(() =>
      this.pool.query(
        `INSERT INTO experiments (id, name, dataset_id, request, seed, code_version, git_commit, status, started_at, host, pid)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10)`,
        [e.id, e.name ?? null, e.datasetId, JSON.stringify(e.request), e.seed, version, gitCommit, startedAt, e.host, e.pid],
      ),
    );
  }

  async failAbandoned(host: string, isAlive: (pid: number) => boolean): Promise<string[]> {
    const { rows } = await this.read(() =>
      this.pool.query<{ id: string; pid: number | null }>(`SELECT id, pid FROM experiments WHERE status = 'running' AND host = $1`, [host]),
    );
    const gone = rows.filter((r) => r.pid === null || !isAlive(r.pid)).map((r) => r.id);
    for (const id of gone) await this.finishExperiment(id, { status: 'failed', error: 'WORKER_LOST: the training worker died during the experiment' });
    return gone;
  }

  startRun(r: RunStart): Promise<void> {
    const startedAt = new Date().toISOString();
    return this.write(() =>
      this.pool.query(
        `INSERT INTO runs (id, experiment_id, idx, params, status, host, started_at) VALUES ($1, $2, $3, $4, 'running', $5, $6)
         ON CONFLICT (id) DO UPDATE SET idx = EXCLUDED.idx, params = EXCLUDED.params, status = 'running', host = EXCLUDED.host,
         started_at = EXCLUDED.started_at, finished_at = NULL`,
        [r.id, r.experimentId, r.index, JSON.stringify(r.params), r.host ?? null, startedAt],
      ),
    );
  }

  addEpoch(runId: string, e: EpochRecord): Promise<void> {
    return this.write(() =>
      this.pool.query(
        `INSERT INTO epochs (run_id, phase, epoch, loss, val_accuracy, val_loss, elapsed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [runId, e.phase, e.epoch, e.loss, e.valAccuracy, e.valLoss, e.elapsedMs],
      ),
    );
  }

  finishRun(id: string, r: RunEnd): Promise<void> {
    const finishedAt = new Date().toISOString();
    return this.write(() =>
      this.pool.query(
        `UPDATE runs SET status = $1, val_accuracy = $2, val_loss = $3, best_epoch = $4, epochs_run = $5, duration_ms = $6,
         host = COALESCE($7, host), finished_at = $8 WHERE id = $9`,
        [r.status, r.valAccuracy ?? null, r.valLoss ?? null, r.bestEpoch ?? null, r.epochsRun ?? null, r.durationMs ?? null, r.host ?? null, finishedAt, id],
      ),
    );
  }

  finishExperiment(id: string, e: ExperimentEnd): Promise<void> {
    const finishedAt = new Date().toISOString();
    return this.write(() =>
      inTransaction(this.pool, async (client) => {
        await client.query(
          `UPDATE experiments SET status = $1, finished_at = $2, duration_ms = $3, best_run_id = $4, test = $5, model_name = $6,
           model_version = $7, error = $8 WHERE id = $9`,
          [e.status, finishedAt, e.durationMs ?? null, e.bestRunId ?? null, e.test === undefined ? null : JSON.stringify(e.test), e.modelName ?? null, e.modelVersion ?? null, e.error ?? null, id],
        );
        if (e.status !== 'succeeded') {
          await client.query(`UPDATE runs SET status = $1, finished_at = $2 WHERE experiment_id = $3 AND status = 'running'`, [e.status, finishedAt, id]);
        }
      }),
    );
  }

  experiment(id: string): Promise<ExperimentRecord | undefined> {
    return this.read(async () => {
      const { rows } = await this.pool.query<Row>(`SELECT * FROM experiments WHERE id = $1`, [id]);
      return rows[0] ? toExperiment(rows[0]) : undefined;
    });
  }

  runs(options: { experimentId?: string; limit?: number } = {}): Promise<RunRecord[]> {
    return this.read(async () => {
      const { rows } = options.experimentId
        ? await this.pool.query<Row>(`SELECT ${RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.experiment_id = $1 ORDER BY r.idx`, [options.experimentId])
        : await this.pool.query<Row>(`SELECT ${RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id ORDER BY e.started_at DESC, r.idx LIMIT $1`, [options.limit ?? 200]);
      return rows.map(toRun);
    });
  }

  run(id: string): Promise<RunRecord | undefined> {
    return this.read(async () => {
      const { rows } = await this.pool.query<Row>(`SELECT ${RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = $1`, [id]);
      if (!rows[0]) return undefined;
      const run = toRun(rows[0]);
      const epochs = await this.pool.query<Row>(`SELECT * FROM epochs WHERE run_id = $1 ORDER BY seq`, [id]);
      run.epochs = epochs.rows.map((e) => ({
        phase: e.phase as 'run' | 'refit',
        epoch: Number(e.epoch),
        loss: Number(e.loss),
        valAccuracy: Number(e.val_accuracy),
        valLoss: Number(e.val_loss),
        elapsedMs: Number(e.elapsed_ms),
      }));
      const experiment = await this.experiment(run.experimentId);
      if (experiment?.bestRunId === id) {
        run.test = experiment.test;
        run.modelName = experiment.modelName;
        run.modelVersion = experiment.modelVersion;
      }
      return run;
    });
  }

  summaries(limit = 50): Promise<ExperimentSummary[]> {
    return this.read(async () => {
      const experiments = (await this.pool.query<Row>(`SELECT * FROM experiments ORDER BY started_at DESC LIMIT $1`, [limit])).rows.map(toExperiment);
      const { rows } = await this.pool.query<Row>(
        `SELECT ${RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.experiment_id = ANY($1) ORDER BY r.idx`,
        [experiments.map((e) => e.id)],
      );
      const byExperiment = new Map<string, RunRecord[]>();
      for (const run of rows.map(toRun)) byExperiment.set(run.experimentId, [...(byExperiment.get(run.experimentId) ?? []), run]);
      return experiments.map((e) => ({ ...e, runs: byExperiment.get(e.id) ?? [] }));
    });
  }

  async detail(id: string): Promise<RunRecord | ExperimentDetail | undefined> {
    const run = await this.run(id);
    if (run) return run;
    const experiment = await this.experiment(id);
    if (!experiment) return undefined;
    const runs = await Promise.all((await this.runs({ experimentId: id })).map(async (r) => (await this.run(r.id))!));
    return { ...experiment, runs };
  }

  nameDataset(id: string, name: string): Promise<void> {
    const addedAt = new Date().toISOString();
    return this.write(() =>
      this.pool.query(
        `INSERT INTO dataset_names (id, name, added_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, added_at = EXCLUDED.added_at`,
        [id, name, addedAt],
      ),
    );
  }

  datasetName(id: string): Promise<string | undefined> {
    return this.read(async () => (await this.pool.query<{ name: string }>(`SELECT name FROM dataset_names WHERE id = $1`, [id])).rows[0]?.name);
  }

  datasetByName(name: string): Promise<string | undefined> {
    return this.read(
      async () => (await this.pool.query<{ id: string }>(`SELECT id FROM dataset_names WHERE name = $1 ORDER BY added_at DESC LIMIT 1`, [name])).rows[0]?.id,
    );
  }

  addDatasetHolder(h: DatasetHolder): Promise<void> {
    const addedAt = new Date().toISOString();
    return this.write(() =>
      this.pool.query(
        `INSERT INTO dataset_holders (dataset_id, host, images, bytes, added_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
        [h.datasetId, h.host, h.images, h.bytes, addedAt],
      ),
    );
  }

  datasetHolders(datasetId: string): Promise<DatasetHolder[]> {
    return this.read(async () => {
      const { rows } = await this.pool.query<Row>(`SELECT * FROM dataset_holders WHERE dataset_id = $1 ORDER BY added_at, host`, [datasetId]);
      return rows.map(holderOf);
    });
  }

  /** Waits for queued writes (those that can still be made), then closes the pool; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.tail;
      await this.pool.end();
    })();
    return this.closing;
  }
}
