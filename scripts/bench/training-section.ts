/**
 * The benchmark's training section (issue #4): the built-in `digits` MLP against its accuracy and
 * time targets, transfer learning on squeezenet-fp32 embeddings against a plain sharp + onnxruntime
 * loop (and with a warm embedding cache), and a grid search on one training worker against two.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ZerveClient } from '../../shared/client.ts';
import { DEFAULT_TRAINING_OPTIONS, DEFAULT_TRAINING_WORKER_OPTIONS, resolveOptions } from '../../shared/config.ts';
import { logger, type Logger } from '../../shared/logger.ts';
import { DIGITS_REQUEST, requestTraining, TRAIN_RUN_SERVICE, type TrainHeader, type TrainProgressMessage, type TrainResultMessage } from '../../shared/training.ts';
import { squeezenetBackbone, type BackboneSpec } from '../../workers/training/backbone.ts';
import { loadMnist } from '../../workers/training/builtin-mnist.ts';
import { DatasetStore } from '../../workers/training/dataset-store.ts';
import { FeatureExtractor } from '../../workers/training/features.ts';
import { expandSearch } from '../../shared/search-space.ts';
import { runTraining, type TrainingProgress } from '../../workers/training/trainer.ts';
import type { TrainingRequest } from '../../shared/training-request.ts';
import { writeAugmentedFolder } from './augmented-folder.ts';
import { BenchCluster } from './bench-cluster.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { CHILD_ENV } from './cli-child.ts';
import { EmbeddingBaseline } from './embedding-baseline.ts';
import { Heading, type BenchSection, type ReportPart } from './bench-section.ts';
import { ReportTable } from './report-table.ts';
import { fixed } from './report-format.ts';
import { withProcessCpu } from './process-cpu.ts';
import { TimedExtractor, type ExtractionTiming } from './timed-extractor.ts';

export interface TrainingBenchOptions {
  /** `../shared/fixtures`: images and the squeezenet-fp32 model. */
  fixtures: string;
  /** Reduced sizes, to check the section end to end in seconds; targets are then not judged. */
  quick: boolean;
  /** One line of progress (the benchmark's stderr style). */
  progress: (message: string) => void;
}

interface TrainingSizes {
  /** Epochs of the digits request; undefined keeps DIGITS_REQUEST's own. */
  digitsEpochs?: number;
  transferPerClass: number;
  transferTestPerClass: number;
  transferEpochs: number;
  gridEpochs: number;
  gridHidden: number;
}

const FULL_SIZES: TrainingSizes = { transferPerClass: 40, transferTestPerClass: 10, transferEpochs: 30, gridEpochs: 8, gridHidden: 64 };
const QUICK_SIZES: TrainingSizes = { digitsEpochs: 2, transferPerClass: 10, transferTestPerClass: 3, transferEpochs: 5, gridEpochs: 1, gridHidden: 16 };

export const DIGITS_TARGET = { testAccuracy: 0.95, wallSeconds: 60 };
export const GRID_TARGET_RATIO = 0.6;
const BACKBONE = 'squeezenet-fp32';
const TRANSFER_CLASSES = { kitten: 'kitten.png', fish: 'fish.png' };
/** Each combination costs the same (same layers, epochs, data), so two workers can split the grid evenly. */
const GRID_SEARCH = ['learningRate=0.001,0.003', 'l2=0.0001,0.001', 'lrDecay=1,0.85'];
const GRID_WORKERS = [1, 2];

export interface DigitsResult {
  request: TrainHeader;
  /** Parsing the built-in digits, done once per process (a training worker does it before it registers). */
  mnistLoadMs: number;
  /** runTraining: features, the run, the refit, the test evaluation and the export. */
  wallMs: number;
  epochsRun: number;
  refitEpochs: number;
  testAccuracy: number;
  macroF1: number;
  met?: boolean;
}

