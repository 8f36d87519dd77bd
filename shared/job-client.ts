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
  return client.requestJson<JobTicket>(JOBS_SUBMIT, frames, { idempotent: hasIdempotencyKey(frames[0]) });
}

/** Whether a `jobs.submit` frame names a key: the jobs service answers a resend with the first ticket, so it is safe to send through another broker. */
function hasIdempotencyKey(frame: Buffer | undefined): boolean {
  try {
    return typeof (JSON.parse(frame?.toString() ?? '') as Partial<JobSubmitRequest> | null)?.key === 'string';
  } catch {
    return false; // not JSON: the jobs service answers BAD_REQUEST
  }
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
