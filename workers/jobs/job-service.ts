import { EventEmitter } from 'node:events';
import { ZerveError, isErrorBody, type ErrorBody, type ErrorCode } from '../../shared/errors.ts';
import { decodeHeader, encodeJson } from '../../shared/messages.ts';
import type { JobsOptions } from '../../shared/config.ts';
import type { Logger } from '../../shared/logger.ts';
import {
  JOBS_CANCEL,
  JOBS_PREFIX,
  JOBS_STATUS,
  JOBS_SUBMIT,
  isCancelHandle,
  type CancelHandle,
  type JobState,
  type JobStatus,
  type JobSubmitRequest,
  type JobTicket,
} from '../../shared/jobs.ts';
import { ANONYMOUS_CALLER, ANONYMOUS_USER, MMI_PREFIX, type CallerIdentity } from '../../shared/protocol.ts';
import type { ClaimedJob, JobRunOptions, JobStore } from '../../shared/store/job-store.ts';

/** Where jobs are sent: a `ZerveClient` in production, anything with the same `stream` in tests. */
export interface JobTarget {
  stream(
    service: string,
    body: Buffer[],
    options?: { timeoutMs?: number; signal?: AbortSignal; resumable?: boolean },
  ): AsyncIterable<{ final: boolean; body: Buffer[] }>;
}

export type JobServiceOptions = Pick<
  JobsOptions,
  'concurrency' | 'maxQueuedJobs' | 'maxJobBytes' | 'requestTimeoutMs' | 'maxAttempts' | 'retryDelayMs' | 'resultTtlMs' | 'leaseMs'
>;

/** Failures that another attempt may cure: the job goes back in the queue. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['TIMEOUT', 'NO_WORKERS', 'OVERLOADED', 'WORKER_LOST']);
const MAX_RETRY_DELAY_MS = 30_000;
const MAX_PURGE_INTERVAL_MS = 60_000;
/** Pause before dispatching again after the store failed (unreachable, timed out). */
const STORE_RETRY_MS = 1000;
/** On a shared store, how often an idle service looks for jobs submitted through another one. */
const SHARED_POLL_MS = 1000;
const LOST_WORKER_ERROR = { code: 'WORKER_LOST', message: 'the jobs service stopped while the job ran, and it has no attempts left' } as const;

function requireId(request: Record<string, unknown>): string {
  const id = request.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) {
    throw new ZerveError('BAD_REQUEST', 'id must be a job id string');
  }
  return id;
}

/**
 * The Titanic pattern's core: answers `jobs.submit`, `jobs.status` and `jobs.cancel` from the store,
 * and runs queued jobs against their target service with bounded concurrency.
 *
 * Events: `'progress'` (id, seq) after a PARTIAL reply is stored; `'settled'` (id, state) when an
 * attempt ends (`queued` again when it will be retried); `'recovered'` (RecoveredJobs) after jobs
 * abandoned by a stopped jobs service were taken back.
 *
 * Jobs run under a lease in the store, renewed every `leaseMs / 3` while they run. On a store that
 * several jobs services share, each also takes back, on the same beat, running jobs whose lease ran
 * out (their service died); and every second it looks for jobs submitted through another service.
 */