export interface TransferRow {
  setup: string;
  images: number;
  cacheHits?: number;
  /** Wall time of the features step (for the runs: session creation, cache lookups, decoding, inference, cache writes). */
  featuresMs: number;
  /** Images embedded per second: the baseline's loop, or the extractor's own rate (cache hits excluded). */
  imagesPerSecond?: number;
  ratioToRaw?: number;
  /** Search runs + refit + test evaluation, after the features. */
  headMs?: number;
  exportMs?: number;
  totalMs?: number;
  testAccuracy?: number;
}

export interface TransferResult {
  backbone: string;
  threads: number;
  batchSize: number;
  classes: string[];
  trainImages: number;
  testImages: number;
  request: TrainingRequest;
  rows: TransferRow[];
  /** Largest difference between the baseline's and the extractor's (cached) embeddings, over the largest value. */
  embeddingRelativeDiff: number;
  cacheFiles: number;
}

export interface GridRow {
  workers: number;
  wallMs: number;
  /** `train` sent to the orchestrator's features done. */
  prepareMs: number;
  /** Features done to the last run's last epoch. */
  searchMs: number;
  /** Last run epoch to the FINAL reply: refit on train + validation, test evaluation. */
  finishMs: number;
  /** Runs each worker process computed, by pid. */
  runsByPid: Record<string, number>;
  /** Sum of the runs' own durations (measured where they ran) over the search's wall time. */
  meanRunsAtOnce: number;
  /** CPU time (user + system, all threads) of the worker processes during the request, undefined without /proc. */
  workerCpuMs?: number;
  /** Worker CPU time over wall time: the cores the workers kept busy. */
  coresBusy?: number;
  /** CPU time of the broker process and this one (the client) during the request. */
  benchCpuMs?: number;
  testAccuracy: number;
  ratioToOneWorker?: number;
}

export interface GridResult {
  request: TrainHeader;
  runs: number;
  runConcurrency: number;
  runCapacity: number;
  rows: GridRow[];
  ratio: number;
  target: number;
  met?: boolean;
}

export interface TrainingSection {
  quick: boolean;
  digits: DigitsResult;
  transfer: TransferResult;
  grid: GridResult;
}

/** Runs the three training entries one after another (each on an otherwise idle cluster). */
export async function benchTraining(options: TrainingBenchOptions): Promise<TrainingSection> {
  const sizes = options.quick ? QUICK_SIZES : FULL_SIZES;
  const log = logger.child({ component: 'bench' }, { level: process.env.ZERVE_LOG_LEVEL ?? 'warn' });
  const digits = await benchDigits(options, sizes, log);
  const transfer = await benchTransfer(options, sizes, log);
  const grid = await benchGrid(options, sizes);
  return { quick: options.quick, digits, transfer, grid };
}

/** Epoch progress at most every 2 s, plus each run's last epoch. */
function epochProgress(progress: (message: string) => void, label: string): (event: TrainingProgress) => void {
  let last = 0;
  return (event) => {
    const now = performance.now();
    if (event.phase === 'export') {
      progress(`${label}: exporting the model`);
    } else if (event.phase === 'features') {
      if (event.done === event.total || now - last > 2000) {
        last = now;
        progress(`${label}: features ${event.done}/${event.total}`);
      }
    } else if (event.epoch === event.epochs || now - last > 2000) {
      last = now;
      // The refit trains on train + validation: it has no validation accuracy.
      const run = event.phase === 'refit' ? 'refit' : `run ${event.run}/${event.runs}`;
      const metric = event.phase === 'refit' ? `loss ${event.loss.toFixed(4)}` : `validation accuracy ${event.valAccuracy.toFixed(3)}`;
      progress(`${label}: ${run}, epoch ${event.epoch}/${event.epochs}, ${metric}`);
    }
  };
}

