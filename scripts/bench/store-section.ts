/**
 * The store section (`npm run bench -- store`): SQLite and PostgreSQL side by side, each behind its
 * own broker, echo worker and jobs service, all up at once; measurements alternate SQLite,
 * PostgreSQL, SQLite, ... and the medians of the rounds are reported with PostgreSQL's ratio to SQLite.
 * - jobs submitted per second (`jobs.submit` of echo jobs, 16 in flight);
 * - submit-to-done latency of one echo job at a time (`jobs.submit`, then `jobs.status` every 2 ms);
 * - experiments listed per second (`summaries(50)`, the `runs.list` default) with 1,000 experiments
 *   of 2 runs in the store.
 * The PostgreSQL server is BENCH_POSTGRES_URL when set, else one started for the run with fsync on
 * (test/helpers/postgres.ts), as durable as SQLite's `synchronous = FULL`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { Broker } from '../../broker/broker.ts';
import { ZerveClient } from '../../shared/client.ts';
import { JOBS_STATUS, JOBS_SUBMIT, type JobStatus, type JobTicket } from '../../shared/jobs.ts';
import { encodeJson } from '../../shared/messages.ts';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import type { ExperimentStore } from '../../shared/store/experiment-store.ts';
import { openExperimentStore } from '../../shared/store/open-experiment-store.ts';
import { JobsWorker } from '../../workers/jobs/jobs-worker.ts';
import { WorkerConnection } from '../../shared/worker-connection.ts';
import { TestPostgres } from '../../test/helpers/postgres.ts';
import { median, percentile } from './percentile.ts';
import { Heading, type BenchSection } from './bench-section.ts';
import { ReportTable } from './report-table.ts';
import { fixed } from './report-format.ts';

export interface StoreBenchOptions {
  quick: boolean;
  durationMs: number;
  progress: (message: string) => void;
}

interface BackendRound {
  submitsPerSecond: number;
  doneP50Ms: number;
  doneP99Ms: number;
  listsPerSecond: number;
}

export interface StoreSection {
  rounds: number;
  experiments: number;
  sqlite: BackendRound;
  postgres: BackendRound;
}

const EXPERIMENTS = 1000;
const SUBMIT_CONCURRENCY = 16;
const log = pino({ level: 'error' });

/** One backend's broker, echo worker, jobs service and experiment store. */
class StoreSetup {
  private constructor(
    readonly name: string,
    private readonly broker: Broker,
    private readonly echo: WorkerConnection,
    private readonly jobs: JobsWorker,
    readonly client: ZerveClient,
    readonly experiments: ExperimentStore,
  ) {}

  static async start(name: string, store: string, data: string): Promise<StoreSetup> {
    const broker = new Broker({ frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0' }, log);
    await broker.start();
    const echo = new WorkerConnection([ECHO_SERVICE], async (body) => body, { connect: broker.backendEndpoint, capacity: 64, kind: 'echo' }, log);
    echo.start();
    const jobs = new JobsWorker({ connect: broker.backendEndpoint, broker: broker.frontendEndpoint, data, store, concurrency: 8, maxQueuedJobs: 1_000_000 }, log);
    await jobs.start();
    const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 30_000 });
    const experiments = await openExperimentStore(store, data, log);
    return new StoreSetup(name, broker, echo, jobs, client, experiments);
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.experiments.close();
    await this.jobs.close();
    await this.echo.close();
    await this.broker.close();
  }

  submit(): Promise<JobTicket> {
    return this.client.requestJson<JobTicket>(JOBS_SUBMIT, [encodeJson({ service: ECHO_SERVICE }), Buffer.from('ping')]);
  }

  async submitsPerSecond(durationMs: number): Promise<number> {
    let count = 0;
    const end = performance.now() + durationMs;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: SUBMIT_CONCURRENCY }, async () => {
        while (performance.now() < end) {
          await this.submit();
          count++;
        }
      }),
    );
    return count / ((performance.now() - started) / 1000);
  }

  /** Submit-to-done of `n` echo jobs one after another, in ms, sorted. */
  async submitToDone(n: number): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const { id } = await this.submit();
      for (;;) {
        const status = await this.client.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id })]);
        if (status.state === 'succeeded') break;
        if (status.state !== 'queued' && status.state !== 'running') throw new Error(`echo job ${id} ended ${status.state}`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b);
  }

  async fillExperiments(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const id = `bench${String(i).padStart(5, '0')}`;
      const writes = [
        this.experiments.startExperiment({ id, datasetId: 'd'.repeat(64), request: { family: 'mlp', search: { lr: [0.01, 0.1] } }, seed: i, host: 'bench', pid: process.pid }),
      ];
      for (const r of [1, 2]) {
        writes.push(this.experiments.startRun({ id: `${id}-${r}`, experimentId: id, index: r, params: { lr: r / 100 } }));
        writes.push(this.experiments.finishRun(`${id}-${r}`, { status: 'succeeded', valAccuracy: 0.9, valLoss: 0.2, bestEpoch: 5, epochsRun: 6, durationMs: 100 }));
      }
      writes.push(this.experiments.finishExperiment(id, { status: 'succeeded', durationMs: 250, bestRunId: `${id}-2`, test: { accuracy: 0.9 } }));
      await Promise.all(writes);
    }
  }

  async listsPerSecond(durationMs: number): Promise<number> {
    let count = 0;
    const started = performance.now();
    const end = started + durationMs;
    while (performance.now() < end) {
      const list = await this.experiments.summaries(50);
      if (list.length !== 50) throw new Error(`${this.name}: listed ${list.length} experiments, expected 50`);
      count++;
    }
    return count / ((performance.now() - started) / 1000);
  }
}

