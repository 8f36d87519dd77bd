/**
 * Client side of the durable jobs service (shared/jobs.ts): submit a job, then follow it to its end
 * by polling `jobs.status` with `since`, so a watcher that restarts misses nothing.
 */
import type { ZerveClient } from './client.ts';
import { ZerveError, isErrorCode } from './errors.ts';
import { JOBS_STATUS, JOBS_SUBMIT, isFinishedState, type JobProgress, type JobStatus, type JobSubmitRequest, type JobTicket } from './jobs.ts';
import { encodeJson } from './messages.ts';

export interface WatchJobOptions {
  /** Called once per stored PARTIAL reply, oldest first. */
  onProgress?: (progress: JobProgress) => void;
  /** Time between two `jobs.status` requests. @defaultValue 250 */
  pollMs?: number;
}

/** `frames` is a whole `jobs.submit` body: `[JSON {service, ...}, ...the service's body]`. */
export function submitJob(client: ZerveClient, frames: Buffer[]): Promise<JobTicket> {
  // A job with a key answers a resend with its first ticket: safe to send through another broker.
  const key = (JSON.parse(frames[0]?.toString() ?? '{}') as Partial<JobSubmitRequest>).key;
  return client.requestJson<JobTicket>(JOBS_SUBMIT, frames, { idempotent: key !== undefined });
}

/** Resolves with the job's final status (succeeded, failed or canceled). */
export async function watchJob(client: ZerveClient, id: string, options: WatchJobOptions = {}): Promise<JobStatus> {
  let since = 0;
  for (;;) {
    const status = await client.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id, since })]);
    for (const entry of status.progress) options.onProgress?.(entry);
    since = status.progressSeq;
    if (isFinishedState(status.state)) return status;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 250));
  }
}

/** The job's result; a failed or canceled job throws its error. */
export function jobResult<T>(status: JobStatus): T {
  if (status.state === 'succeeded') return status.result as T;
  const failure = status.failure ?? { code: 'INTERNAL', message: `job ended ${status.state}` };
  throw new ZerveError(isErrorCode(failure.code) ? failure.code : 'INTERNAL', failure.message);
}
