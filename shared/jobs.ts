/**
 * Message bodies of the durable jobs service (the ZeroMQ Guide's Titanic pattern), shared by the
 * jobs worker and its clients (the web app, the CLI, any other language).
 *
 * - `jobs.submit`: body `[JSON JobSubmitRequest, ...targetBody]` → `JobTicket`, answered as soon as
 *   the job is stored; the jobs worker then sends `targetBody` to `service` through the broker.
 * - `jobs.status`: body `[JSON {"id", "since"?}]` → `JobStatus`; `since` keeps only progress
 *   entries with a greater `seq`.
 * - `jobs.cancel`: body `[JSON {"id"}]` → `JobStatus` after the cancel (a finished job is left as is).
 * An unknown or expired id is the error UNKNOWN_JOB, never "pending".
 */
// Service names live in shared/services.ts; re-exported for the modules that import them from here.
export { JOBS_CANCEL, JOBS_PREFIX, JOBS_SERVICES, JOBS_STATUS, JOBS_SUBMIT } from './services.ts';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
export const FINISHED_JOB_STATES: readonly JobState[] = ['succeeded', 'failed', 'canceled'];

export function isFinishedState(state: JobState): boolean {
  return FINISHED_JOB_STATES.includes(state);
}

/** Frame 0 of `jobs.submit`. */
export interface JobSubmitRequest {
  /** Target service, e.g. `classify.squeezenet`. */
  service: string;
  /**
   * Time one attempt waits for the target's next reply (each PARTIAL restarts it); defaults to
   * the jobs worker's option.
   */
  timeoutMs?: number;
  /**
   * Attempts before the job fails (1 = never retried), from 1 to 10; defaults to the jobs worker's
   * option. Only TIMEOUT, NO_WORKERS, OVERLOADED and WORKER_LOST are retried.
   */
  maxAttempts?: number;
  /**
   * While a queued or running job was submitted with this key, submitting the same key again
   * answers that job's ticket instead of queuing another (1 to 128 characters).
   */
  key?: string;
  /**
   * The target announces a `CancelHandle` in its first PARTIAL (training does). A cancel that comes
   * before it keeps the reply stream open until it arrives and then forwards the cancel, so a request
   * still queued at the broker never runs unwatched later.
   */
  announcesCancel?: boolean;
  /**
   * The target takes an idempotency key as `key` in its JSON header (frame 0) and answers a resend
   * with the key of a request it runs by following that request (training does): each attempt is
   * sent with the key `job:<job id>`, and resent through another broker when the broker holding it
   * goes away, even after PARTIALs, so the job neither fails with BROKER_LOST nor runs twice.
   */
  keyed?: boolean;
}

/**
 * A PARTIAL that makes a running job cancelable at its target: on `jobs.cancel` (and when the jobs
 * worker stops) the jobs worker sends `[JSON {"experimentId"}]` to `cancelService`. The training
 * worker's `TrainStarted` is one.
 */
export interface CancelHandle {
  cancelService: string;
  experimentId: string;
}

export function isCancelHandle(value: unknown): value is CancelHandle {
  const v = value as Partial<CancelHandle> | null;
  return typeof v === 'object' && v !== null && typeof v.cancelService === 'string' && typeof v.experimentId === 'string';
}

/** Answer of `jobs.submit`. */
export interface JobTicket {
  id: string;
  state: JobState;
}

/** One PARTIAL reply of the target, stored as progress; `data` is frame 0 parsed as JSON (else its text). */
export interface JobProgress {
  seq: number;
  at: string;
  data: unknown;
}

/** Answer of `jobs.status` and `jobs.cancel`. */
export interface JobStatus {
  id: string;
  service: string;
  state: JobState;
  /** The user who submitted it, when the broker knew one (docs/auth.md); absent: anyone may read and cancel it. */
  owner?: string;
  /** Attempts started so far (a job left running by a crash is attempted again). */
  attempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** When a finished job will be removed. */
  expiresAt: string | null;
  /** Stored PARTIAL replies, oldest first (the newest `maxProgressEntries`). */
  progress: JobProgress[];
  /** `seq` of the newest progress entry, 0 when none. */
  progressSeq: number;
  /** Frame 0 of the target's FINAL reply parsed as JSON, when the job succeeded. */
  result?: unknown;
  /**
   * Why the job failed or was canceled. Not named `error`: a body with `error` is an error reply on
   * the wire, and this answer is not one.
   */
  failure?: { code: string; message: string };
}
