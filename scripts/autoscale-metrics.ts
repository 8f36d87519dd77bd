import { Registry } from 'prom-client';
import { MetricTable } from '../shared/metric-table.ts';
import { METRICS } from '../shared/metrics.ts';

/**
 * The autoscalers' Prometheus series (`zerve_autoscale_decisions_total{kind,direction}`,
 * `zerve_workers_desired{kind}`): one registry for every scaled kind, served on the web app's /metrics.
 */
export class AutoscaleMetrics {
  readonly registry = new Registry();
  private readonly decisions = new MetricTable(METRICS.autoscaleDecisions).registerIn(this.registry);
  private readonly desired = new MetricTable(METRICS.workersDesired).registerIn(this.registry);

  decided(kind: string, direction: 'up' | 'down'): void {
    this.decisions.child(kind, direction).inc();
  }

  setDesired(kind: string, workers: number): void {
    this.desired.child(kind).set(workers);
  }
}
