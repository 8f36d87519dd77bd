import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../../shared/client.ts';
import type { ClientOptions } from '../../shared/config.ts';
import { freePort } from '../../test/helpers/free-port.ts';
import { CliChild } from './cli-child.ts';

// One free-port finder for the tests and the bench (the bench, like the tests, is a development tool).
export { freePort };

/**
 * The cluster as a user runs it: `zerve broker` and `zerve worker ...` as separate processes on
 * localhost TCP. Workers come and go per benchmark configuration; the broker stays.
 */
export class BenchCluster {
  readonly workers = new Set<CliChild>();
  /** Used for `mmi.*` queries only; benchmarks use clients of their own. */
  private readonly control: ZerveClient;

  private constructor(
    readonly broker: CliChild,
    readonly frontend: string,
    readonly backend: string,
    /** Options benchmark clients of this broker need (CURVE keys when its client socket wants them). */
    readonly clientOptions: Partial<ClientOptions> = {},
  ) {
    this.control = new ZerveClient({ ...clientOptions, broker: frontend, timeoutMs: 2000 });
  }

  /** @param brokerArgs more `zerve broker` flags (e.g. CURVE keys), with the client options they call for */
  static async start(brokerArgs: string[] = [], clientOptions: Partial<ClientOptions> = {}): Promise<BenchCluster> {
    const frontend = `tcp://127.0.0.1:${await freePort()}`;
    const backend = `tcp://127.0.0.1:${await freePort()}`;
    const broker = new CliChild(['broker', '--frontend', frontend, '--backend', backend, ...brokerArgs]);
    const cluster = new BenchCluster(broker, frontend, backend, clientOptions);
    // mmi.services answers once the broker listens; retry while it starts (a refused connect is retried by ZeroMQ).
    try {
      await cluster.until(async () => (await cluster.control.services({ timeoutMs: 1000 }), true), 30_000, 'broker start');
    } catch (err) {
      // Not returned, so nobody else can close it: the broker child and the control socket would outlive the error.
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /**
   * Starts `count` workers (`zerve worker <args> --connect <backend>`) and resolves once the broker
   * lists `count` more workers offering `service`.
   */
  async addWorkers(args: string[], count: number, service: string, timeoutMs = 60_000): Promise<CliChild[]> {
    const before = await this.workerCount(service);
    const started = Array.from({ length: count }, () => new CliChild(['worker', ...args, '--connect', this.backend]));
    for (const worker of started) this.workers.add(worker);
    await this.until(async () => (await this.workerCount(service)) >= before + count, timeoutMs, `${count} ${args[0]} worker(s)`, started);
    return started;
  }

  /** Stops workers gracefully and waits until the broker no longer lists them. */
  async stopWorkers(workers: Iterable<CliChild> = [...this.workers]): Promise<void> {
    const stopping = [...workers];
    await Promise.all(stopping.map((w) => w.stop()));
    for (const w of stopping) this.workers.delete(w);
    const pids = new Set(stopping.map((w) => w.pid));
    await this.until(async () => !(await this.control.workers()).some((w) => w.pid !== null && pids.has(w.pid)), 10_000, 'workers to leave');
  }

  async workerCount(service: string): Promise<number> {
    return (await this.control.services()).find((s) => s.name === service)?.workers ?? 0;
  }

  /** Stops every worker, then the broker. */
  async close(): Promise<void> {
    await this.control.close().catch(() => undefined);
    await Promise.allSettled([...this.workers].map((w) => w.stop()));
    this.workers.clear();
    await this.broker.stop();
  }

  /** Polls `check` every 100 ms (a benchmark, not a test: polling the broker's own status is fine). */
  private async until(check: () => Promise<boolean>, timeoutMs: number, what: string, children: CliChild[] = []): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const child of [this.broker, ...children]) {
        if (!child.running) throw new Error(`waiting for ${what}: ${child.args.slice(0, 2).join(' ')} exited: ${child.recentOutput}`);
      }
      if (await check().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(100);
    }
  }
}
