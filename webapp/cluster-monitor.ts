import { EventEmitter } from 'node:events';
import type { ZerveClient } from '../shared/client.ts';
import {
  ALL_BROKERS,
  type AutoscaleStatus,
  type ClusterBroker,
  type ClusterHistory,
  type ClusterServiceRow,
  type ClusterSnapshot,
  type ClusterWorker,
} from '../shared/cluster-view.ts';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { BrokerStats, ServiceInfo, ServiceStats, WorkerInfo } from '../shared/messages.ts';
import { MMI_STATS } from '../shared/protocol.ts';
import { histogramQuantileMs } from './histogram-quantile.ts';

/** A broker the monitor polls, named by its endpoint. */
export interface ClusterSource {
  endpoint: string;
  client: ZerveClient;
}

export interface ClusterMonitorOptions {
  /** Time between polls of every broker. @defaultValue 1000 */
  pollMs: number;
  /** How far back the charts' history reaches. @defaultValue 900_000 (15 minutes) */
  historyMs: number;
  /** Rates and latencies are measured over this span of past polls. @defaultValue 10_000 */
  rateWindowMs: number;
}

export const DEFAULT_CLUSTER_MONITOR_OPTIONS: ClusterMonitorOptions = {
  pollMs: 1000,
  historyMs: 15 * 60_000,
  rateWindowMs: 10_000,
};

/** Per-service history is kept every this many polls: 500 services at every poll would hold ~30 MB. */
const SERVICE_HISTORY_EVERY = 5;
/** Most services kept in history; the rest still show in the table. */
const MAX_SERVICE_HISTORIES = 500;

interface StatsSample {
  at: number;
  stats: Map<string, ServiceStats>;
}

interface BrokerState {
  source: ClusterSource;
  samples: StatsSample[];
  broker: ClusterBroker;
  workers: ClusterWorker[];
  services: ServiceInfo[];
}

/** A row with the window's bucket deltas, so rows of several brokers can be summed before quantiles. */
interface MeasuredRow {
  row: ClusterServiceRow;
  duration: number[];
  queue: number[];
}

/**
 * Polls each broker's `mmi.workers`, `mmi.services` and `mmi.stats` and turns them into what the
 * /cluster page shows: workers, per-service rates and latencies over the rate window (from the deltas
 * of the broker's histograms), summed over brokers and one by one, and 15 minutes of history.
 *
 * Events: `'snapshot'` (ClusterSnapshot) after every poll.
 */
export class ClusterMonitor extends EventEmitter {
  readonly options: ClusterMonitorOptions;
  private readonly brokers: BrokerState[];
  private readonly histories = new Map<string, ClusterHistory>();
  private readonly log: Logger;
  private autoscale: () => AutoscaleStatus[] = () => [];
  private bucketsS: number[] = [];
  private last: ClusterSnapshot;
  private timer: NodeJS.Timeout | undefined;
  private polls = 0;
  private started = false;
  private closed = false;

  constructor(sources: readonly ClusterSource[], options: Partial<ClusterMonitorOptions>, log: Logger) {
    super();
    this.options = { ...DEFAULT_CLUSTER_MONITOR_OPTIONS, ...options };
    for (const key of ['pollMs', 'historyMs', 'rateWindowMs'] as const) {
      if (!(this.options[key] > 0)) throw new ZerveError('BAD_CONFIG', `${key} must be positive, got ${this.options[key]}`);
    }
    this.log = log.child({ component: 'cluster-monitor' });
    this.brokers = sources.map((source) => ({
      source,
      samples: [],
      broker: { endpoint: source.endpoint, up: false, workers: 0, services: 0, requeues: 0, lost: 0, overloaded: 0 },
      workers: [],
      services: [],
    }));
    this.last = { at: Date.now(), pollMs: this.options.pollMs, brokers: this.brokers.map((b) => b.broker), workers: [], services: [], totals: [], autoscale: [] };
  }

  /** The latest snapshot (empty until the first poll). */
  get snapshot(): ClusterSnapshot {
    return this.last;
  }

  /** Shows autoscaling on the page: `provider` is read at every poll. */
  showAutoscale(provider: () => AutoscaleStatus[]): void {
    this.autoscale = provider;
  }

