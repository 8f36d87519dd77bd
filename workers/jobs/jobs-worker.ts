import { join } from 'node:path';
import { curveOptionsOf } from '../../shared/curve-socket-options.ts';
import { DEFAULT_JOBS_OPTIONS, resolveOptions, type JobsOptions } from '../../shared/config.ts';
import { ZerveClient } from '../../shared/client.ts';
import { ZerveError } from '../../shared/errors.ts';
import { JOBS_SERVICES, JOB_STATES } from '../../shared/jobs.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { METRICS } from '../../shared/metrics.ts';
import { WorkerConnection } from '../worker-connection.ts';
import { WorkerMetrics } from '../worker-metrics.ts';
import { JobService } from './job-service.ts';
import { JobStore } from './job-store.ts';

/** Name of the job store file inside the data folder. */
export const JOBS_DB_FILE = 'jobs.sqlite';

/**
 * The durable jobs service as a cluster worker (the ZeroMQ Guide's Titanic pattern): offers
 * `jobs.submit`, `jobs.status` and `jobs.cancel` on the broker, stores every job in SQLite under
 * `data/`, and dispatches queued jobs to their target service through the broker.
 * @example
 * const jobs = new JobsWorker({ connect: 'tcp://127.0.0.1:5556', broker: 'tcp://127.0.0.1:5555', data: './data' });
 * jobs.start();
 * // ...
 * await jobs.close();
 */
export class JobsWorker {
  readonly options: JobsOptions;
  readonly store: JobStore;
  /** `zerve_jobs{state}`, counted in the store when read. */
  readonly metrics = new WorkerMetrics();
  private readonly client: ZerveClient;
  private readonly service: JobService;
  private readonly connection: WorkerConnection;
  private readonly log: Logger;
  private closing: Promise<void> | undefined;

  constructor(options: Partial<JobsOptions> = {}, log: Logger = rootLogger) {
    this.options = { ...DEFAULT_JOBS_OPTIONS, ...options };
    if (!(Number.isInteger(this.options.concurrency) && this.options.concurrency >= 1)) {
      throw new ZerveError('BAD_CONFIG', `concurrency must be a positive integer, got ${this.options.concurrency}`);
    }
    this.log = log.child({ component: 'jobs' });
    this.store = new JobStore({
      file: join(this.options.data, JOBS_DB_FILE),
      resultTtlMs: this.options.resultTtlMs,
      maxProgressEntries: this.options.maxProgressEntries,
    });
    // Retries are the jobs service's own (with backoff and a record in the store), not the client's.
    this.client = new ZerveClient({
      broker: this.options.broker,
      timeoutMs: this.options.requestTimeoutMs,
      retries: 0,
      ...curveOptionsOf(this.options),
    });
    this.service = new JobService(this.store, this.client, this.options, this.log);
    // Status and cancel must be answered while every dispatch slot is busy: capacity is independent.
    this.connection = new WorkerConnection(
      [...JOBS_SERVICES],
      (body, ctx) => this.service.handle(ctx.service, body),
      {
        connect: this.options.connect,
        kind: 'jobs',
        capacity: 16,
        heartbeatIntervalMs: this.options.heartbeatIntervalMs,
        heartbeatLiveness: this.options.heartbeatLiveness,
        metricsIntervalMs: this.options.metricsIntervalMs,
        ...curveOptionsOf(this.options),
      },
      log,
    );
    this.metrics.table(METRICS.jobs, (table) => {
      for (const state of JOB_STATES) table.child(state).set(this.store.count(state));
    });
    this.connection.reportMetrics(this.metrics);
  }

  /** Re-queues jobs left running by a previous process, registers with the broker and starts dispatching. */
  start(): void {
    this.service.start();
    this.connection.start();
    this.log.info({ store: this.store.file }, 'jobs worker started');
  }

  /** Stops taking requests, puts running jobs back in the queue, closes the sockets and the store; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const steps: [string, () => Promise<void> | void][] = [
        ['connection', () => this.connection.close()],
        ['dispatch', () => this.service.close()],
        ['client', () => this.client.close()],
        ['store', () => this.store.close()],
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
export function startJobsWorker(flags: Record<string, unknown> = {}, log: Logger = rootLogger): JobsWorker {
  const jobs = new JobsWorker(resolveOptions(DEFAULT_JOBS_OPTIONS, flags), log);
  jobs.start();
  return jobs;
}
