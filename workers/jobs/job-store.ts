import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { ZerveError, type ErrorCode } from '../../shared/errors.ts';
import type { JobProgress, JobState, JobStatus, JobTicket } from '../../shared/jobs.ts';

export interface JobStoreOptions {
  /** SQLite file; its folder is created. `:memory:` keeps nothing (tests only). */
  file: string;
  /** How long a finished job is kept before `purgeExpired` removes it. */
  resultTtlMs: number;
  /** Progress entries kept per job. */
  maxProgressEntries: number;
}

/** Per-job options stored with the job. */
export interface JobRunOptions {
  timeoutMs?: number;
  maxAttempts?: number;
  key?: string;
  announcesCancel?: boolean;
}

/** A job taken from the queue to run. */
export interface ClaimedJob {
  id: string;
  service: string;
  body: Buffer[];
  options: JobRunOptions;
  /** Attempts including this one. */
  attempts: number;
}

interface JobRow {
  id: string;
  service: string;
  state: JobState;
  attempts: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  expires_at: number | null;
  result: Buffer | null;
  error_code: string | null;
  error_message: string | null;
  progress_seq: number;
}

const SCHEMA = `
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
) WITHOUT ROWID;
`;

/** Packs frames into one blob: a count, then each frame's length and bytes (uint32 big-endian). */
export function packFrames(frames: Buffer[]): Buffer {
  const header = Buffer.alloc(4 + 4 * frames.length);
  header.writeUInt32BE(frames.length, 0);
  frames.forEach((frame, i) => header.writeUInt32BE(frame.length, 4 + 4 * i));
  return Buffer.concat([header, ...frames]);
}

export function unpackFrames(blob: Buffer): Buffer[] {
  const count = blob.readUInt32BE(0);
  let offset = 4 + 4 * count;
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const length = blob.readUInt32BE(4 + 4 * i);
    frames.push(blob.subarray(offset, offset + length));
    offset += length;
  }
  return frames;
}