  /** The history of `*` (every broker summed), a broker endpoint, or `service:<name>`. */
  history(key: string): ClusterHistory | undefined {
    return this.histories.get(key);
  }

  /** Starts polling; idempotent. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    void this.loop();
  }

  /** Stops polling; idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.removeAllListeners('snapshot');
  }

  private async loop(): Promise<void> {
    if (this.closed) return;
    const began = Date.now();
    try {
      await this.poll();
    } catch (err) {
      this.log.error({ err }, 'cluster poll failed');
    }
    if (this.closed) return;
    this.timer = setTimeout(() => void this.loop(), Math.max(0, this.options.pollMs - (Date.now() - began)));
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    await Promise.all(this.brokers.map((b) => this.pollBroker(b)));
    if (this.closed) return;
    const at = Date.now();
    const measured = this.brokers.flatMap((b) => this.measure(b));
    const summed = this.sum(measured, ALL_BROKERS);
    const workers = this.brokers.flatMap((b) => b.workers);
    const totals = [
      this.total(summed, ALL_BROKERS, workers.length),
      ...this.brokers.map((b) => this.total(measured.filter((m) => m.row.broker === b.broker.endpoint), b.broker.endpoint, b.workers.length)),
    ];
    this.last = {
      at,
      pollMs: this.options.pollMs,
      brokers: this.brokers.map((b) => b.broker),
      workers,
      services: [...summed.map((m) => m.row), ...measured.map((m) => m.row)],
      totals: totals.map((m) => m.row),
      autoscale: this.autoscale(),
    };
    for (const m of totals) this.record(m.row.broker, at, m);
    if (this.polls++ % SERVICE_HISTORY_EVERY === 0) {
      for (const m of summed) {
        const key = `service:${m.row.name}`;
        if (this.histories.has(key) || this.histories.size < MAX_SERVICE_HISTORIES + this.brokers.length + 1) this.record(key, at, m);
      }
    }
    this.emit('snapshot', this.last);
  }

  private async pollBroker(state: BrokerState): Promise<void> {
    const { client, endpoint } = state.source;
    const options = { timeoutMs: Math.max(1000, this.options.pollMs), retries: 0 };
    try {
      const [workers, services, stats] = await Promise.all([
        client.workers(options),
        client.services(options),
        client.requestJson<BrokerStats>(MMI_STATS, [], options),
      ]);
      const now = Date.now();
      this.bucketsS = stats.bucketsS;
      state.samples.push({ at: now, stats: new Map(stats.services.map((s) => [s.name, s])) });
      // Keep the newest sample at least rateWindowMs old, the base the window's deltas are taken from.
      while (state.samples.length > 2 && state.samples[1]!.at <= now - this.options.rateWindowMs) state.samples.shift();
      state.workers = workers.map((w: WorkerInfo) => ({ ...w, broker: endpoint }));
      state.broker = { endpoint, up: true, workers: workers.length, services: services.length, requeues: stats.requeues, lost: stats.lost, overloaded: stats.overloaded };
      state.services = services;
    } catch (err) {
      const error = ZerveError.from(err);
      if (state.broker.up) this.log.warn({ broker: endpoint, code: error.code }, 'broker does not answer the cluster poll');
      state.broker = { ...state.broker, up: false, error: error.code, workers: 0, services: 0 };
      state.workers = [];
      state.samples = [];
      state.services = [];
    }
  }

  /** One broker's rows over the rate window. */
  private measure(state: BrokerState): MeasuredRow[] {
    const services = state.services;
    const newest = state.samples.at(-1);
    const oldest = state.samples[0];
    const names = new Set([...services.map((s) => s.name), ...(newest?.stats.keys() ?? [])]);
    const info = new Map(services.map((s) => [s.name, s]));
    const spanS = newest && oldest && newest !== oldest ? (newest.at - oldest.at) / 1000 : 0;
    const rows: MeasuredRow[] = [];
    for (const name of [...names].sort()) {
      const live = info.get(name);
      const now = newest?.stats.get(name);
      const then = oldest === newest ? undefined : oldest?.stats.get(name);
      const duration = delta(now?.durationBuckets, then?.durationBuckets);
      const queue = delta(now?.queueBuckets, then?.queueBuckets);
      const answered = sumOf(now?.outcomes) - sumOf(then?.outcomes);
      const errors = answered - ((now?.outcomes.OK ?? 0) - (then?.outcomes.OK ?? 0));
      rows.push({
        duration,
        queue,
        row: {
          broker: state.broker.endpoint,
          name,
          workers: live?.workers ?? 0,
          capacity: live?.capacity ?? 0,
          inFlight: live?.inFlight ?? 0,
          queued: live?.queued ?? 0,
          rps: spanS > 0 ? answered / spanS : 0,
          errorsPerS: spanS > 0 ? errors / spanS : 0,
          p50Ms: histogramQuantileMs(this.bucketsS, duration, 0.5),
          p99Ms: histogramQuantileMs(this.bucketsS, duration, 0.99),
          queueP50Ms: histogramQuantileMs(this.bucketsS, queue, 0.5),
          outcomes: { ...(now?.outcomes ?? {}) },
        },
      });
    }
    return rows;
  }