export async function benchStore(o: StoreBenchOptions): Promise<StoreSection> {
  const dir = await mkdtemp(path.join(tmpdir(), 'zerve-bench-store-'));
  let server: TestPostgres | undefined;
  const setups: StoreSetup[] = [];
  try {
    let url = process.env.BENCH_POSTGRES_URL;
    if (!url) {
      o.progress('store: starting a PostgreSQL server');
      server = await TestPostgres.start({ durable: true }); // fsync on, as SQLite's synchronous = FULL
      url = server.url;
    }
    o.progress('store: a broker, an echo worker and a jobs service on SQLite, the same on PostgreSQL');
    setups.push(await StoreSetup.start('sqlite', `sqlite:${path.join(dir, 'sqlite')}`, path.join(dir, 'sqlite')));
    setups.push(await StoreSetup.start('postgres', url, path.join(dir, 'postgres')));
    o.progress(`store: ${EXPERIMENTS} experiments into each store`);
    await Promise.all(setups.map((s) => s.fillExperiments(EXPERIMENTS)));
    const rounds = o.quick ? 2 : 3;
    const samples = o.quick ? 50 : 200;
    const measured = new Map<string, BackendRound[]>(setups.map((s) => [s.name, []]));
    for (let round = 1; round <= rounds; round++) {
      for (const setup of setups) {
        o.progress(`store: round ${round}/${rounds}, ${setup.name}`);
        const submitsPerSecond = await setup.submitsPerSecond(o.durationMs);
        const done = await setup.submitToDone(samples);
        const listsPerSecond = await setup.listsPerSecond(o.durationMs);
        measured.get(setup.name)!.push({ submitsPerSecond, doneP50Ms: percentile(done, 0.5), doneP99Ms: percentile(done, 0.99), listsPerSecond });
      }
    }
    const medianOf = (name: string): BackendRound => {
      const r = measured.get(name)!;
      return {
        submitsPerSecond: median(r.map((x) => x.submitsPerSecond)),
        doneP50Ms: median(r.map((x) => x.doneP50Ms)),
        doneP99Ms: median(r.map((x) => x.doneP99Ms)),
        listsPerSecond: median(r.map((x) => x.listsPerSecond)),
      };
    };
    return { rounds, experiments: EXPERIMENTS, sqlite: medianOf('sqlite'), postgres: medianOf('postgres') };
  } finally {
    for (const setup of setups) await setup.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export function storeReport(section: StoreSection): Array<string | ReportTable> {
  const table = new ReportTable(['measure', 'SQLite', 'PostgreSQL', 'x SQLite']);
  const row = (what: string, a: number, b: number, digits: number) => table.push([what, fixed(a, digits), fixed(b, digits), fixed(b / a, 2)]);
  row('jobs submitted /s', section.sqlite.submitsPerSecond, section.postgres.submitsPerSecond, 0);
  row('echo job submit-to-done p50 ms', section.sqlite.doneP50Ms, section.postgres.doneP50Ms, 1);
  row('echo job submit-to-done p99 ms', section.sqlite.doneP99Ms, section.postgres.doneP99Ms, 1);
  row(`experiments listed /s (50 of ${section.experiments})`, section.sqlite.listsPerSecond, section.postgres.listsPerSecond, 0);
  return [table];
}

/** `npm run bench -- store`: SQLite against PostgreSQL. */
export const storeSection: BenchSection<StoreSection> = {
  name: 'store',
  run: (c) => benchStore({ quick: c.quick, durationMs: c.durationMs, progress: c.progress }),
  report: (store) => [
    new Heading(`Store: SQLite and PostgreSQL side by side (each its own broker, echo worker and jobs service, all up at once), ${store.rounds} alternating rounds, medians`),
    ...storeReport(store),
  ],
};
