import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { JobState, JobStatus, JobTicket } from '../jobs.ts';
import {
  checkJobStoreOptions,
  jobStatusOf,
  packFrames,
  unpackFrames,
  type ClaimedJob,
  type JobError,
  type JobRow,
  type JobRunOptions,
  type JobStore,
  type JobStoreOptions,
  type RecoveredJobs,
} from './job-store.ts';
import { inTransaction, storeErrorOf } from './postgres-pool.ts';
import { migratePostgres, type Migration } from './schema-migrations.ts';

/** The jobs tables' schema in PostgreSQL, version by version. */
export const POSTGRES_JOB_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'jobs, their progress and leases',
    sql: `
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  options JSONB NOT NULL,
  body BYTEA,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  available_at BIGINT NOT NULL,
  started_at BIGINT,
  finished_at BIGINT,
  expires_at BIGINT,
  result BYTEA,
  error_code TEXT,
  error_message TEXT,
  progress_seq INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT,
  lease_until BIGINT
);
CREATE INDEX jobs_queue ON jobs (available_at, created_at) WHERE state = 'queued';
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_key ON jobs ((options->>'key')) WHERE state IN ('queued', 'running');
CREATE TABLE job_progress (
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  at BIGINT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (job_id, seq)
);`,
  },
];

const STATUS_COLUMNS = `id, service, state, attempts, created_at, started_at, finished_at, expires_at, result,
  error_code, error_message, progress_seq, options`;

/**
 * The job queue in a PostgreSQL database that several jobs services share. A service claims the
 * oldest due job with `SELECT … FOR UPDATE SKIP LOCKED` (services never wait on each other's rows)
 * under a lease it renews while the job runs; a job whose lease ran out is taken back by any service.
 * Every failure to reach the server is a `STORE_UNAVAILABLE` error; the pool reconnects by itself.
 * @example
 * const store = await PostgresJobStore.open(pool, 'postgres://zerve@db/zerve', { resultTtlMs: 86_400_000, maxProgressEntries: 100 });
 */
