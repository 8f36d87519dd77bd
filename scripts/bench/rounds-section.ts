/**
 * `npm run bench -- rounds`: the judged part of `inference` alone (issue 20's goals), raw, cluster and
 * HTTP in alternating rounds (inference-rounds.ts), then dynamic batching's upper bound
 * (batching-section.ts) in rounds of the same length.
 */
import path from 'node:path';
import { benchBatching, type BatchRow } from './batching-section.ts';
import { BENCH_MODEL, benchModelDir, HTTP_CONCURRENCIES, HTTP_IMAGE, loadBenchImages, TABBY, THREAD_BUDGET } from './bench-model.ts';
import { envNumber, Heading, type BenchContext, type BenchSection } from './bench-section.ts';
import { benchInferenceRounds, inferenceRoundsReport, type InferenceRoundsResult } from './inference-rounds.ts';
import { each, fixed } from './report-format.ts';
import { ReportTable } from './report-table.ts';

export interface RoundsSection {
  inferenceRounds: InferenceRoundsResult;
  batching: { rows: BatchRow[] };
  /** Measured window of each run in a round. */
  roundWindowMs: number;
}

/** Alternating rounds: `BENCH_ROUNDS`, 1 with `--quick`. */
const rounds = (c: BenchContext) => envNumber('BENCH_ROUNDS', c.quick ? 1 : 5);
/** Measured window of each run in a round: short, since rounds, not length, beat the noise. */
const roundWindowMs = (c: BenchContext) => envNumber('BENCH_ROUND_WINDOW_MS', c.quick ? 300 : 1500);

async function run(c: BenchContext): Promise<RoundsSection> {
  const images = loadBenchImages(c.fixtures);
  const modelDir = benchModelDir(c.fixtures);
  const inferenceRounds = await benchInferenceRounds({
    modelDir,
    model: BENCH_MODEL,
    images,
    expected: TABBY,
    threads: THREAD_BUDGET,
    rounds: rounds(c),
    windowMs: roundWindowMs(c),
    httpImage: HTTP_IMAGE,
    httpConcurrencies: HTTP_CONCURRENCIES,
    progress: c.progress,
  });
  const rows = await benchBatching({
    modelPath: path.join(modelDir, 'model.onnx'),
    image: images.get('kitten.png')!,
    expected: TABBY,
    durationMs: roundWindowMs(c),
    rounds: rounds(c),
    progress: c.progress,
  });
  return { inferenceRounds, batching: { rows }, roundWindowMs: roundWindowMs(c) };
}

function batchTable(rows: BatchRow[]): ReportTable {
  const table = new ReportTable(['onnxruntime threads', 'batch', 'images/s', 'ms per run', 'x batch 1 images/s', 'x batch 1 CPU per image', 'images/s each round']);
  for (const row of rows) {
    table.push([row.threads, row.batch, fixed(row.imagesPerSecond), fixed(row.runMs), fixed(row.ratioToBatch1, 2), fixed(row.cpuToBatch1, 2), each(row.perRound, 0)]);
  }
  return table;
}

export const roundsSection: BenchSection<RoundsSection> = {
  name: 'rounds',
  run,
  report: (r) => [
    new Heading(
      `One request as fast as one process (issue 20): ${BENCH_MODEL}, ${THREAD_BUDGET} onnxruntime threads, raw (this process, no spinning) against zerve up ` +
        `(1 worker x ${THREAD_BUDGET} threads, ZerveClient over ZeroMQ) and POST /api/classify (zerve up's web app, and a zerve web process), ` +
        `all up at once, ${r.inferenceRounds.rounds} alternating rounds of ${r.roundWindowMs} ms per run, cache skipped. Median (range) over rounds:`,
    ),
    ...inferenceRoundsReport(r.inferenceRounds, { httpImage: HTTP_IMAGE, httpConcurrencies: HTTP_CONCURRENCIES }),
    '',
    new Heading(
      `Dynamic batching, measured as its upper bound: ${BENCH_MODEL} session.run on one decoded kitten.png tensor as batches of N, no spinning; ` +
        `every setup loaded at once, ${r.inferenceRounds.rounds} alternating rounds of ${r.roundWindowMs} ms each; ratios are medians of per-round ratios to batch 1 with the same threads`,
    ),
    batchTable(r.batching.rows),
  ],
};
