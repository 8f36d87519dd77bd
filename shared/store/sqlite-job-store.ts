import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
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
import { migrateSqlite, type Migration } from './schema-migrations.ts';

export interface SqliteJobStoreOptions extends JobStoreOptions {
  /** SQLite file; its folder is created. `:memory:` keeps nothing (tests only). */
  file: string;
}

/** The jobs file's schema, version by version. Version 1 is the schema of releases before versioning. */
export const SQLITE_JOB_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'jobs and their progress',
    sql: `
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  options TEXT NOT NULL,
  body BLOB,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  available_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  expires_at INTEGER,
  result BLOB,
  error_code TEXT,
  error_message TEXT,
  progress_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, available_at, created_at);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_progress (
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;`,
  },
  {
    version: 2,
    name: 'leases on running jobs',
    sql: `
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';`,
  },
];

/**
 * The durable job queue in one SQLite file in WAL mode, every change one transaction committed before
 * it is acknowledged, so an accepted job survives any process restart. One jobs service per file.
 * @example
 * const store = new SqliteJobStore({ file: 'data/jobs.sqlite', resultTtlMs: 86_400_000, maxProgressEntries: 100 });
 * const { id } = await store.submit('classify.squeezenet', [header, image]);
 */
export class SqliteJobStore implements JobStore {
  readonly file: string;
  readonly location: string;
  /** `host/pid/uuid`: who holds a lease, readable in the database. */
  readonly owner = `${hostname()}/${process.pid}/${randomUUID()}`;
  readonly exclusive = true;
  private readonly db: Database.Database;
  private readonly options: SqliteJobStoreOptions;
  private readonly statements;

  constructor(options: SqliteJobStoreOptions) {
    checkJobStoreOptions(options);
    this.options = { ...options };
    this.file = options.file;
    this.location = `sqlite:${options.file}`;
    if (options.file !== ':memory:') mkdirSync(dirname(options.file), { recursive: true });
    this.db = new Database(options.file);
    this.db.pragma('journal_mode = WAL');
    // FULL: a commit is on disk before jobs.submit answers, so an acknowledged job survives power loss too.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    migrateSqlite(this.db, SQLITE_JOB_MIGRATIONS);
    const db = this.db;
    this.statements = {
      insert: db.prepare(
        `INSERT INTO jobs (id, service, options, body, state, created_at, available_at)
         VALUES (?, ?, ?, ?, 'queued', ?, ?)`,
      ),
      activeByKey: db.prepare(
        `SELECT id, state FROM jobs WHERE state IN ('queued', 'running') AND json_extract(options, '$.key') = ? LIMIT 1`,
      ),
      countState: db.prepare(`SELECT COUNT(*) AS n FROM jobs WHERE state = ?`),
      nextQueued: db.prepare(
        `SELECT id, service, options, body, attempts FROM jobs
         WHERE state = 'queued' AND available_at <= ? ORDER BY available_at, created_at LIMIT 1`,
      ),
      nextAvailable: db.prepare(`SELECT MIN(available_at) AS at FROM jobs WHERE state = 'queued'`),
      markRunning: db.prepare(
        `UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, lease_owner = ?, lease_until = ?
         WHERE id = ? AND state = 'queued'`,
      ),
      renew: db.prepare(`UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running' AND lease_owner = ?`),
      abandoned: db.prepare(
        `SELECT id, options, attempts FROM jobs WHERE state = 'running' AND (? OR lease_until IS NULL OR lease_until < ?)`,
      ),
      requeue: db.prepare(
        `UPDATE jobs SET state = 'queued', available_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND state = 'running'`,
      ),
      retry: db.prepare(
        `UPDATE jobs SET state = 'queued', available_at = ?, error_code = ?, error_message = ?, lease_owner = NULL, lease_until = NULL
         WHERE id = ? AND state = 'running' AND lease_owner = ?`,
      ),
      bumpProgress: db.prepare(
        `UPDATE jobs SET progress_seq = progress_seq + 1 WHERE id = ? AND state = 'running' AND lease_owner = ? RETURNING progress_seq`,
      ),
      insertProgress: db.prepare(`INSERT INTO job_progress (job_id, seq, at, data) VALUES (?, ?, ?, ?)`),
      trimProgress: db.prepare(`DELETE FROM job_progress WHERE job_id = ? AND seq <= ?`),
      succeed: db.prepare(
        `UPDATE jobs SET state = 'succeeded', body = NULL, result = ?, error_code = NULL, error_message = NULL,
         finished_at = ?, expires_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND state = 'running' AND lease_owner = ?`,
      ),
      fail: db.prepare(
        `UPDATE jobs SET state = 'failed', body = NULL, error_code = ?, error_message = ?, finished_at = ?, expires_at = ?,
         lease_owner = NULL, lease_until = NULL WHERE id = ? AND state = 'running' AND (lease_owner = ? OR ?)`,
      ),
      cancel: db.prepare(
        `UPDATE jobs SET state = 'canceled', body = NULL, error_code = 'CANCELED', error_message = ?,
         finished_at = ?, expires_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND state IN ('queued', 'running')`,
      ),
      get: db.prepare(
        `SELECT id, service, state, attempts, created_at, started_at, finished_at, expires_at, result,
         error_code, error_message, progress_seq, options FROM jobs WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)`,
      ),
      progress: db.prepare(`SELECT seq, at, data FROM job_progress WHERE job_id = ? AND seq > ? ORDER BY seq`),
      purge: db.prepare(`DELETE FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?`),
    };
  }

