import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { MetricTable } from './metric-table.ts';
import type { MetricSpec } from './metrics.ts';
import { HOSTNAME, type MetricsSnapshot } from './protocol.ts';

/**
 * A worker process's metrics: served on its own `/metrics` (with `--metrics-port`) and carried to the
 * broker in heartbeats (`WorkerConnection.reportMetrics`), so scraping the broker alone shows workers
 * on hosts Prometheus cannot reach.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  /** Names this process in snapshots: unique across restarts and hosts. */
  readonly instance = `${HOSTNAME}-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly tables = new Map<string, MetricTable>();

  /** The table of a metric, registered on first use; `collect` fills a gauge before each read. */
  table(spec: MetricSpec, collect?: (table: MetricTable) => void): MetricTable {
    let table = this.tables.get(spec.name);
    if (!table) {
      table = new MetricTable(spec, collect).registerIn(this.registry);
      this.tables.set(spec.name, table);
    }
    return table;
  }

  /** Every series, cumulative, in the heartbeat's wire form. */
  snapshot(): MetricsSnapshot {
    return { instance: this.instance, series: [...this.tables.values()].flatMap((t) => t.toWire()) };
  }
}
