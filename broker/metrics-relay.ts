import { EventEmitter } from 'node:events';
import type { Metric, Registry } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import { MetricTable } from '../shared/metric-table.ts';
import { RELAYED_METRICS, type MetricSpec } from '../shared/metrics.ts';
import { parseMetricsSnapshot } from '../shared/protocol.ts';

/** Worker processes whose counts are kept one by one; past it the oldest departed one is folded into the totals. */
const MAX_INSTANCES = 10_000;

interface Instance {
  tables: Map<string, MetricTable>;
  /** Set while no connection of the process is registered: its gauges no longer count. */
  departed: boolean;
}

/**
 * Worker metrics carried in heartbeats (shared/protocol.ts `MetricsSnapshot`), summed over the
 * cluster for the broker's `/metrics`. Snapshots are cumulative and keyed by worker process, so a
 * process with several connections counts once, a reconnect continues where it was, and a departed
 * process's counters stay in the sums (counters never go down); its gauges stop counting.
 *
 * Events: `'snapshot'` (instance) after each snapshot accepted.
 */
export class MetricsRelay extends EventEmitter {
  private readonly instances = new Map<string, Instance>();
  /** Counters and histograms of processes folded away to bound memory. */
  private readonly retired = new Map<string, MetricTable>();
  private readonly instanceOf = new Map<string, string>();
  private readonly specs = new Map(RELAYED_METRICS.map((s) => [s.name, s]));
  private dropped = 0;

  constructor(private readonly log: Logger) {
    super();
  }

  /** Registers one collector per relayed metric: each sums the processes at scrape time. */
  registerIn(registry: Registry): void {
    for (const spec of RELAYED_METRICS) {
      const collector = { name: spec.name, help: spec.help, type: spec.type, aggregator: 'sum', get: () => this.sum(spec).get() };
      registry.registerMetric(collector as unknown as Metric);
    }
  }

  /** Takes a HEARTBEAT's metrics frame from a worker connection; a frame it cannot read is dropped. */
  accept(workerId: string, frame: Buffer): void {
    const snapshot = parseMetricsSnapshot(frame);
    if (!snapshot || snapshot.instance.length === 0 || snapshot.instance.length > 200) return this.drop(workerId, 'unreadable metrics frame');
    let instance = this.instances.get(snapshot.instance);
    if (!instance) {
      if (this.instances.size >= MAX_INSTANCES && !this.foldOldestDeparted()) return this.drop(workerId, 'too many worker processes');
      instance = { tables: new Map(), departed: false };
      this.instances.set(snapshot.instance, instance);
    }
    const tables = new Map<string, MetricTable>();
    let rejected = 0;
    for (const series of snapshot.series) {
      const spec = Array.isArray(series) && typeof series[0] === 'string' ? this.specs.get(series[0]) : undefined;
      if (!spec) {
        rejected++;
        continue;
      }
      let table = tables.get(spec.name);
      if (!table) tables.set(spec.name, (table = new MetricTable(spec)));
      if (!table.addWire(series)) rejected++;
    }
    if (rejected > 0) this.drop(workerId, `${rejected} metric series did not fit the catalog`);
    instance.tables = tables;
    instance.departed = false;
    this.instanceOf.set(workerId, snapshot.instance);
    this.emit('snapshot', snapshot.instance);
  }

  /** A worker connection left: once no connection of its process remains, the process's gauges stop counting. */
  workerRemoved(workerId: string): void {
    const name = this.instanceOf.get(workerId);
    if (name === undefined) return;
    this.instanceOf.delete(workerId);
    const instance = this.instances.get(name);
    if (instance && ![...this.instanceOf.values()].includes(name)) instance.departed = true;
  }

  private sum(spec: MetricSpec): MetricTable {
    const total = new MetricTable(spec);
    const retired = this.retired.get(spec.name);
    if (retired) total.addTable(retired);
    for (const instance of this.instances.values()) {
      if (instance.departed && spec.type === 'gauge') continue;
      const table = instance.tables.get(spec.name);
      if (table) total.addTable(table);
    }
    return total;
  }

  private foldOldestDeparted(): boolean {
    for (const [name, instance] of this.instances) {
      if (!instance.departed) continue;
      for (const table of instance.tables.values()) {
        if (table.type === 'gauge') continue;
        let retired = this.retired.get(table.name);
        if (!retired) this.retired.set(table.name, (retired = new MetricTable(table.spec)));
        retired.addTable(table);
      }
      this.instances.delete(name);
      return true;
    }
    return false;
  }

  private drop(workerId: string, reason: string): void {
    // Rate-limited: a misbehaving worker sends one every metrics interval.
    if (this.dropped++ % 100 === 0) this.log.warn({ worker: workerId, reason, dropped: this.dropped }, 'worker metrics dropped');
  }
}
