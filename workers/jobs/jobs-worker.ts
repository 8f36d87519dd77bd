import { curveOptionsOf } from '../../shared/curve-socket-options.ts';
import { DEFAULT_JOBS_OPTIONS, resolveOptions, type JobsOptions } from '../../shared/config.ts';
import { ZerveClient } from '../../shared/client.ts';
import { ZerveError } from '../../shared/errors.ts';
import { JOBS_SERVICES, JOB_STATES } from '../../shared/jobs.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { METRICS } from '../../shared/metrics.ts';
import { WorkerConnection } from '../../shared/worker-connection.ts';
import { WorkerMetrics } from '../../shared/worker-metrics.ts';
import type { JobStore } from '../../shared/store/job-store.ts';
import { openJobStore } from '../../shared/store/open-job-store.ts';
import { JobService } from './job-service.ts';

/**
 * The durable jobs service as a cluster worker (the ZeroMQ Guide's Titanic pattern): offers
 * `jobs.submit`, `jobs.status` and `jobs.cancel` on the broker, stores every job in its store (SQLite
 * under `data/`, or the PostgreSQL database `store` names, shared with other jobs services), and
 * dispatches queued jobs to their target service through the broker.
 * @example
 * const jobs = new JobsWorker({ connect: 'tcp://127.0.0.1:5556', broker: 'tcp://127.0.0.1:5555', data: './data' });
 * await jobs.start();
 * // ...
 * await jobs.close();
 */
export class JobsWorker {
  readonly options: JobsOptions;
  /**
   * `zerve_jobs{state}`: counted in the store after each request and each settled attempt, and on each
   * metrics beat (the last counts stand while the store is unreachable).
   */
  readonly metrics = new WorkerMetrics();
  private readonly client: ZerveClient;
  private readonly counts = new Map<string, number>();
  private storeValue: JobStore | undefined;
  private service: JobService | undefined;
  private starting: Promise<void> | undefined;
  private readonly connection: WorkerConnection;
  private readonly log: Logger;
  private closing: Promise<void> | undefined;

  constructor(options: Partial<JobsOptions> = {}, log: Logger = rootLogger) {
    this.options = { ...DEFAULT_JOBS_OPTIONS, ...options };
    if (!(Number.isInteger(this.options.concurrency) && this.options.concurrency >= 1)) {
      throw new ZerveError('BAD_CONFIG', `concurrency must be a positive integer, got ${this.options.concurrency}`);
    }
    if (!(Number.isFinite(this.options.leaseMs) && this.options.leaseMs >= 30)) {
      throw new ZerveError('BAD_CONFIG', `leaseMs must be at least 30, got ${this.options.leaseMs}`);
    }
    this.log = log.child({ component: 'jobs' });
    // Retries are the jobs service's own (with backoff and a record in the store), not the client's.
    this.client = new ZerveClient({
      broker: this.options.broker,
      timeoutMs: this.options.requestTimeoutMs,
      retries: 0,
      ...curveOptionsOf(this.options),
    });
    // Status and cancel must be answered while every dispatch slot is busy: capacity is independent.
    this.connection = new WorkerConnection(
      [...JOBS_SERVICES],
      // Registered only once the service exists; the counts follow each submit and cancel at once.
      (body, ctx) => this.service!.handle(ctx.service, body, ctx.caller).finally(() => void this.countJobs()),
      {
        connect: this.options.connect,
        kind: 'jobs',
        // Owners are enforced here, where the jobs live (docs/auth.md).
        caller: true,
        capacity: 16,
        heartbeatIntervalMs: this.options.heartbeatIntervalMs,
        heartbeatLiveness: this.options.heartbeatLiveness,
        metricsIntervalMs: this.options.metricsIntervalMs,
        ...curveOptionsOf(this.options),
      },
      log,
    );
    this.metrics.table(METRICS.jobs, (table) => {
      for (const state of JOB_STATES) table.child(state).set(this.counts.get(state) ?? 0);
      void this.countJobs();
    });
    this.connection.reportMetrics(this.metrics);
  }

  /** The open store; throws before `start()` has opened it. */
  get store(): JobStore {
    if (!this.storeValue) throw new ZerveError('INTERNAL', 'the jobs worker has not opened its store yet');
    return this.storeValue;
  }

  private async countJobs(): Promise<void> {
    try {
      for (const state of JOB_STATES) this.counts.set(state, await this.storeValue!.count(state));
    } catch {
      // the store is unreachable or closed: the last counts stand
    }
  }

  /**
   * Opens the store (migrating its schema), takes back jobs left running by a stopped jobs service,
   * registers with the broker and starts dispatching. Rejects with a message naming the store when it
   * cannot be opened. Idempotent.
   */
  start(): Promise<void> {
    this.starting ??= (async () => {
      const store = await openJobStore(
        this.options.store,
        this.options.data,
        { resultTtlMs: this.options.resultTtlMs, maxProgressEntries: this.options.maxProgressEntries },
        this.log,
      );
      this.storeValue = store;
      await this.countJobs();
      this.service = new JobService(store, this.client, this.options, this.log);
      this.service.on('settled', () => void this.countJobs());
      await this.service.start();
      if (this.closing) return;
      this.connection.start();
      this.log.info({ store: store.location, owner: store.owner }, 'jobs worker started');
    })();
    return this.starting;
  }

  /** Stops taking requests, puts running jobs back in the queue, closes the sockets and the store; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.starting?.catch(() => undefined);
      const steps: [string, () => Promise<void> | void][] = [
        ['connection', () => this.connection.close()],
        ['dispatch', () => this.service?.close()],
        ['client', () => this.client.close()],
        ['store', () => this.storeValue?.close()],
      ];
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (err) {
          this.log.error({ err, step: name }, 'closing the jobs worker failed at a step');
        }
      }
      this.log.info('jobs worker closed');
    })();
    return this.closing;
  }
}

/**
 * Resolves the jobs worker's options from flags (`--data`, `--connect`, `--broker`, ...), `ZERVE_*`
 * variables and the config file, then starts it. For the CLI (`zerve up`, `zerve worker jobs`).
 */
export async function startJobsWorker(flags: Record<string, unknown> = {}, log: Logger = rootLogger): Promise<JobsWorker> {
  const jobs = new JobsWorker(resolveOptions(DEFAULT_JOBS_OPTIONS, flags), log);
  try {
    await jobs.start();
  } catch (err) {
    await jobs.close();
    throw err;
  }
  return jobs;
}
