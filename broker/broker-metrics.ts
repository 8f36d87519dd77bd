import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import type { BrokerStats, ServiceInfo } from '../shared/messages.ts';
import { MetricTable, type MetricSeries } from '../shared/metric-table.ts';
import { DURATION_BUCKETS_S, METRICS } from '../shared/metrics.ts';
import { replyOutcome, type ReplyOutcome } from '../shared/reply-outcome.ts';
import { MetricsRelay } from './metrics-relay.ts';
import type { PendingRequest } from './pending-request.ts';

/** Services measured one by one; requests for further names (clients choose them) count as `_other`. */
const MAX_SERVICES = 500;
const OTHER_SERVICE = '_other';

/** The cached series of one service: the hot path only looks them up. */
interface ServiceSeries {
  readonly service: string;
  readonly codes: Map<ReplyOutcome, MetricSeries>;
  readonly duration: MetricSeries;
  readonly queue: MetricSeries;
}

/**
 * The broker's Prometheus metrics (shared/metrics.ts): requests by service and outcome, their time at
 * the broker and in its queues, the live gauges of `mmi.services` (read at scrape time, so they cost
 * nothing per message), and the workers' own metrics relayed in heartbeats (`MetricsRelay`).
 *
 * The broker calls one method per event; each is a map lookup and a few additions, with no
 * allocation once a service's series exist.
 */
export class BrokerMetrics {
  readonly registry = new Registry();
  readonly relay: MetricsRelay;
  private readonly requests = new MetricTable(METRICS.requestTotal);
  private readonly requestDuration = new MetricTable(METRICS.requestDuration);
  private readonly queueDuration = new MetricTable(METRICS.queueDuration);
  private readonly requeues: MetricSeries;
  private readonly lost: MetricSeries;
  private readonly overloaded: MetricSeries;
  private readonly services = new Map<string, ServiceSeries>();

  /** @param serviceInfo the broker's live view of its services (as `mmi.services` answers). */
  constructor(serviceInfo: () => ServiceInfo[], log: Logger) {
    this.relay = new MetricsRelay(log);
    for (const table of [this.requests, this.requestDuration, this.queueDuration]) table.registerIn(this.registry);
    const counter = (spec: typeof METRICS.workerLost) => new MetricTable(spec).registerIn(this.registry).child();
    this.requeues = counter(METRICS.workerRequeues);
    this.lost = counter(METRICS.workerLost);
    this.overloaded = counter(METRICS.overloaded);
    const gauge = (spec: typeof METRICS.queueDepth, read: (s: ServiceInfo) => number) =>
      new MetricTable(spec, (table) => {
        table.clear();
        for (const s of serviceInfo()) table.child(s.name).set(read(s));
      }).registerIn(this.registry);
    gauge(METRICS.queueDepth, (s) => s.queued);
    gauge(METRICS.inflight, (s) => s.inFlight);
    gauge(METRICS.workers, (s) => s.workers);
    gauge(METRICS.workerCapacity, (s) => s.capacity);
    this.relay.registerIn(this.registry);
  }

  /** The broker answered a request itself (an error: TIMEOUT, NO_WORKERS, OVERLOADED, ...). */
  answered(request: PendingRequest, code: ReplyOutcome): void {
    this.count(request, code);
    if (code === 'OVERLOADED') this.overloaded.inc();
  }

  /** A worker's FINAL reply went to the client. */
  replied(request: PendingRequest, body: Buffer[]): void {
    this.count(request, replyOutcome(body[0]));
  }

  /** A request left its queue for a worker (the first time: a requeued one waited already). */
  dispatched(request: PendingRequest): void {
    if (request.requeues === 0) this.seriesOf(request.service).queue.observe((performance.now() - request.receivedAt) / 1000);
  }

  /** A worker left: `lost` unless it said DISCONNECT; `requeued` of its requests went to other workers. */
  workerRemoved(workerId: string, lost: boolean, requeued: number): void {
    if (lost) this.lost.inc();
    if (requeued > 0) this.requeues.inc(requeued);
    this.relay.workerRemoved(workerId);
  }

  /** Every measured service's counts so far (`mmi.stats`), read from the same series `/metrics` shows. */
  stats(): BrokerStats {
    return {
      bucketsS: [...DURATION_BUCKETS_S],
      services: [...new Set(this.services.values())].map((s) => ({
        name: s.service,
        outcomes: Object.fromEntries([...s.codes].map(([code, counter]) => [code, counter.value])),
        durationBuckets: [...s.duration.buckets!],
        queueBuckets: [...s.queue.buckets!],
      })),
      requeues: this.requeues.value,
      lost: this.lost.value,
      overloaded: this.overloaded.value,
    };
  }

  /** A HEARTBEAT carried the worker's metrics. */
  heartbeat(workerId: string, frame: Buffer): void {
    this.relay.accept(workerId, frame);
  }

  private count(request: PendingRequest, code: ReplyOutcome): void {
    const series = this.seriesOf(request.service);
    let counter = series.codes.get(code);
    if (!counter) series.codes.set(code, (counter = this.requests.child(series.service, code)));
    counter.inc();
    series.duration.observe((performance.now() - request.receivedAt) / 1000);
  }

  private seriesOf(service: string): ServiceSeries {
    let series = this.services.get(service);
    if (series) return series;
    const name = this.services.size < MAX_SERVICES ? service : OTHER_SERVICE;
    series = this.services.get(name) ?? {
      service: name,
      codes: new Map(),
      duration: this.requestDuration.child(name),
      queue: this.queueDuration.child(name),
    };
    this.services.set(name, series);
    return series;
  }
}