export class JobService extends EventEmitter {
  private readonly options: JobServiceOptions;
  private readonly running = new Map<string, AbortController>();
  /** Where to send a cancel for running jobs whose target announced one. */
  private readonly cancelHandles = new Map<string, CancelHandle>();
  /** Jobs canceled before their target announced its cancel handle (`announcesCancel`). */
  private readonly cancelOnHandle = new Set<string>();
  private readonly announcing = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private pumpTimer: NodeJS.Timeout | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private pumping = false;
  private pumpAgain = false;
  private started = false;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly store: JobStore,
    private readonly target: JobTarget,
    options: JobServiceOptions,
    private readonly log: Logger,
  ) {
    super();
    if (!(Number.isInteger(options.concurrency) && options.concurrency >= 1)) {
      throw new ZerveError('BAD_CONFIG', 'concurrency must be an integer >= 1');
    }
    if (!(Number.isInteger(options.maxAttempts) && options.maxAttempts >= 1)) {
      throw new ZerveError('BAD_CONFIG', 'maxAttempts must be an integer >= 1');
    }
    this.options = { ...options };
  }

  /**
   * Re-queues jobs a previous process left running (classification is idempotent; jobs out of
   * attempts fail with WORKER_LOST instead) and starts dispatching.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // A store of its own (SQLite): whatever runs was left by a previous process. A shared one: only jobs whose lease ran out.
    await this.recover(this.store.exclusive);
    void this.purge();
    const purgeEveryMs = Math.min(Math.max(this.options.resultTtlMs, 1000), MAX_PURGE_INTERVAL_MS);
    this.purgeTimer = setInterval(() => void this.purge(), purgeEveryMs);
    this.purgeTimer.unref();
    this.leaseTimer = setInterval(() => void this.leaseBeat(), Math.max(Math.floor(this.options.leaseMs / 3), 10));
    this.leaseTimer.unref();
    if (!this.store.exclusive) {
      this.pollTimer = setInterval(() => this.pump(), Math.min(SHARED_POLL_MS, Math.max(Math.floor(this.options.leaseMs / 3), 10)));
      this.pollTimer.unref();
    }
    this.pump();
  }

  /** Takes back jobs abandoned by a stopped jobs service: requeued, or failed when out of attempts. */
  private async recover(all: boolean): Promise<void> {
    const recovered = await this.store.recoverAbandoned(this.options.maxAttempts, LOST_WORKER_ERROR, { all });
    if (recovered.failed.length > 0) this.log.warn({ jobs: recovered.failed }, 'failed abandoned jobs that have no attempts left');
    if (recovered.requeued > 0) this.log.info({ requeued: recovered.requeued }, 'requeued jobs abandoned by a stopped jobs service');
    if (recovered.failed.length > 0 || recovered.requeued > 0) this.emit('recovered', recovered);
  }

  /** Renews the leases of running jobs; on a shared store, also takes back abandoned jobs and looks for new ones. */
  private async leaseBeat(): Promise<void> {
    if (this.closing) return;
    try {
      const ids = [...this.running.keys()];
      const held = new Set(await this.store.renewLeases(ids, this.options.leaseMs));
      for (const id of ids) {
        // Canceled, or taken over after this service could not renew in time: stop working for nobody.
        if (!held.has(id) && this.running.has(id)) this.log.warn({ job: id }, 'the lease on a running job is no longer held');
      }
      if (!this.store.exclusive) await this.recover(false);
    } catch (err) {
      this.log.warn({ err }, 'renewing job leases failed');
    }
    this.pump();
  }

  /**
   * Answers one request of a `jobs.*` service from `caller` (as the broker stamped it): a job records
   * its submitter, and only they or an admin read or cancel it (a job without an owner: anyone).
   */
  async handle(service: string, body: Buffer[], caller: CallerIdentity = ANONYMOUS_CALLER): Promise<Buffer[]> {
    const request = decodeHeader(body[0]) as Record<string, unknown>;
    switch (service) {
      case JOBS_SUBMIT:
        return [encodeJson(await this.submit(request, body.slice(1), caller))];
      case JOBS_STATUS: {
        const since = request.since ?? 0;
        if (!(Number.isInteger(since) && (since as number) >= 0)) {
          throw new ZerveError('BAD_REQUEST', 'since must be an integer >= 0');
        }
        return [encodeJson(mayAccess(await this.status(requireId(request), since as number), caller))];
      }
      case JOBS_CANCEL: {
        const id = requireId(request);
        // Checked before the cancel: progress entries are not needed for that.
        mayAccess(await this.status(id, Number.MAX_SAFE_INTEGER), caller);
        return [encodeJson(await this.cancel(id))];
      }
      default:
        throw new ZerveError('UNKNOWN_SERVICE', `the jobs worker does not offer ${service}`);
    }
  }

  async submit(request: Record<string, unknown>, targetBody: Buffer[], caller: CallerIdentity = ANONYMOUS_CALLER): Promise<JobTicket> {
    if (this.closing) throw new ZerveError('OVERLOADED', 'the jobs service is stopping');
    const { service, timeoutMs, maxAttempts, key, announcesCancel, keyed } = request as Partial<JobSubmitRequest>;
    if (typeof service !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(service)) {
      throw new ZerveError('BAD_REQUEST', 'service must be a service name such as "classify.squeezenet"');
    }
    if (service.startsWith(JOBS_PREFIX) || service.startsWith(MMI_PREFIX)) {
      throw new ZerveError('BAD_REQUEST', `${service} cannot be run as a job`);
    }
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0)) {
      throw new ZerveError('BAD_REQUEST', 'timeoutMs must be a positive number of milliseconds');
    }
    const bytes = targetBody.reduce((sum, frame) => sum + frame.length, 0);
    if (bytes > this.options.maxJobBytes) {
      throw new ZerveError('PAYLOAD_TOO_LARGE', `the job body is ${bytes} bytes; the limit is ${this.options.maxJobBytes}`);
    }
    if ((await this.store.count('queued')) >= this.options.maxQueuedJobs) {
      throw new ZerveError('OVERLOADED', `${this.options.maxQueuedJobs} jobs are queued; retry later`);
    }
    if (maxAttempts !== undefined && !(Number.isInteger(maxAttempts) && maxAttempts >= 1 && maxAttempts <= 10)) {
      throw new ZerveError('BAD_REQUEST', 'maxAttempts must be an integer from 1 to 10');
    }
    if (key !== undefined && !(typeof key === 'string' && key.length >= 1 && key.length <= 128)) {
      throw new ZerveError('BAD_REQUEST', 'key must be a string of 1 to 128 characters');
    }
    if (announcesCancel !== undefined && typeof announcesCancel !== 'boolean') throw new ZerveError('BAD_REQUEST', 'announcesCancel must be a boolean');
    if (keyed !== undefined && typeof keyed !== 'boolean') throw new ZerveError('BAD_REQUEST', 'keyed must be a boolean');
    if (keyed) jsonObjectOf(targetBody[0], 'a keyed job');
    const runOptions: JobRunOptions = {
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(maxAttempts !== undefined ? { maxAttempts } : {}),
      ...(key !== undefined ? { key } : {}),
      ...(announcesCancel ? { announcesCancel } : {}),
      ...(keyed ? { keyed } : {}),
      ...(caller.user !== ANONYMOUS_USER ? { owner: caller.user } : {}),
    };
    const ticket = await this.store.submit(service, targetBody, runOptions);
    this.log.debug({ job: ticket.id, service }, 'job queued');
    this.pump();
    return ticket;
  }

  async status(id: string, since = 0): Promise<JobStatus> {
    const status = await this.store.status(id, since);
    if (!status) throw new ZerveError('UNKNOWN_JOB', `no job ${id}`);
    return status;
  }

  async cancel(id: string): Promise<JobStatus> {
    const status = await this.store.cancel(id);
    if (!status) throw new ZerveError('UNKNOWN_JOB', `no job ${id}`);
    const controller = this.running.get(id);
    if (controller && !controller.signal.aborted) {
      // Still queued at the broker: stopping to listen now would let it run unwatched later.
      if (this.announcing.has(id)) this.cancelOnHandle.add(id);
      else this.stopRunning(id, controller);
    }
    return status;
  }

  private stopRunning(id: string, controller: AbortController): void {
    controller.abort(new ZerveError('CANCELED', 'the job was canceled'));
    // Tracked, so close() waits for it before the target client closes under it.
    const cancel = this.cancelAtTarget(id);
    this.inFlight.add(cancel);
    void cancel.finally(() => this.inFlight.delete(cancel));
  }

  /** Stops dispatching, aborts running jobs and puts them back in the queue for the next start. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing = true;
      clearTimeout(this.pumpTimer);
      clearInterval(this.purgeTimer);
      clearInterval(this.leaseTimer);
      clearInterval(this.pollTimer);
      // A target told to cancel stops working for nobody; the job runs again on the next start.
      const cancels = [...this.running].map(([id, controller]) => {
        controller.abort(new ZerveError('CANCELED', 'the jobs service is stopping'));
        return this.cancelAtTarget(id);
      });
      await Promise.allSettled([...this.inFlight, ...cancels]);
    })();
    return this.closed;
  }

  /** Tells the target of a running job to stop, when it announced how; never throws. */
  private async cancelAtTarget(id: string): Promise<void> {
    const handle = this.cancelHandles.get(id);
    if (!handle) return;
    try {
      for await (const _ of this.target.stream(handle.cancelService, [encodeJson({ experimentId: handle.experimentId })], { timeoutMs: 5000 })) {
        // one reply: {"canceled": boolean}
      }
      this.log.info({ job: id, experimentId: handle.experimentId }, 'canceled at the target');
    } catch (err) {
      this.log.warn({ job: id, experimentId: handle.experimentId, err }, 'could not cancel at the target');
    }
  }

  private async stateOf(id: string): Promise<JobState | undefined> {
    try {
      return (await this.store.status(id))?.state;
    } catch {
      return undefined; // the store is closed or unreachable: the state is read again by whoever asks
    }
  }

  private async purge(): Promise<void> {
    try {
      const removed = await this.store.purgeExpired();
      if (removed > 0) this.log.debug({ removed }, 'removed expired jobs');
    } catch (err) {
      this.log.error({ err }, 'purging expired jobs failed');
    }
  }

  /** Claims due jobs while a dispatch slot is free; one pass at a time, a call during a pass runs another. */
  private pump(): void {
    if (this.closing || !this.started) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
    const pass: Promise<void> = this.pumpPass().finally(() => {
      this.inFlight.delete(pass);
      this.pumping = false;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.pump();
      }
    });
    // Tracked, so close() waits for a claim in progress before the store closes under it.
    this.inFlight.add(pass);
  }

  private async pumpPass(): Promise<void> {
    try {
      while (this.running.size < this.options.concurrency && !this.closing) {
        const job = await this.store.claim(this.options.leaseMs);
        if (!job) break;
        if (this.closing) {
          await this.store.retry(job.id, Date.now(), { code: 'CANCELED', message: 'the jobs service stopped' });
          break;
        }
        const run = this.run(job).finally(() => {
          this.inFlight.delete(run);
          this.pump();
        });
        this.inFlight.add(run);
      }
      if (this.running.size < this.options.concurrency && !this.closing) {
        const dueAt = await this.store.nextDueAt();
        if (dueAt !== undefined && !this.closing) {
          this.pumpTimer = setTimeout(() => this.pump(), Math.max(dueAt - Date.now(), 1));
        }
      }
    } catch (err) {
      if (this.closing) return;
      this.log.warn({ err }, 'dispatching jobs failed; trying again shortly');
      clearTimeout(this.pumpTimer);
      this.pumpTimer = setTimeout(() => this.pump(), STORE_RETRY_MS);
    }
  }

  private async run(job: ClaimedJob): Promise<void> {
    const controller = new AbortController();
    this.running.set(job.id, controller);
    const log = this.log.child({ job: job.id, service: job.service, attempt: job.attempts });
    log.debug('job running');
    if (job.options.announcesCancel) this.announcing.add(job.id);
    try {
      let final: Buffer[] | undefined;
      const timeoutMs = job.options.timeoutMs ?? this.options.requestTimeoutMs;
      // Every attempt of a keyed job carries the same key, so the target runs the job once however
      // often it is sent: again after a lost broker (resumable) or after a retry.
      const body = job.options.keyed ? withKey(job.body, jobKey(job.id)) : job.body;
      const resumable = job.options.keyed === true;
      for await (const chunk of this.target.stream(job.service, body, { timeoutMs, signal: controller.signal, resumable })) {
        if (chunk.final) {
          final = chunk.body; // the last chunk: the loop ends by itself, leaving the socket reusable
          continue;
        }
        // Only the first announcement counts: later PARTIALs are not parsed here.
        const handle = this.cancelHandles.has(job.id) ? undefined : cancelHandleOf(chunk.body[0]);
        if (handle) {
          this.cancelHandles.set(job.id, handle);
          this.announcing.delete(job.id);
          if (this.cancelOnHandle.delete(job.id)) this.stopRunning(job.id, controller);
        }
        const seq = await this.store.addProgress(job.id, chunk.body).catch((err: unknown) => {
          log.warn({ err }, 'storing a progress entry failed; the job goes on');
          return undefined;
        });
        if (seq !== undefined) this.emit('progress', job.id, seq);
      }
      if (controller.signal.aborted) throw controller.signal.reason;
      if (!final) throw new ZerveError('INTERNAL', 'the target ended without a final reply');
      const error = errorOf(final[0]);
      if (error) throw error;
      if (await this.recordSuccess(job, final, log)) log.debug('job succeeded');
    } catch (err) {
      try {
        await this.settleFailure(job, controller, err, log);
      } catch (storeErr) {
        log.error({ err: storeErr }, 'recording the job failure failed; it is taken back when its lease runs out');
      }
    } finally {
      this.running.delete(job.id);
      this.cancelHandles.delete(job.id);
      this.announcing.delete(job.id);
      this.cancelOnHandle.delete(job.id);
      this.emit('settled', job.id, await this.stateOf(job.id));
    }
  }

  /**
   * Stores the final reply. The reply must not be lost to a store outage (the target did the work):
   * while the store is unreachable, it is tried again until this service closes; then the lease runs
   * out and the job runs again elsewhere.
   */
  private async recordSuccess(job: ClaimedJob, final: Buffer[], log: Logger): Promise<boolean> {
    for (;;) {
      try {
        return await this.store.succeed(job.id, final);
      } catch (err) {
        if (this.closing || !(err instanceof ZerveError && err.code === 'STORE_UNAVAILABLE')) throw err;
        log.warn({ err }, 'storing the result failed; trying again');
        await new Promise((resolve) => setTimeout(resolve, STORE_RETRY_MS));
      }
    }
  }

  private async settleFailure(job: ClaimedJob, controller: AbortController, err: unknown, log: Logger): Promise<void> {
    if (this.closing) {
      // Left for the next start or another service; this only makes it visible at once.
      await this.store.retry(job.id, Date.now(), { code: 'CANCELED', message: 'the jobs service stopped' });
      return;
    }
    if (controller.signal.aborted) return; // canceled: the store already says so
    const error = ZerveError.from(err);
    if (RETRYABLE.has(error.code) && job.attempts < (job.options.maxAttempts ?? this.options.maxAttempts)) {
      const delayMs = Math.min(this.options.retryDelayMs * 2 ** (job.attempts - 1), MAX_RETRY_DELAY_MS);
      log.warn({ code: error.code, delayMs }, 'job attempt failed; retrying');
      await this.store.retry(job.id, Date.now() + delayMs, { code: error.code, message: error.message });
    } else {
      log.info({ code: error.code }, 'job failed');
      await this.store.fail(job.id, { code: error.code, message: error.message });
    }
  }
}

