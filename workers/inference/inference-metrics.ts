import type { InferReplyHeader } from '../../shared/infer-messages.ts';
import type { ClassifyReply } from '../../shared/messages.ts';
import type { MetricTable } from '../../shared/metric-table.ts';
import { METRICS } from '../../shared/metrics.ts';
import type { WorkerMetrics } from '../../shared/worker-metrics.ts';

/** An inference worker's metrics by model and version: decode and inference time, successful inferences, result cache hits and misses. */
export class InferenceMetrics {
  private readonly inference: MetricTable;
  private readonly decode: MetricTable;
  private readonly total: MetricTable;
  private readonly cache: MetricTable;

  constructor(metrics: WorkerMetrics) {
    this.inference = metrics.table(METRICS.inferenceDuration);
    this.decode = metrics.table(METRICS.decodeDuration);
    this.total = metrics.table(METRICS.inferenceTotal);
    this.cache = metrics.table(METRICS.resultCache);
  }

  /** Records one successful classification from the timings of its reply. */
  classified(reply: ClassifyReply): void {
    const { model, version, timings } = reply;
    if (reply.cached) {
      this.cache.child(model, version, 'hit').inc(); // answered without inference
      return;
    }
    if (timings.hashMs !== undefined) this.cache.child(model, version, 'miss').inc(); // no hashMs: the request skipped the cache
    this.total.child(model, version).inc();
    if (timings.inferenceMs !== undefined) this.inference.child(model, version).observe(timings.inferenceMs / 1000);
    if (timings.decodeMs !== undefined) this.decode.child(model, version).observe(timings.decodeMs / 1000);
  }

  /**
   * Records one successful `infer.<model>` request (the `/v2` routes): every row of its batch is an
   * inference; its session time and its decode (images only) are one observation each.
   */
  inferred(reply: InferReplyHeader): void {
    const { model, version, timings } = reply;
    this.total.child(model, version).inc(reply.output.shape[0] ?? 1);
    if (timings.inferenceMs !== undefined) this.inference.child(model, version).observe(timings.inferenceMs / 1000);
    if (timings.decodeMs !== undefined) this.decode.child(model, version).observe(timings.decodeMs / 1000);
  }
}
