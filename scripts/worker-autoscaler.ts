import type { ZerveClient } from '../shared/client.ts';
import type { AutoscaleDecision, AutoscaleStatus } from '../shared/cluster-view.ts';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { AutoscaleMetrics } from './autoscale-metrics.ts';
import { AutoscalePolicy, DEFAULT_AUTOSCALE_POLICY_OPTIONS, type AutoscalePolicyOptions } from './autoscale-policy.ts';
import type { ProcessSupervisor, SupervisedProcess } from './process-supervisor.ts';

export interface WorkerAutoscalerOptions extends AutoscalePolicyOptions {
  /** The worker kind scaled, as its workers name it in READY (`inference`, `training`). @defaultValue 'inference' */
  kind: string;
  /** How often the load is read from the broker and a decision taken. @defaultValue 1000 */
  autoscaleIntervalMs: number;
}

export const DEFAULT_WORKER_AUTOSCALER_OPTIONS: WorkerAutoscalerOptions = {
  ...DEFAULT_AUTOSCALE_POLICY_OPTIONS,
  kind: 'inference',
  autoscaleIntervalMs: 1000,
};

/** Decisions kept for the /cluster page. */
const KEPT_DECISIONS = 20;

/** What the autoscaler needs around it: where processes run and where the load is read. */
export interface WorkerAutoscalerParts {
  supervisor: ProcessSupervisor;
  /** A client of the broker the workers register at: load comes from `mmi.workers` and `mmi.services`. */
  client: ZerveClient;
  /** The `zerve` arguments that start one worker of the kind. */
  command: string[];
  metrics: AutoscaleMetrics;
}

/**
 * Runs between `min` and `max` worker processes of one kind for `zerve up --autoscale MIN:MAX`:
 * every `autoscaleIntervalMs` it reads in-flight plus queued requests of the kind's non-draining
 * workers from the broker, feeds `AutoscalePolicy`, and starts processes or retires the newest ones
 * (SIGTERM: the worker drains, finishes what it holds and exits, so no request fails).
 * Each decision is logged with its reason and counted in `AutoscaleMetrics`.
 */
export class WorkerAutoscaler {
  readonly options: WorkerAutoscalerOptions;
  readonly policy: AutoscalePolicy;
  private readonly processes: SupervisedProcess[] = [];
  private readonly decisions: AutoscaleDecision[] = [];
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private serial = 0;
  private lastLoadPerCapacity = 0;
  private closed = false;

  constructor(options: Partial<WorkerAutoscalerOptions>, private readonly parts: WorkerAutoscalerParts, log: Logger) {
    this.options = { ...DEFAULT_WORKER_AUTOSCALER_OPTIONS, ...options };
    if (!(this.options.autoscaleIntervalMs > 0)) throw new ZerveError('BAD_REQUEST', `autoscaleIntervalMs must be positive, got ${this.options.autoscaleIntervalMs}`);
    this.policy = new AutoscalePolicy(this.options);
    this.log = log.child({ component: 'autoscaler', kind: this.options.kind });
  }

  /** Worker processes running now (retired ones not counted). */
  get workers(): number {
    return this.processes.length;
  }

  /** Starts `min` workers and the decision loop. */
  start(): void {
    this.grow(this.options.min);
    this.parts.metrics.setDesired(this.options.kind, this.workers);
    this.schedule();
  }

  /** For the /cluster page. */
  status(): AutoscaleStatus {
    const o = this.options;
    return { kind: o.kind, min: o.min, max: o.max, desired: this.workers, loadPerCapacity: this.lastLoadPerCapacity, target: o.targetPerCapacity, decisions: [...this.decisions] };
  }

  /** Stops deciding; the supervisor stops the processes. Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.tick().finally(() => this.schedule()), this.options.autoscaleIntervalMs);
  }

  private async tick(): Promise<void> {
    const kind = this.options.kind;
    try {
      const options = { timeoutMs: Math.max(1000, this.options.autoscaleIntervalMs), retries: 0 };
      const [workers, services] = await Promise.all([this.parts.client.workers(options), this.parts.client.services(options)]);
      const serving = workers.filter((w) => w.kind === kind && w.draining !== true);
      if (serving.length > 0) {
        const offered = new Set(serving.flatMap((w) => w.services));
        const queued = services.filter((s) => offered.has(s.name)).reduce((sum, s) => sum + s.queued, 0);
        const inFlight = serving.reduce((sum, w) => sum + w.inFlight, 0);
        // Per process: a training worker process registers several connections of its kind.
        const processes = new Set(serving.map((w) => `${w.host}/${w.pid ?? w.id}`)).size;
        const capacity = serving.reduce((sum, w) => sum + w.capacity, 0) / processes;
        this.policy.observe(inFlight + queued, capacity);
      }
    } catch (err) {
      this.log.warn({ code: ZerveError.from(err).code }, 'cannot read the load from the broker; deciding on what was read before');
    }
    if (this.closed) return;
    this.lastLoadPerCapacity = Math.round(this.policy.loadPerCapacity(this.workers) * 100) / 100;
    const decision = this.policy.decide(this.workers);
    if (!decision) return;
    this.log.info(decision, `autoscale ${decision.direction}: ${decision.from} -> ${decision.to} ${kind} workers`);
    this.parts.metrics.decided(kind, decision.direction);
    this.decisions.push({ at: Date.now(), kind, ...decision });
    if (this.decisions.length > KEPT_DECISIONS) this.decisions.shift();
    if (decision.direction === 'up') this.grow(decision.to);
    else this.shrink(decision.to);
    this.parts.metrics.setDesired(kind, this.workers);
  }

  private grow(to: number): void {
    while (this.processes.length < to) {
      this.processes.push(this.parts.supervisor.add(`${this.options.kind}-${++this.serial}`, this.parts.command));
    }
  }

  /** Retires the newest processes first: the oldest have the warmest caches. */
  private shrink(to: number): void {
    while (this.processes.length > to) {
      const entry = this.processes.pop()!;
      this.log.info({ process: entry.name, pid: entry.child?.pid }, 'draining a worker process');
      void this.parts.supervisor.retire(entry).then(() => this.log.info({ process: entry.name }, 'worker process drained and exited'));
    }
  }
}