/** Frame 0 as JSON when it parses, else as text. */
function frameValue(frame: Buffer | undefined): unknown {
  if (frame === undefined) return null;
  const text = frame.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The durable job queue: one SQLite file in WAL mode, every change one transaction committed before
 * it is acknowledged, so an accepted job survives any process restart.
 * @example
 * const store = new JobStore({ file: 'data/jobs.sqlite', resultTtlMs: 86_400_000, maxProgressEntries: 100 });
 * const { id } = store.submit('classify.squeezenet', [header, image]);
 */
export class JobStore {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly options: JobStoreOptions;
  private readonly statements;

  constructor(options: JobStoreOptions) {
    if (!(options.resultTtlMs >= 0)) throw new ZerveError('BAD_CONFIG', 'resultTtlMs must be >= 0');
    if (!(Number.isInteger(options.maxProgressEntries) && options.maxProgressEntries >= 0)) {
      throw new ZerveError('BAD_CONFIG', 'maxProgressEntries must be an integer >= 0');
    }
    this.options = { ...options };
    this.file = options.file;
    if (options.file !== ':memory:') mkdirSync(dirname(options.file), { recursive: true });
    this.db = new Database(options.file);
    this.db.pragma('journal_mode = WAL');
    // FULL: a commit is on disk before jobs.submit answers, so an acknowledged job survives power loss too.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const db = this.db;
    this.statements = {
      insert: db.prepare(
        `INSERT INTO jobs (id, service, options, body, state, created_at, available_at)
         VALUES (?, ?, ?, ?, 'queued', ?, ?)`,
      ),
      countState: db.prepare(`SELECT COUNT(*) AS n FROM jobs WHERE state = ?`),
      nextQueued: db.prepare(
        `SELECT id, service, options, body, attempts FROM jobs
         WHERE state = 'queued' AND available_at <= ? ORDER BY available_at, created_at LIMIT 1`,
      ),
      nextAvailable: db.prepare(`SELECT MIN(available_at) AS at FROM jobs WHERE state = 'queued'`),
      markRunning: db.prepare(
        `UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ? WHERE id = ? AND state = 'queued'`,
      ),
      requeueRunning: db.prepare(`UPDATE jobs SET state = 'queued', available_at = ? WHERE state = 'running'`),
      retry: db.prepare(
        `UPDATE jobs SET state = 'queued', available_at = ?, error_code = ?, error_message = ?
         WHERE id = ? AND state = 'running'`,
      ),
      bumpProgress: db.prepare(
        `UPDATE jobs SET progress_seq = progress_seq + 1 WHERE id = ? AND state = 'running' RETURNING progress_seq`,
      ),
      insertProgress: db.prepare(`INSERT INTO job_progress (job_id, seq, at, data) VALUES (?, ?, ?, ?)`),
      trimProgress: db.prepare(`DELETE FROM job_progress WHERE job_id = ? AND seq <= ?`),
      succeed: db.prepare(
        `UPDATE jobs SET state = 'succeeded', body = NULL, result = ?, error_code = NULL, error_message = NULL,
         finished_at = ?, expires_at = ? WHERE id = ? AND state = 'running'`,
      ),
      fail: db.prepare(
        `UPDATE jobs SET state = 'failed', body = NULL, error_code = ?, error_message = ?, finished_at = ?, expires_at = ?
         WHERE id = ? AND state = 'running'`,
      ),
      cancel: db.prepare(
        `UPDATE jobs SET state = 'canceled', body = NULL, error_code = 'CANCELED', error_message = ?,
         finished_at = ?, expires_at = ? WHERE id = ? AND state IN ('queued', 'running')`,
      ),
      get: db.prepare(
        `SELECT id, service, state, attempts, created_at, started_at, finished_at, expires_at, result,
         error_code, error_message, progress_seq FROM jobs WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)`,
      ),
      progress: db.prepare(`SELECT seq, at, data FROM job_progress WHERE job_id = ? AND seq > ? ORDER BY seq`),
      purge: db.prepare(`DELETE FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?`),
    };
  }

  /** Stores a new queued job; when this returns, the job is on disk. */
  submit(service: string, body: Buffer[], options: JobRunOptions = {}, now = Date.now()): JobTicket {
    if (options.key !== undefined) {
      const active = this.db
        .prepare(`SELECT id, state FROM jobs WHERE state IN ('queued', 'running') AND json_extract(options, '$.key') = ? LIMIT 1`)
        .get(options.key) as JobTicket | undefined;
      if (active) return active;
    }
    const id = randomUUID();
    this.statements.insert.run(id, service, JSON.stringify(options), packFrames(body), now, now);
    return { id, state: 'queued' };
  }

  count(state: JobState): number {
    return (this.statements.countState.get(state) as { n: number }).n;
  }

  /** Takes the oldest queued job that is due and marks it running. */
  claim(now = Date.now()): ClaimedJob | undefined {
    return this.db.transaction((): ClaimedJob | undefined => {
      const row = this.statements.nextQueued.get(now) as
        | { id: string; service: string; options: string; body: Buffer; attempts: number }
        | undefined;
      if (!row) return undefined;
      this.statements.markRunning.run(now, row.id);
      return {
        id: row.id,
        service: row.service,
        body: unpackFrames(row.body),
        options: JSON.parse(row.options) as JobRunOptions,
        attempts: row.attempts + 1,
      };
    })();
  }

  /** When the next queued job becomes due (ms since epoch), or undefined when none is queued. */
  nextDueAt(): number | undefined {
    const row = this.statements.nextAvailable.get() as { at: number | null };
    return row.at ?? undefined;
  }

  /** Puts jobs left running by a previous process back in the queue; returns how many. */
  requeueRunning(now = Date.now()): number {
    return this.statements.requeueRunning.run(now).changes;
  }

  /** Fails the jobs left running that have used all their attempts; returns their ids. */
  failExhausted(defaultMaxAttempts: number, error: { code: ErrorCode; message: string }, now = Date.now()): string[] {
    const rows = this.db.prepare(`SELECT id, options, attempts FROM jobs WHERE state = 'running'`).all() as { id: string; options: string; attempts: number }[];
    const exhausted = rows.filter((r) => r.attempts >= ((JSON.parse(r.options) as JobRunOptions).maxAttempts ?? defaultMaxAttempts)).map((r) => r.id);
    for (const id of exhausted) this.fail(id, error, now);
    return exhausted;
  }

  /** Puts a running job back in the queue, due at `dueAt`, remembering why. */
  retry(id: string, dueAt: number, error: { code: ErrorCode; message: string }): boolean {
    return this.statements.retry.run(dueAt, error.code, error.message, id).changes === 1;
  }

  /** Stores a PARTIAL reply of a running job; returns its seq, or undefined when the job no longer runs. */
  addProgress(id: string, frames: Buffer[], now = Date.now()): number | undefined {
    return this.db.transaction((): number | undefined => {
      const row = this.statements.bumpProgress.get(id) as { progress_seq: number } | undefined;
      if (!row) return undefined;
      const seq = row.progress_seq;
      if (this.options.maxProgressEntries > 0) {
        this.statements.insertProgress.run(id, seq, now, frames[0] ?? Buffer.alloc(0));
        this.statements.trimProgress.run(id, seq - this.options.maxProgressEntries);
      }
      return seq;
    })();
  }

  /** Records the FINAL reply of a running job; false when it no longer runs (canceled meanwhile). */
  succeed(id: string, frames: Buffer[], now = Date.now()): boolean {
    return this.statements.succeed.run(packFrames(frames), now, now + this.options.resultTtlMs, id).changes === 1;
  }

  fail(id: string, error: { code: ErrorCode; message: string }, now = Date.now()): boolean {
    return (
      this.statements.fail.run(error.code, error.message, now, now + this.options.resultTtlMs, id).changes === 1
    );
  }

  /** Cancels a queued or running job; a finished job is left as is. Returns its status, undefined if unknown. */
  cancel(id: string, now = Date.now()): JobStatus | undefined {
    this.statements.cancel.run('the job was canceled', now, now + this.options.resultTtlMs, id);
    return this.status(id, 0, now);
  }

  /** The job's status with its progress entries after `since`; undefined when unknown or expired. */
  status(id: string, since = 0, now = Date.now()): JobStatus | undefined {
    const row = this.statements.get.get(id, now) as JobRow | undefined;
    if (!row) return undefined;
    const progress = (this.statements.progress.all(id, since) as { seq: number; at: number; data: Buffer }[]).map(
      (p): JobProgress => ({ seq: p.seq, at: iso(p.at)!, data: frameValue(p.data) }),
    );
    const status: JobStatus = {
      id: row.id,
      service: row.service,
      state: row.state,
      attempts: row.attempts,
      createdAt: iso(row.created_at)!,
      startedAt: iso(row.started_at),
      finishedAt: iso(row.finished_at),
      expiresAt: iso(row.expires_at),
      progress,
      progressSeq: row.progress_seq,
    };
    if (row.state === 'succeeded' && row.result) status.result = frameValue(unpackFrames(row.result)[0]);
    if ((row.state === 'failed' || row.state === 'canceled') && row.error_code !== null) {
      status.failure = { code: row.error_code, message: row.error_message ?? '' };
    }
    return status;
  }

  /** Removes finished jobs whose time is up; returns how many. */
  purgeExpired(now = Date.now()): number {
    return this.statements.purge.run(now).changes;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