export class PostgresJobStore implements JobStore {
  /** `host/pid/uuid`: who holds a lease, readable in the database. */
  readonly owner = `${hostname()}/${process.pid}/${randomUUID()}`;
  readonly exclusive = false;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
    private readonly options: JobStoreOptions,
  ) {}

  /** Migrates the schema (once, under a lock) and returns the store; it owns the pool from here on. */
  static async open(pool: pg.Pool, location: string, options: JobStoreOptions): Promise<PostgresJobStore> {
    checkJobStoreOptions(options);
    try {
      await migratePostgres(pool, 'jobs', POSTGRES_JOB_MIGRATIONS);
    } catch (err) {
      throw storeErrorOf(err, location);
    }
    return new PostgresJobStore(pool, location, { ...options });
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw storeErrorOf(err, this.location);
    }
  }

  submit(service: string, body: Buffer[], options: JobRunOptions = {}, now = Date.now()): Promise<JobTicket> {
    return this.run(async () => {
      if (options.key !== undefined) {
        const { rows } = await this.pool.query<JobTicket>(
          `SELECT id, state FROM jobs WHERE state IN ('queued', 'running') AND options->>'key' = $1 LIMIT 1`,
          [options.key],
        );
        if (rows[0]) return rows[0];
      }
      const id = randomUUID();
      await this.pool.query(
        `INSERT INTO jobs (id, service, options, body, state, created_at, available_at) VALUES ($1, $2, $3, $4, 'queued', $5, $5)`,
        [id, service, JSON.stringify(options), packFrames(body), now],
      );
      return { id, state: 'queued' };
    });
  }

  count(state: JobState): Promise<number> {
    return this.run(async () => {
      const { rows } = await this.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM jobs WHERE state = $1`, [state]);
      return rows[0]!.n;
    });
  }

  claim(leaseMs: number, now = Date.now()): Promise<ClaimedJob | undefined> {
    return this.run(async () => {
      const { rows } = await this.pool.query<{ id: string; service: string; options: JobRunOptions; body: Buffer; attempts: number }>(
        `UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = $1, lease_owner = $2, lease_until = $3
         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND available_at <= $1
                     ORDER BY available_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, service, options, body, attempts`,
        [now, this.owner, now + leaseMs],
      );
      const row = rows[0];
      if (!row) return undefined;
      return { id: row.id, service: row.service, body: unpackFrames(row.body), options: row.options, attempts: row.attempts };
    });
  }

  renewLeases(ids: string[], leaseMs: number, now = Date.now()): Promise<string[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.run(async () => {
      const { rows } = await this.pool.query<{ id: string }>(
        `UPDATE jobs SET lease_until = $1 WHERE id = ANY($2) AND state = 'running' AND lease_owner = $3 RETURNING id`,
        [now + leaseMs, ids, this.owner],
      );
      return rows.map((r) => r.id);
    });
  }

  nextDueAt(): Promise<number | undefined> {
    return this.run(async () => {
      const { rows } = await this.pool.query<{ at: number | null }>(`SELECT MIN(available_at) AS at FROM jobs WHERE state = 'queued'`);
      return rows[0]?.at ?? undefined;
    });
  }

  recoverAbandoned(defaultMaxAttempts: number, error: JobError, options: { all?: boolean; now?: number } = {}): Promise<RecoveredJobs> {
    const now = options.now ?? Date.now();
    return this.run(() =>
      inTransaction(this.pool, async (client) => {
        const { rows } = await client.query<{ id: string; options: JobRunOptions; attempts: number }>(
          `SELECT id, options, attempts FROM jobs WHERE state = 'running' AND ($1 OR lease_until IS NULL OR lease_until < $2)
           FOR UPDATE SKIP LOCKED`,
          [options.all === true, now],
        );
        const exhausted = rows.filter((r) => r.attempts >= (r.options.maxAttempts ?? defaultMaxAttempts)).map((r) => r.id);
        const again = rows.filter((r) => !exhausted.includes(r.id)).map((r) => r.id);
        if (exhausted.length > 0) {
          await client.query(
            `UPDATE jobs SET state = 'failed', body = NULL, error_code = $1, error_message = $2, finished_at = $3, expires_at = $4,
             lease_owner = NULL, lease_until = NULL WHERE id = ANY($5)`,
            [error.code, error.message, now, now + this.options.resultTtlMs, exhausted],
          );
        }
        if (again.length > 0) {
          await client.query(
            `UPDATE jobs SET state = 'queued', available_at = $1, lease_owner = NULL, lease_until = NULL WHERE id = ANY($2)`,
            [now, again],
          );
        }
        return { failed: exhausted, requeued: again.length };
      }),
    );
  }

  retry(id: string, dueAt: number, error: JobError): Promise<boolean> {
    return this.run(async () => {
      const { rowCount } = await this.pool.query(
        `UPDATE jobs SET state = 'queued', available_at = $1, error_code = $2, error_message = $3, lease_owner = NULL, lease_until = NULL
         WHERE id = $4 AND state = 'running' AND lease_owner = $5`,
        [dueAt, error.code, error.message, id, this.owner],
      );
      return rowCount === 1;
    });
  }

  addProgress(id: string, frames: Buffer[], now = Date.now()): Promise<number | undefined> {
    return this.run(() =>
      inTransaction(this.pool, async (client) => {
        const { rows } = await client.query<{ progress_seq: number }>(
          `UPDATE jobs SET progress_seq = progress_seq + 1 WHERE id = $1 AND state = 'running' AND lease_owner = $2 RETURNING progress_seq`,
          [id, this.owner],
        );
        if (!rows[0]) return undefined;
        const seq = rows[0].progress_seq;
        if (this.options.maxProgressEntries > 0) {
          await client.query(`INSERT INTO job_progress (job_id, seq, at, data) VALUES ($1, $2, $3, $4)`, [id, seq, now, frames[0] ?? Buffer.alloc(0)]);
          await client.query(`DELETE FROM job_progress WHERE job_id = $1 AND seq <= $2`, [id, seq - this.options.maxProgressEntries]);
        }
        return seq;
      }),
    );
  }

  succeed(id: string, frames: Buffer[], now = Date.now()): Promise<boolean> {
    return this.run(async () => {
      const { rowCount } = await this.pool.query(
        `UPDATE jobs SET state = 'succeeded', body = NULL, result = $1, error_code = NULL, error_message = NULL,
         finished_at = $2, expires_at = $3, lease_owner = NULL, lease_until = NULL WHERE id = $4 AND state = 'running' AND lease_owner = $5`,
        [packFrames(frames), now, now + this.options.resultTtlMs, id, this.owner],
      );
      return rowCount === 1;
    });
  }

  fail(id: string, error: JobError, now = Date.now()): Promise<boolean> {
    return this.run(async () => {
      const { rowCount } = await this.pool.query(
        `UPDATE jobs SET state = 'failed', body = NULL, error_code = $1, error_message = $2, finished_at = $3, expires_at = $4,
         lease_owner = NULL, lease_until = NULL WHERE id = $5 AND state = 'running' AND lease_owner = $6`,
        [error.code, error.message, now, now + this.options.resultTtlMs, id, this.owner],
      );
      return rowCount === 1;
    });
  }

  cancel(id: string, now = Date.now()): Promise<JobStatus | undefined> {
    return this.run(async () => {
      await this.pool.query(
        `UPDATE jobs SET state = 'canceled', body = NULL, error_code = 'CANCELED', error_message = $1,
         finished_at = $2, expires_at = $3, lease_owner = NULL, lease_until = NULL WHERE id = $4 AND state IN ('queued', 'running')`,
        ['the job was canceled', now, now + this.options.resultTtlMs, id],
      );
      return this.status(id, 0, now);
    });
  }

  status(id: string, since = 0, now = Date.now()): Promise<JobStatus | undefined> {
    return this.run(async () => {
      const { rows } = await this.pool.query<JobRow>(
        `SELECT ${STATUS_COLUMNS} FROM jobs WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)`,
        [id, now],
      );
      if (!rows[0]) return undefined;
      const progress = await this.pool.query<{ seq: number; at: number; data: Buffer }>(
        `SELECT seq, at, data FROM job_progress WHERE job_id = $1 AND seq > $2 ORDER BY seq`,
        [id, since],
      );
      return jobStatusOf(rows[0], progress.rows);
    });
  }

  purgeExpired(now = Date.now()): Promise<number> {
    return this.run(async () => {
      const { rowCount } = await this.pool.query(`DELETE FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= $1`, [now]);
      return rowCount ?? 0;
    });
  }

  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
}
