import type { Metric, MetricObjectWithValues, MetricValueWithName, Registry } from 'prom-client';
import type { MetricSpec } from './metrics.ts';
import type { MetricSeriesWire } from './protocol.ts';

/** Most series one table keeps: label values come from workers and clients, so they are bounded. */
export const MAX_SERIES_PER_METRIC = 1000;

/**
 * One labelled series: a counter or gauge value, or a histogram's count, sum and per-bucket counts.
 * Updating it allocates nothing, so the broker's hot path can keep a cached one per service.
 */
export class MetricSeries {
  /** Counter or gauge value; a histogram's count. */
  value = 0;
  sum = 0;
  /** Per-bucket counts, not cumulative; the last is +Inf. Only for histograms. */
  readonly buckets: Float64Array | undefined;

  constructor(
    readonly labels: readonly string[],
    private readonly bounds: readonly number[] | undefined,
  ) {
    this.buckets = bounds ? new Float64Array(bounds.length + 1) : undefined;
  }

  inc(n = 1): void {
    this.value += n;
  }

  set(value: number): void {
    this.value = value;
  }

  observe(seconds: number): void {
    const bounds = this.bounds!;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.buckets![i]!++;
    this.sum += seconds;
    this.value++;
  }
}

/**
 * The series of one metric, keyed by label values. It is also a prom-client collector (name, help,
 * type, `get()`), so a `Registry` formats it; and it converts to and from the heartbeat's wire form
 * (shared/protocol.ts), so a broker can sum the same metric over many workers.
 *
 * prom-client's own Counter and Histogram hash the label object on every update; this keeps the
 * update free of allocation for the broker's per-message path.
 */
export class MetricTable {
  readonly name: string;
  readonly help: string;
  readonly type: MetricSpec['type'];
  readonly aggregator = 'sum' as const;
  private readonly series = new Map<string, MetricSeries>();

  /** @param collect fills the table just before each scrape (gauges read from live state). */
  constructor(
    readonly spec: MetricSpec,
    private readonly collect?: (table: MetricTable) => void,
  ) {
    this.name = spec.name;
    this.help = spec.help;
    this.type = spec.type;
  }

  /** Registers this table with a prom-client registry (which only needs the collector interface). */
  registerIn(registry: Registry): this {
    registry.registerMetric(this as unknown as Metric);
    return this;
  }

  get size(): number {
    return this.series.size;
  }

  /** The series of these label values, created at zero (callers on hot paths cache it). */
  child(...labels: string[]): MetricSeries {
    const key = labels.join('\u0000');
    let series = this.series.get(key);
    if (!series) {
      series = new MetricSeries(labels, this.spec.buckets);
      this.series.set(key, series);
    }
    return series;
  }

  clear(): void {
    this.series.clear();
  }

  /** Adds every series of `other` (the same metric) to this one. */
  addTable(other: MetricTable): void {
    for (const s of other.series.values()) this.addSeries(s.labels, s.value, s.sum, s.buckets);
  }

  /** This table in the heartbeat's wire form. */
  toWire(): MetricSeriesWire[] {
    this.collect?.(this);
    return [...this.series.values()].map((s) =>
      s.buckets ? [this.name, [...s.labels], s.value, s.sum, [...s.buckets]] : [this.name, [...s.labels], s.value],
    );
  }

  /**
   * Adds one series received from a worker; false (and nothing added) when it does not fit this
   * metric: wrong label count, non-finite or negative numbers, wrong bucket count, or too many series.
   */
  addWire(wire: MetricSeriesWire): boolean {
    const [, labels, value, sum, buckets] = wire;
    if (!Array.isArray(labels) || labels.length !== this.spec.labelNames.length || !labels.every((l) => typeof l === 'string' && l.length <= 200)) return false;
    if (!isCount(value)) return false;
    if (this.spec.buckets) {
      if (typeof sum !== 'number' || !Number.isFinite(sum) || !Array.isArray(buckets) || buckets.length !== this.spec.buckets.length + 1) return false;
      if (!buckets.every(isCount)) return false;
    }
    if (this.series.size >= MAX_SERIES_PER_METRIC && !this.series.has(labels.join('\u0000'))) return false;
    this.addSeries(labels, value, sum ?? 0, buckets);
    return true;
  }

  /** prom-client's collector interface: the values a `Registry` formats. */
  async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    this.collect?.(this);
    const values: MetricValueWithName<string>[] = [];
    const names = this.spec.labelNames;
    for (const s of this.series.values()) {
      const labels: Record<string, string | number> = {};
      names.forEach((n, i) => (labels[n] = s.labels[i]!));
      if (!s.buckets) {
        values.push({ value: s.value, labels });
        continue;
      }
      let cumulative = 0;
      this.spec.buckets!.forEach((le, i) => {
        cumulative += s.buckets![i]!;
        values.push({ metricName: `${this.name}_bucket`, value: cumulative, labels: { ...labels, le } });
      });
      values.push({ metricName: `${this.name}_bucket`, value: s.value, labels: { ...labels, le: '+Inf' } });
      values.push({ metricName: `${this.name}_sum`, value: s.sum, labels });
      values.push({ metricName: `${this.name}_count`, value: s.value, labels });
    }
    return { name: this.name, help: this.help, type: this.type as unknown as MetricObjectWithValues<never>['type'], aggregator: 'sum', values, collect: () => undefined };
  }

  private addSeries(labels: readonly string[], value: number, sum: number, buckets: ArrayLike<number> | undefined): void {
    const series = this.child(...labels);
    series.value += value;
    series.sum += sum;
    if (series.buckets && buckets) for (let i = 0; i < series.buckets.length; i++) series.buckets[i]! += buckets[i]!;
  }
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}