async function tempRoot(name: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const root = await mkdtemp(path.join(tmpdir(), `zerve-bench-${name}-`));
  return { path: root, remove: () => rm(root, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------------------------
// digits: the request `npm start` sends, through the training library
// ---------------------------------------------------------------------------------------------

async function benchDigits(options: TrainingBenchOptions, sizes: TrainingSizes, log: Logger): Promise<DigitsResult> {
  const root = await tempRoot('digits');
  try {
    let started = performance.now();
    loadMnist();
    const mnistLoadMs = performance.now() - started;
    const request: TrainingRequest = { ...DIGITS_REQUEST, ...(sizes.digitsEpochs !== undefined ? { epochs: sizes.digitsEpochs } : {}) };
    options.progress(`digits: training DIGITS_REQUEST (${String(request.epochs)} epochs) with runTraining in this process`);
    started = performance.now();
    const result = await runTraining(request, {
      options: { data: path.join(root.path, 'data'), models: path.join(root.path, 'models') },
      logger: log,
      onProgress: epochProgress(options.progress, 'digits'),
    });
    const wallMs = performance.now() - started;
    const testAccuracy = result.test.accuracy;
    return {
      request,
      mnistLoadMs,
      wallMs,
      epochsRun: result.best.epochsRun,
      refitEpochs: result.best.bestEpoch,
      testAccuracy,
      macroF1: result.test.macroF1,
      ...(options.quick ? {} : { met: testAccuracy >= DIGITS_TARGET.testAccuracy && wallMs <= DIGITS_TARGET.wallSeconds * 1000 }),
    };
  } finally {
    await root.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// transfer: squeezenet-fp32 embeddings of a generated folder dataset
// ---------------------------------------------------------------------------------------------

async function benchTransfer(options: TrainingBenchOptions, sizes: TrainingSizes, log: Logger): Promise<TransferResult> {
  const root = await tempRoot('transfer');
  const repository = await makeBenchRepository(BACKBONE, path.join(options.fixtures, 'models', BACKBONE)).catch(async (err: unknown) => {
    await root.remove();
    throw err;
  });
  try {
    const total = sizes.transferPerClass * Object.keys(TRANSFER_CLASSES).length;
    options.progress(`transfer: writing ${total} augmented images and importing them as a folder dataset`);
    const folder = path.join(root.path, 'images');
    const files = await writeAugmentedFolder({
      folder,
      classes: Object.fromEntries(Object.entries(TRANSFER_CLASSES).map(([label, file]) => [label, path.join(options.fixtures, 'images', file)])),
      perClass: sizes.transferPerClass,
      testPerClass: sizes.transferTestPerClass,
    });
    const data = path.join(root.path, 'data');
    const manifest = await new DatasetStore({ data }, log).importFolder(folder);
    if (manifest.images.length !== files.length) throw new Error(`transfer: the dataset kept ${manifest.images.length} of ${files.length} images: ${JSON.stringify(manifest.skipped)}`);

    // The backbone as a training worker finds it: the latest version in its model repository.
    const backbone: BackboneSpec = { ...squeezenetBackbone(path.join(repository.path, BACKBONE, '1', 'model.onnx')), name: BACKBONE };
    const threads = DEFAULT_TRAINING_OPTIONS.threads;
    const batchSize = DEFAULT_TRAINING_OPTIONS.embeddingBatchSize;
    const trainingOptions = { data, models: path.join(root.path, 'models'), threads, embeddingBatchSize: batchSize };

    options.progress(`transfer: baseline, sharp + onnxruntime loop over the same ${files.length} images (batch ${batchSize}, ${threads} thread(s))`);
    const images = await Promise.all(files.map((file) => readFile(file)));
    const baselineRun = await embedWithBaseline(backbone, threads, batchSize, images);
    const rows: TransferRow[] = [{ setup: 'raw: sharp decode + onnxruntime loop (same embedding graph)', images: images.length, featuresMs: baselineRun.ms, imagesPerSecond: baselineRun.imagesPerSecond }];

    const request: TrainingRequest = {
      datasetId: manifest.id,
      family: 'transfer',
      backbone: BACKBONE,
      head: 'linear',
      search: { mode: 'grid', params: ['learningRate=0.01,0.003'] },
      epochs: sizes.transferEpochs,
      split: { kind: 'auto', validationFraction: 0.25 },
      seed: 3,
      export: { name: 'pets' },
    };
    for (const setup of ['first run (empty embedding cache)', 'second run (embeddings cached)']) {
      options.progress(`transfer: ${setup}: runTraining, ${backbone.name} embeddings + linear head`);
      // A new extractor each time, as each training worker process has: the second run gains only from the disk cache.
      const extractor = new TimedExtractor(trainingOptions);
      let exportAt: number | undefined;
      const report = epochProgress(options.progress, 'transfer');
      const started = performance.now();
      try {
        const result = await runTraining(request, {
          options: trainingOptions,
          backbones: { [BACKBONE]: backbone },
          extractor,
          logger: log,
          onProgress: (event) => {
            if (event.phase === 'export') exportAt = performance.now();
            report(event);
          },
        });
        const ended = performance.now();
        const timing = extractor.timings[0] as ExtractionTiming;
        exportAt ??= ended;
        rows.push({
          setup,
          images: timing.rows,
          cacheHits: timing.cacheHits,
          featuresMs: timing.ms,
          ...(timing.cacheHits < timing.rows ? { imagesPerSecond: timing.imagesPerSecond, ratioToRaw: timing.imagesPerSecond / baselineRun.imagesPerSecond } : {}),
          headMs: exportAt - timing.endedAt,
          exportMs: ended - exportAt,
          totalMs: ended - started,
          testAccuracy: result.test.accuracy,
        });
      } finally {
        await extractor.close();
      }
    }
    const second = rows[2]!;
    if (second.cacheHits !== second.images) throw new Error(`transfer: the second run found ${String(second.cacheHits)} of ${second.images} embeddings in the cache`);

    // The baseline must compute what the extractor computes, or its speed means nothing.
    const cacheDir = path.join(data, 'features', await FeatureExtractor.backboneKey(backbone));
    const cacheFiles = (await readdir(cacheDir)).filter((f) => f.endsWith('.f32')).length;
    const embeddingRelativeDiff = await compareWithCache(cacheDir, images.slice(0, batchSize), baselineRun.first);
    if (!(embeddingRelativeDiff < 1e-3)) throw new Error(`transfer: baseline embeddings differ from the extractor's by ${embeddingRelativeDiff}`);
    return {
      backbone: BACKBONE,
      threads,
      batchSize,
      classes: manifest.classes,
      trainImages: manifest.images.filter((i) => i.split === 'train').length,
      testImages: manifest.images.filter((i) => i.split === 'test').length,
      request,
      rows,
      embeddingRelativeDiff,
      cacheFiles,
    };
  } finally {
    await repository.remove();
    await root.remove();
  }
}

async function embedWithBaseline(
  backbone: BackboneSpec,
  threads: number,
  batchSize: number,
  images: Buffer[],
): Promise<{ ms: number; imagesPerSecond: number; first: { data: Float32Array; dim: number } }> {
  const baseline = await EmbeddingBaseline.load({ backbone, threads });
  try {
    // Timed like the extractor's rate: from after the session exists, first (cold) run included.
    const started = performance.now();
    let first: { data: Float32Array; dim: number } | undefined;
    // The next batch decodes while this one runs, as in the extractor: otherwise "x raw" would count
    // the extractor's pipelining as if it were the cost of the cluster's code.
    let pending: Promise<Float32Array> | undefined = images.length > 0 ? baseline.decode(images.slice(0, batchSize)) : undefined;
    for (let start = 0; start < images.length; start += batchSize) {
      const input = await pending!;
      pending = start + batchSize < images.length ? baseline.decode(images.slice(start + batchSize, start + 2 * batchSize)) : undefined;
      const out = await baseline.run(input, Math.min(batchSize, images.length - start));
      first ??= out;
    }
    const ms = performance.now() - started;
    return { ms, imagesPerSecond: images.length / (ms / 1000), first: first! };
  } finally {
    await baseline.release();
  }
}

/** Largest |baseline - cached| over the largest |cached|, for the images of the baseline's first batch. */
async function compareWithCache(cacheDir: string, images: Buffer[], baseline: { data: Float32Array; dim: number }): Promise<number> {
  let maxDiff = 0;
  let maxValue = 0;
  for (const [n, bytes] of images.entries()) {
    const buf = await readFile(path.join(cacheDir, `${createHash('sha256').update(bytes).digest('hex')}.f32`));
    const cached = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    if (cached.length !== baseline.dim) throw new Error(`transfer: cached embedding has ${cached.length} values, baseline ${baseline.dim}`);
    for (let i = 0; i < cached.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(cached[i]! - baseline.data[n * baseline.dim + i]!));
      maxValue = Math.max(maxValue, Math.abs(cached[i]!));
    }
  }
  return maxDiff / Math.max(maxValue, 1e-12);
}

// ---------------------------------------------------------------------------------------------
// grid: one `train` request, searched on 1 then 2 training worker processes
// ---------------------------------------------------------------------------------------------

async function benchGrid(options: TrainingBenchOptions, sizes: TrainingSizes): Promise<GridResult> {
  const request: TrainHeader = {
    datasetId: 'mnist',
    family: 'mlp',
    // patience = epochs: no early stopping, so every run does the same work.
    params: { hidden: sizes.gridHidden, patience: sizes.gridEpochs },
    epochs: sizes.gridEpochs,
    search: { mode: 'grid', params: GRID_SEARCH },
    seed: 1,
  };
  const runs = expandSearch({ mode: 'grid', params: GRID_SEARCH }, 1).length;
  // What the worker processes will use: the defaults unless the environment (ZERVE_RUN_CONCURRENCY, ...) says otherwise.
  const { runConcurrency, runCapacity } = resolveOptions(DEFAULT_TRAINING_WORKER_OPTIONS, {}, CHILD_ENV);
  const most = Math.max(...GRID_WORKERS);
  if (runConcurrency < most * runCapacity) {
    options.progress(`grid: warning: runConcurrency ${runConcurrency} < ${most} workers x runCapacity ${runCapacity}: some workers will sit idle`);
  }
  const rows: GridRow[] = [];
  for (const workers of GRID_WORKERS) rows.push(await gridOnce(options, request, runs, workers));
  const one = rows[0]!;
  for (const row of rows) row.ratioToOneWorker = row.wallMs / one.wallMs;
  const ratio = rows.at(-1)!.ratioToOneWorker!;
  return {
    request,
    runs,
    runConcurrency,
    runCapacity,
    rows,
    ratio,
    target: GRID_TARGET_RATIO,
    ...(options.quick ? {} : { met: ratio <= GRID_TARGET_RATIO }),
  };
}

/**
 * One setup on fresh processes and a fresh data folder (shared by its workers, as `zerve up` does),
 * so both setups start cold: every worker process parses mnist as it starts (before it registers, not
 * timed) and lays out its features on its first request, the orchestrator before it fans out, the
 * others on their first `train.run`.
 */
async function gridOnce(options: TrainingBenchOptions, request: TrainHeader, runs: number, workers: number): Promise<GridRow> {
  const label = `grid, ${workers} worker(s)`;
  const root = await tempRoot('grid');
  try {
    const cluster = await BenchCluster.start();
    const client = new ZerveClient({ broker: cluster.frontend });
    try {
      options.progress(`${label}: starting ${workers} training worker process(es) on a broker process`);
      // --broker, as `zerve up` passes it, so the `train` handler fans its search out as `train.run` over every worker.
      const workerArgs = ['training', '--broker', cluster.frontend, '--data', path.join(root.path, 'data'), '--models', path.join(root.path, 'models')];
      const children = await cluster.addWorkers(workerArgs, workers, TRAIN_RUN_SERVICE);
      options.progress(`${label}: train, ${runs} runs of ${String(request.epochs)} epochs, then the refit`);
      const lastEpochAt = new Map<number, number>();
      let featuresAt: number | undefined;
      let runsDone = 0;
      const started = performance.now();
      const onProgress = (message: TrainProgressMessage) => {
        const now = performance.now();
        if (message.type === 'features' && message.done === message.total) featuresAt = now;
        if (message.type !== 'epoch') return;
        if (message.phase === 'run') {
          lastEpochAt.set(message.run, now);
          if (message.epoch === message.epochs) {
            runsDone++;
            options.progress(`${label}: run ${message.run} done (${runsDone}/${runs}), validation accuracy ${message.valAccuracy.toFixed(3)}`);
          }
        } else if (message.epoch === 1) {
          options.progress(`${label}: refitting the best run`);
        }
      };
      const pids = Object.fromEntries([['bench', process.pid], ['broker', cluster.broker.pid], ...children.map((c, i) => [`worker${i + 1}`, c.pid] as const)]);
      const { result, cpuUs } = await withProcessCpu(pids, (): Promise<TrainResultMessage> => requestTraining(client, request, { onProgress }));
      const ended = performance.now();
      const workerCpuUs = children.map((_, i) => cpuUs[`worker${i + 1}`]);
      const workerCpuMs = workerCpuUs.every((us) => us !== undefined) ? workerCpuUs.reduce((sum: number, us) => sum + us! / 1000, 0) : undefined;
      const searchStart = featuresAt ?? started;
      const searchEnd = Math.max(...lastEpochAt.values());
      const searchMs = searchEnd - searchStart;
      const runsByPid: Record<string, number> = {};
      for (const r of result.runs) runsByPid[String(r.pid ?? '?')] = (runsByPid[String(r.pid ?? '?')] ?? 0) + 1;
      return {
        workers,
        wallMs: ended - started,
        prepareMs: searchStart - started,
        searchMs,
        finishMs: ended - searchEnd,
        runsByPid,
        meanRunsAtOnce: result.runs.reduce((sum, r) => sum + r.elapsedMs, 0) / Math.max(searchMs, 1),
        ...(workerCpuMs !== undefined ? { workerCpuMs, coresBusy: workerCpuMs / (ended - started) } : {}),
        ...(cpuUs.bench !== undefined && cpuUs.broker !== undefined ? { benchCpuMs: (cpuUs.bench + cpuUs.broker) / 1000 } : {}),
        testAccuracy: result.test.accuracy,
      };
    } finally {
      await client.close();
      await cluster.close();
    }
  } finally {
    await root.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const seconds = (ms: number | undefined) => fixed(ms === undefined ? undefined : ms / 1000, 1);
const verdict = (met: boolean | undefined) => (met === undefined ? 'not judged (quick mode)' : met ? 'met' : 'NOT met');

/** Lines and tables of the training section, in the benchmark's report style. */
export function trainingReport(section: TrainingSection): ReportPart[] {
  const { digits, transfer, grid } = section;
  const out: ReportPart[] = ['Training: each entry alone on the machine, after the other sections'];
  if (section.quick) out.push('Quick mode: reduced sizes (npm run bench -- training --quick); the targets are not judged.');

  out.push('');
  out.push(
    new Heading(
    `digits: DIGITS_REQUEST (the request npm start sends: mnist, MLP, ${String(digits.request.epochs)} epochs, shift augmentation) through runTraining in this process; ` +
      `wall = features + run + refit + test + export (parsing mnist, ${Math.round(digits.mnistLoadMs)} ms, happens before a worker registers and is not counted)`,
    ),
  );
  const digitsTable = new ReportTable(['request', 'epochs run', 'refit epochs', 'wall s', 'test accuracy', 'macro F1', 'target', 'verdict'], ['left', 'right', 'right', 'right', 'right', 'right', 'left', 'left']);
  digitsTable.push([
    'DIGITS_REQUEST',
    digits.epochsRun,
    digits.refitEpochs,
    seconds(digits.wallMs),
    fixed(digits.testAccuracy, 4),
    fixed(digits.macroF1, 4),
    `accuracy >= ${DIGITS_TARGET.testAccuracy} in <= ${DIGITS_TARGET.wallSeconds} s`,
    verdict(digits.met),
  ]);
  out.push(digitsTable);

  out.push('');
  out.push(
    new Heading(
    `transfer: ${transfer.backbone} embeddings (${transfer.threads} onnxruntime thread(s), batch ${transfer.batchSize}, the training defaults) of ${transfer.trainImages} + ${transfer.testImages} test ` +
      `augmented photos (${transfer.classes.join(', ')}), linear head, grid of 2 learning rates, ${String(transfer.request.epochs)} epochs; ` +
      `raw = sharp decode + onnxruntime session.run loop in this process over the same images (embeddings equal to the extractor's within ${transfer.embeddingRelativeDiff.toExponential(1)}); ` +
      'the test photos are other variants of the same two photos, near-duplicates of the training ones, so "near-duplicate test accuracy" shows the pipeline works, not how well it generalises',
    ),
  );
  const transferTable = new ReportTable(['setup', 'images', 'cache hits', 'features s', 'embedding images/s', 'x raw', 'head training s', 'export s', 'total s', 'near-duplicate test accuracy']);
  for (const row of transfer.rows) {
    transferTable.push([
      row.setup,
      row.images,
      row.cacheHits ?? '-',
      fixed(row.featuresMs / 1000, 2),
      fixed(row.imagesPerSecond),
      fixed(row.ratioToRaw, 2),
      fixed(row.headMs === undefined ? undefined : row.headMs / 1000, 2),
      fixed(row.exportMs === undefined ? undefined : row.exportMs / 1000, 2),
      fixed(row.totalMs === undefined ? undefined : row.totalMs / 1000, 2),
      fixed(row.testAccuracy, 3),
    ]);
  }
  out.push(transferTable);

  out.push('');
  out.push(
    new Heading(
    `grid: one train request (mnist, MLP ${String((grid.request.params as Record<string, unknown>).hidden)} hidden, ${String(grid.request.epochs)} epochs, no early stopping), ` +
      `a grid of ${grid.runs} (${GRID_SEARCH.join(' x ')}) fanned out as train.run through a zerve broker process to zerve worker training processes ` +
      `(runConcurrency ${grid.runConcurrency}, runCapacity ${grid.runCapacity}); fresh processes and data folder per setup, so each worker prepares mnist once, cold`,
    ),
  );
  const gridTable = new ReportTable(['setup', 'wall s', 'prepare s', 'search s', 'refit + test s', 'runs per worker', 'mean runs at once', 'worker CPU s', 'cores busy', 'bench CPU s', 'x 1 worker', 'test accuracy']);
  for (const row of grid.rows) {
    gridTable.push([
      `${row.workers} training worker${row.workers === 1 ? '' : 's'}`,
      seconds(row.wallMs),
      seconds(row.prepareMs),
      seconds(row.searchMs),
      seconds(row.finishMs),
      Object.values(row.runsByPid).join(' + '),
      fixed(row.meanRunsAtOnce, 2),
      seconds(row.workerCpuMs),
      fixed(row.coresBusy, 2),
      seconds(row.benchCpuMs),
      fixed(row.ratioToOneWorker, 2),
      fixed(row.testAccuracy, 4),
    ]);
  }
  out.push(gridTable);

  out.push('');
  const first = transfer.rows[1];
  const cached = transfer.rows[2];
  out.push(
    `digits: test accuracy ${fixed(digits.testAccuracy, 4)} in ${seconds(digits.wallMs)} s; target >= ${DIGITS_TARGET.testAccuracy} in <= ${DIGITS_TARGET.wallSeconds} s ${verdict(digits.met)}.`,
  );
  out.push(
    `transfer: embeddings at ${fixed(first?.imagesPerSecond)} images/s, ${fixed(first?.ratioToRaw, 2)}x the raw loop's ${fixed(transfer.rows[0]?.imagesPerSecond)}; ` +
      `head trained in ${fixed((first?.headMs ?? 0) / 1000, 2)} s; with the cache the whole training took ${fixed((cached?.totalMs ?? 0) / 1000, 2)} s instead of ${fixed((first?.totalMs ?? 0) / 1000, 2)} s.`,
  );
  out.push(
    `grid: ${grid.runs} runs on 2 workers took ${fixed(grid.ratio, 2)}x the time on 1 worker (${seconds(grid.rows.at(-1)?.wallMs)} s vs ${seconds(grid.rows[0]?.wallMs)} s); target <= ${grid.target}x ${verdict(grid.met)}.`,
  );
  return out;
}

/** `npm run bench -- training`: run last, on a machine the other sections no longer load. */
export const trainingSection: BenchSection<TrainingSection> = {
  name: 'training',
  run: (c) => benchTraining({ fixtures: c.fixtures, quick: c.quick, progress: c.progress }),
  report: (section) => trainingReport(section),
};
