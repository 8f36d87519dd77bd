/**
 * The durable job queue as the jobs service sees it, whatever holds it: one SQLite file
 * (`SqliteJobStore`, the one-host default) or a PostgreSQL database shared by several jobs services
 * (`PostgresJobStore`). Every method is one transaction committed before it resolves.
 */
import { ZerveError, type ErrorCode } from '../errors.ts';
import type { JobProgress, JobState, JobStatus, JobTicket } from '../jobs.ts';

export interface JobStoreOptions {
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
  keyed?: boolean;
  /** The user who submitted it (the caller the broker stamped); absent for an anonymous caller. */
  owner?: string;
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

/** Why a job failed or was retried. */
export interface JobError {
  code: ErrorCode;
  message: string;
}

/** What `recoverAbandoned` did. */
export interface RecoveredJobs {
  /** Jobs out of attempts, now failed. */
  failed: string[];
  /** Jobs put back in the queue. */
  requeued: number;
}

/**
 * A job store. Jobs are claimed under a lease held by this store instance (`owner`); a running job
 * whose lease ran out was abandoned by a jobs service that died, and `recoverAbandoned` takes it back.
 * Completing a job (`succeed`, `fail`, `retry`, `addProgress`) only works for the lease holder, so a
 * job taken over by another service is never completed twice.
 */
export interface JobStore {
  /** What the store is, for logs: a file path or a URL without its password. */
  readonly location: string;
  /** This instance's lease owner id. */
  readonly owner: string;
  /**
   * True when one jobs service has the store to itself (SQLite): at start, every running job was
   * left by a previous process and is recovered at once, lease or not.
   */
  readonly exclusive: boolean;

  /** Stores a new queued job; when this resolves, the job is durable. */
  submit(service: string, body: Buffer[], options?: JobRunOptions, now?: number): Promise<JobTicket>;
  count(state: JobState): Promise<number>;
  /** Takes the oldest queued job that is due, marks it running under a lease of `leaseMs` held by `owner`. */
  claim(leaseMs: number, now?: number): Promise<ClaimedJob | undefined>;
  /** Extends the leases this owner holds on these running jobs; returns the ids it still holds. */
  renewLeases(ids: string[], leaseMs: number, now?: number): Promise<string[]>;
  /** When the next queued job becomes due (ms since epoch), or undefined when none is queued. */
  nextDueAt(): Promise<number | undefined>;
  /**
   * Running jobs whose lease ran out (all running jobs when `all`): those out of attempts fail with
   * `error`, the others go back in the queue, due now.
   */
  recoverAbandoned(defaultMaxAttempts: number, error: JobError, options?: { all?: boolean; now?: number }): Promise<RecoveredJobs>;
  /** Puts a running job this owner holds back in the queue, due at `dueAt`, remembering why. */
  retry(id: string, dueAt: number, error: JobError): Promise<boolean>;
  /** Stores a PARTIAL reply of a running job; its seq, or undefined when this owner no longer runs it. */
  addProgress(id: string, frames: Buffer[], now?: number): Promise<number | undefined>;
  /** Records the FINAL reply; false when this owner no longer runs it (canceled or taken over meanwhile). */
  succeed(id: string, frames: Buffer[], now?: number): Promise<boolean>;
  fail(id: string, error: JobError, now?: number): Promise<boolean>;
  /** Cancels a queued or running job; a finished job is left as is. Its status, undefined if unknown. */
  cancel(id: string, now?: number): Promise<JobStatus | undefined>;
  /** The job's status with its progress entries after `since`; undefined when unknown or expired. */
  status(id: string, since?: number, now?: number): Promise<JobStatus | undefined>;
  /** Removes finished jobs whose time is up; returns how many. */
  purgeExpired(now?: number): Promise<number>;
  /** Closes the file or the pool; idempotent. */
  close(): Promise<void>;
}

/** A jobs row as both backends read it (times in ms since epoch). */
export interface JobRow {
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
  /** The stored JobRunOptions: JSON text (SQLite) or already parsed (PostgreSQL JSONB). */
  options: string | JobRunOptions;
}

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
export function frameValue(frame: Buffer | undefined): unknown {
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

/** The wire status of a job row and its progress rows. */
export function jobStatusOf(row: JobRow, progressRows: { seq: number; at: number; data: Buffer }[]): JobStatus {
  const progress = progressRows.map((p): JobProgress => ({ seq: p.seq, at: iso(p.at)!, data: frameValue(p.data) }));
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
  const owner = (typeof row.options === 'string' ? (JSON.parse(row.options) as JobRunOptions) : row.options).owner;
  if (owner !== undefined) status.owner = owner;
  if (row.state === 'succeeded' && row.result) status.result = frameValue(unpackFrames(row.result)[0]);
  if ((row.state === 'failed' || row.state === 'canceled') && row.error_code !== null) {
    status.failure = { code: row.error_code, message: row.error_message ?? '' };
  }
  return status;
}

/** Validates the options both backends take. */
export function checkJobStoreOptions(options: JobStoreOptions): void {
  if (!(options.resultTtlMs >= 0)) throw new ZerveError('BAD_CONFIG', 'resultTtlMs must be >= 0');
  if (!(Number.isInteger(options.maxProgressEntries) && options.maxProgressEntries >= 0)) {
    throw new ZerveError('BAD_CONFIG', 'maxProgressEntries must be an integer >= 0');
  }
}
