import { Broker } from '../../broker/broker.ts';
import type { Logger } from '../../shared/logger.ts';
import type { WorkerInfo } from '../../shared/messages.ts';
import { TRAIN_RUN_SERVICE, TRAIN_SERVICE } from '../../shared/training.ts';
import { CliChild } from './cli-child.ts';

export interface TrainingClusterOptions {
  /** `--data` of every training worker (datasets, run store, embedding cache). */
  data: string;
  /** `--models` of every training worker (where exports go). */
  models: string;
  /** Logger of the in-process broker. */
  logger: Logger;
  /** Longest wait for a worker to register. @defaultValue 60000 */
  readyTimeoutMs?: number;
}

/**
 * A broker in this process (broker/broker.ts, on free localhost TCP ports) and `zerve worker training`
 * child processes started with `--broker`, as `zerve up` starts them, so a `train` request fans its
 * search out as `train.run` over every worker. `close()` stops every child (SIGTERM, then SIGKILL),
 * also when the benchmark exits on an error.
 */
export class TrainingCluster {
  readonly workers: CliChild[] = [];
  /** Services each worker pid has registered (each process registers three connections). */
  private readonly registered = new Map<number, Set<string>>();
  private readonly waiters = new Set<() => void>();
  private readonly killOnExit = () => {
    for (const worker of this.workers) if (worker.running) worker.child.kill('SIGKILL');
  };
  /** Ctrl-C or a kill of the benchmark: no 'exit' event without a handler, so children would outlive it. */
  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.killOnExit();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  private closing?: Promise<void>;

  private constructor(
    readonly broker: Broker,
    readonly options: TrainingClusterOptions,
  ) {
    broker.on('worker-ready', (info: WorkerInfo) => {
      if (info.pid === null) return;
      const services = this.registered.get(info.pid) ?? new Set<string>();
      for (const service of info.services) services.add(service);
      this.registered.set(info.pid, services);
      for (const wake of this.waiters) wake();
    });
    process.once('exit', this.killOnExit);
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  static async start(options: TrainingClusterOptions): Promise<TrainingCluster> {
    const broker = new Broker({ frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0' }, options.logger);
    await broker.start();
    return new TrainingCluster(broker, options);
  }

  get frontend(): string {
    return this.broker.frontendEndpoint;
  }

  /** Starts `count` training workers; resolves once each has registered both `train` and `train.run`. */
  async addWorkers(count: number): Promise<CliChild[]> {
    const { data, models } = this.options;
    const started = Array.from(
      { length: count },
      () => new CliChild(['worker', 'training', '--connect', this.broker.backendEndpoint, '--broker', this.broker.frontendEndpoint, '--data', data, '--models', models]),
    );
    this.workers.push(...started);
    const ready = (w: CliChild) => {
      const services = this.registered.get(w.pid);
      return services !== undefined && services.has(TRAIN_SERVICE) && services.has(TRAIN_RUN_SERVICE);
    };
    const timeoutMs = this.options.readyTimeoutMs ?? 60_000;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        const dead = started.find((w) => !w.running);
        if (dead) finish(new Error(`training worker ${dead.pid} exited before registering: ${dead.recentOutput}`));
        else if (started.every(ready)) finish();
      };
      const timer = setTimeout(() => finish(new Error(`training workers not registered within ${timeoutMs} ms`)), timeoutMs);
      const onExit = () => check();
      const finish = (err?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        for (const w of started) w.child.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      this.waiters.add(check);
      for (const w of started) w.child.once('exit', onExit);
      check();
    });
    return started;
  }

  /** Stops every worker, then the broker; idempotent, and runs every step even if one fails. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled(this.workers.map((w) => w.stop()));
      process.off('exit', this.killOnExit);
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      await this.broker.close();
    })();
    return this.closing;
  }
}