/** The idempotency key each attempt of a keyed job carries. */
export function jobKey(id: string): string {
  return `job:${id}`;
}

/** Frame 0 parsed as a JSON object; BAD_REQUEST when it is not one. */
function jsonObjectOf(frame: Buffer | undefined, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(frame?.toString('utf8') ?? '');
  } catch {
    value = undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ZerveError('BAD_REQUEST', `${what} needs a JSON object as frame 0 of its body, to carry the key`);
  }
  return value as Record<string, unknown>;
}

/** `body` with `key` set in its JSON header frame. */
function withKey(body: Buffer[], key: string): Buffer[] {
  return [encodeJson({ ...jsonObjectOf(body[0], 'a keyed job'), key }), ...body.slice(1)];
}

/** The job's status, when `caller` may read and cancel it: its owner, an admin, anyone for a job without an owner. */
function mayAccess(status: JobStatus, caller: CallerIdentity): JobStatus {
  if (status.owner === undefined || status.owner === caller.user || caller.role === 'admin') return status;
  throw new ZerveError('FORBIDDEN', `job ${status.id} is another user's`);
}

/** The cancel handle a PARTIAL announces, if any. */
function cancelHandleOf(frame: Buffer | undefined): CancelHandle | undefined {
  if (frame === undefined || frame[0] !== 0x7b /* '{' */ || frame.length > 4096) return undefined;
  try {
    const value: unknown = JSON.parse(frame.toString('utf8'));
    return isCancelHandle(value) ? { cancelService: value.cancelService, experimentId: value.experimentId } : undefined;
  } catch {
    return undefined;
  }
}

/** The error carried by a reply frame, if it is an error body. */
function errorOf(frame: Buffer | undefined): ZerveError | undefined {
  if (frame === undefined || frame[0] !== 0x7b /* '{' */) return undefined;
  try {
    const value: unknown = JSON.parse(frame.toString('utf8'));
    return isErrorBody(value) ? ZerveError.fromBody(value as ErrorBody) : undefined;
  } catch {
    return undefined;
  }
}
