import { FeatureExtractor, type FeatureMatrix } from '../../workers/training/features.ts';

export interface ExtractionTiming {
  rows: number;
  cacheHits: number;
  /** The extractor's own rate: images decoded and run per second, cache hits excluded (0 when all hit). */
  imagesPerSecond: number;
  /** Wall time of `extract`: session creation, cache lookups, decoding, inference, cache writes. */
  ms: number;
  /** `performance.now()` when `extract` returned. */
  endedAt: number;
}

/**
 * The trainer's feature extractor, unchanged, that also records the wall time and cache hits of each
 * `extract` call (the trainer keeps only the rate). Passed to `runTraining` as `context.extractor`.
 */
export class TimedExtractor extends FeatureExtractor {
  readonly timings: ExtractionTiming[] = [];

  override async extract(...args: Parameters<FeatureExtractor['extract']>): Promise<FeatureMatrix> {
    const started = performance.now();
    const matrix = await super.extract(...args);
    const endedAt = performance.now();
    this.timings.push({ rows: matrix.rows, cacheHits: matrix.cacheHits, imagesPerSecond: matrix.imagesPerSecond, ms: endedAt - started, endedAt });
    return matrix;
  }
}