  async submit(service: string, body: Buffer[], options: JobRunOptions = {}, now = Date.now()): Promise<JobTicket> {
    if (options.key !== undefined) {
      const active = this.statements.activeByKey.get(options.key) as JobTicket | undefined;
      if (active) return active;
    }
    const id = randomUUID();
    this.statements.insert.run(id, service, JSON.stringify(options), packFrames(body), now, now);
    return { id, state: 'queued' };
  }

  async count(state: JobState): Promise<number> {
    return (this.statements.countState.get(state) as { n: number }).n;
  }

  async claim(leaseMs: number, now = Date.now()): Promise<ClaimedJob | undefined> {
    return this.db.transaction((): ClaimedJob | undefined => {
      const row = this.statements.nextQueued.get(now) as
        | { id: string; service: string; options: string; body: Buffer; attempts: number }
        | undefined;
      if (!row) return undefined;
      this.statements.markRunning.run(now, this.owner, now + leaseMs, row.id);
      return {
        id: row.id,
        service: row.service,
        body: unpackFrames(row.body),
        options: JSON.parse(row.options) as JobRunOptions,
        attempts: row.attempts + 1,
      };
    })();
  }

  async renewLeases(ids: string[], leaseMs: number, now = Date.now()): Promise<string[]> {
    return this.db.transaction(() => ids.filter((id) => this.statements.renew.run(now + leaseMs, id, this.owner).changes === 1))();
  }

  async nextDueAt(): Promise<number | undefined> {
    const row = this.statements.nextAvailable.get() as { at: number | null };
    return row.at ?? undefined;
  }

  async recoverAbandoned(defaultMaxAttempts: number, error: JobError, options: { all?: boolean; now?: number } = {}): Promise<RecoveredJobs> {
    const now = options.now ?? Date.now();
    return this.db.transaction((): RecoveredJobs => {
      const rows = this.statements.abandoned.all(options.all ? 1 : 0, now) as { id: string; options: string; attempts: number }[];
      const failed: string[] = [];
      let requeued = 0;
      for (const row of rows) {
        if (row.attempts >= ((JSON.parse(row.options) as JobRunOptions).maxAttempts ?? defaultMaxAttempts)) {
          this.statements.fail.run(error.code, error.message, now, now + this.options.resultTtlMs, row.id, null, 1);
          failed.push(row.id);
        } else {
          requeued += this.statements.requeue.run(now, row.id).changes;
        }
      }
      return { failed, requeued };
    })();
  }

  async retry(id: string, dueAt: number, error: JobError): Promise<boolean> {
    return this.statements.retry.run(dueAt, error.code, error.message, id, this.owner).changes === 1;
  }

  async addProgress(id: string, frames: Buffer[], now = Date.now()): Promise<number | undefined> {
    return this.db.transaction((): number | undefined => {
      const row = this.statements.bumpProgress.get(id, this.owner) as { progress_seq: number } | undefined;
      if (!row) return undefined;
      const seq = row.progress_seq;
      if (this.options.maxProgressEntries > 0) {
        this.statements.insertProgress.run(id, seq, now, frames[0] ?? Buffer.alloc(0));
        this.statements.trimProgress.run(id, seq - this.options.maxProgressEntries);
      }
      return seq;
    })();
  }

  async succeed(id: string, frames: Buffer[], now = Date.now()): Promise<boolean> {
    return this.statements.succeed.run(packFrames(frames), now, now + this.options.resultTtlMs, id, this.owner).changes === 1;
  }

  async fail(id: string, error: JobError, now = Date.now()): Promise<boolean> {
    return this.statements.fail.run(error.code, error.message, now, now + this.options.resultTtlMs, id, this.owner, 0).changes === 1;
  }

  async cancel(id: string, now = Date.now()): Promise<JobStatus | undefined> {
    this.statements.cancel.run('the job was canceled', now, now + this.options.resultTtlMs, id);
    return this.status(id, 0, now);
  }

  async status(id: string, since = 0, now = Date.now()): Promise<JobStatus | undefined> {
    const row = this.statements.get.get(id, now) as JobRow | undefined;
    if (!row) return undefined;
    return jobStatusOf(row, this.statements.progress.all(id, since) as { seq: number; at: number; data: Buffer }[]);
  }

  async purgeExpired(now = Date.now()): Promise<number> {
    return this.statements.purge.run(now).changes;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