  /** Rows of the same service at several brokers, added up under `broker`. */
  private sum(rows: readonly MeasuredRow[], broker: string): MeasuredRow[] {
    const byName = new Map<string, MeasuredRow[]>();
    for (const m of rows) {
      const list = byName.get(m.row.name);
      if (list) list.push(m);
      else byName.set(m.row.name, [m]);
    }
    return [...byName.keys()].sort().map((name) => this.add(byName.get(name)!, broker, name));
  }

  /** The total over every service of `rows`, as one row. */
  private total(rows: readonly MeasuredRow[], broker: string, workers: number): MeasuredRow {
    const m = this.add(rows, broker, '');
    m.row.workers = workers;
    return m;
  }

  private add(rows: readonly MeasuredRow[], broker: string, name: string): MeasuredRow {
    const duration = new Array<number>(this.bucketsS.length + 1).fill(0);
    const queue = new Array<number>(this.bucketsS.length + 1).fill(0);
    const row: ClusterServiceRow = { broker, name, workers: 0, capacity: 0, inFlight: 0, queued: 0, rps: 0, errorsPerS: 0, p50Ms: null, p99Ms: null, queueP50Ms: null, outcomes: {} };
    for (const m of rows) {
      for (const key of ['workers', 'capacity', 'inFlight', 'queued', 'rps', 'errorsPerS'] as const) row[key] += m.row[key];
      for (const [code, n] of Object.entries(m.row.outcomes)) row.outcomes[code] = (row.outcomes[code] ?? 0) + n;
      m.duration.forEach((n, i) => (duration[i]! += n));
      m.queue.forEach((n, i) => (queue[i]! += n));
    }
    row.p50Ms = histogramQuantileMs(this.bucketsS, duration, 0.5);
    row.p99Ms = histogramQuantileMs(this.bucketsS, duration, 0.99);
    row.queueP50Ms = histogramQuantileMs(this.bucketsS, queue, 0.5);
    return { row, duration, queue };
  }

  private record(key: string, at: number, { row }: MeasuredRow): void {
    let h = this.histories.get(key);
    if (!h) this.histories.set(key, (h = { key, at: [], rps: [], errorsPerS: [], p50Ms: [], p99Ms: [], queued: [], inFlight: [], workers: [] }));
    h.at.push(at / 1000);
    h.rps.push(round(row.rps));
    h.errorsPerS.push(round(row.errorsPerS));
    h.p50Ms.push(row.p50Ms === null ? null : round(row.p50Ms));
    h.p99Ms.push(row.p99Ms === null ? null : round(row.p99Ms));
    h.queued.push(row.queued);
    h.inFlight.push(row.inFlight);
    h.workers.push(row.workers);
    const oldest = (at - this.options.historyMs) / 1000;
    while (h.at.length > 0 && h.at[0]! < oldest) {
      for (const column of [h.at, h.rps, h.errorsPerS, h.p50Ms, h.p99Ms, h.queued, h.inFlight, h.workers]) column.shift();
    }
  }
}

function delta(now: readonly number[] | undefined, then: readonly number[] | undefined): number[] {
  if (!now) return [];
  return now.map((n, i) => Math.max(0, n - (then?.[i] ?? 0)));
}

function sumOf(outcomes: Record<string, number> | undefined): number {
  let total = 0;
  for (const n of Object.values(outcomes ?? {})) total += n;
  return total;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
