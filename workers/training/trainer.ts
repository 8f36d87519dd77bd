/**
 * Training orchestration without transport: `prepareTraining` (dataset, features, splits),
 * `trainOne` (one configuration: a pure, deterministic function of the prepared data and its
 * config, so the lead can fan runs out across workers), and `runTraining` (search, pick the best
 * by validation accuracy then loss, refit on train + validation for the best run's epoch count,
 * evaluate on the test split, export).
 *
 * @example
 * const result = await runTraining(
 *   { datasetId: 'mnist', family: 'mlp', search: { mode: 'grid', params: ['learningRate=0.001,0.003'] } },
 *   { options: { data: './data', models: './models' }, signal, onProgress: (e) => log.info(e) },
 * );
 */
import { DEFAULT_TRAINING_OPTIONS, type TrainingOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import type { TrainEpoch } from '../../shared/training.ts';
import type { ParamSet, ParamValue, TrainingRequest } from '../../shared/training-request.ts';
import type { BackboneSpec } from './backbone.ts';
import { DatasetStore, type Dataset } from './dataset-store.ts';
import { FeatureExtractor, type FeatureMatrix, type FeatureSpec } from './features.ts';
import { argmaxRows, classificationReport, type ClassificationReport } from './metrics.ts';
import { DEFAULT_MLP_CONFIG, MlpClassifier, type FitOptions, type LabeledMatrix, type MlpConfig } from './mlp.ts';
import { exportModel, type AddVersion, type ExportedModel } from './onnx-export.ts';
import { expandSearch } from '../../shared/search-space.ts';
import { explicitTestSplit, stratifiedHoldout, stratifiedKFold } from './splits.ts';

/** One configuration: the request's fixed params overlaid with one search point. */
export interface RunConfig {
  params: ParamSet;
  mlp: MlpConfig;
}

export interface RunResult {
  params: ParamSet;
  valAccuracy: number;
  valLoss: number;
  /** Epoch count to refit with (mean best epoch over folds). */
  bestEpoch: number;
  epochsRun: number;
  elapsedMs: number;
}

export type TrainingProgress =
  | { phase: 'features'; done: number; total: number }
  // The wire's epoch message without what only the training worker knows.
  | Omit<TrainEpoch, 'type' | 'experimentId' | 'runId'>
  | { phase: 'export' };

export interface TrainingContext {
  options?: Partial<TrainingOptions>;
  signal?: AbortSignal;
  onProgress?: (event: TrainingProgress) => void;
  /** Backbones the transfer family may use, by name. */
  backbones?: Record<string, BackboneSpec>;
  logger?: Logger;
  /** Shared extractor (its backbone sessions are reused); closed by the caller. */
  extractor?: FeatureExtractor;
  /** Writes the exported version (the training worker publishes it to the cluster). @defaultValue addModelVersion */
  addVersion?: AddVersion;
}

export interface PreparedTraining {
  request: TrainingRequest;
  dataset: Dataset;
  featureSpec: FeatureSpec;
  features: FeatureMatrix;
  /** Rows for model choice (train + validation) and the held-out test rows. */
  trainRows: number[];
  testRows: number[];
  /** Validation folds over `trainRows` (one for a holdout). */
  folds: { train: number[]; val: number[] }[];
  seed: number;
}

export interface TrainingResult {
  datasetId: string;
  classes: string[];
  runs: RunResult[];
  best: RunResult;
  /** Metrics of the refitted model on the test split. */
  test: ClassificationReport;
  /** Top-1 predictions of the refitted model on `testRows`. */
  testPredictions: Int32Array;
  testRows: number[];
  model: MlpClassifier;
  featureSpec: FeatureSpec;
  featureImagesPerSecond: number;
  exported?: ExportedModel;
  elapsedMs: number;
}

const PARAM_KEYS = ['learningRate', 'l2', 'batchSize', 'hidden', 'optimizer', 'momentum', 'patience', 'epochs', 'lrDecay'] as const;

function parseHidden(value: ParamValue): number[] {
  if (typeof value === 'number') return value === 0 ? [] : [value];
  if (value === 'none' || value === '' || value === '0') return [];
  const sizes = value.split('x').map(Number);
  if (sizes.some((s) => !Number.isInteger(s) || s < 1 || s > 4096)) throw new ZerveError('BAD_REQUEST', `hidden must be like 128 or 256x64 or none; got ${value}`);
  return sizes;
}

/** Resolves a run's MLP config from the request and one search point. */
export function runConfigFor(request: TrainingRequest, point: ParamSet): RunConfig {
  const params: ParamSet = { ...request.params, ...point };
  for (const key of Object.keys(params)) {
    if (!(PARAM_KEYS as readonly string[]).includes(key)) throw new ZerveError('BAD_REQUEST', `unknown hyperparameter ${key} (known: ${PARAM_KEYS.join(', ')})`);
  }
  const transfer = request.family === 'transfer';
  const num = (key: string, fallback: number): number => {
    const v = params[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ZerveError('BAD_REQUEST', `${key} must be a number`);
    return v;
  };
  let hiddenLayers = transfer ? (request.head === 'mlp' ? [128] : []) : DEFAULT_MLP_CONFIG.hiddenLayers;
  if (params.hidden !== undefined) hiddenLayers = parseHidden(params.hidden);
  const optimizer = params.optimizer ?? 'adam';
  if (optimizer !== 'adam' && optimizer !== 'sgd') throw new ZerveError('BAD_REQUEST', 'optimizer must be adam or sgd');
  const mlp: MlpConfig = {
    hiddenLayers,
    optimizer,
    learningRate: num('learningRate', optimizer === 'sgd' ? 0.01 : 0.001),
    momentum: num('momentum', 0.9),
    l2: num('l2', DEFAULT_MLP_CONFIG.l2),
    batchSize: Math.round(num('batchSize', DEFAULT_MLP_CONFIG.batchSize)),
    epochs: Math.round(num('epochs', request.epochs ?? DEFAULT_MLP_CONFIG.epochs)),
    patience: Math.round(num('patience', DEFAULT_MLP_CONFIG.patience)),
    lrDecay: num('lrDecay', DEFAULT_MLP_CONFIG.lrDecay),
    standardize: true,
    seed: request.seed ?? 1,
  };
  return { params, mlp };
}

function gather(features: FeatureMatrix, labels: Int32Array, rows: number[]): LabeledMatrix {
  const { cols } = features;
  const x = new Float32Array(rows.length * cols);
  const y = new Int32Array(rows.length);
  rows.forEach((row, i) => {
    x.set(features.data.subarray(row * cols, (row + 1) * cols), i * cols);
    y[i] = labels[row];
  });
  return { x, y, rows: rows.length, cols };
}

/** Opens the dataset, computes features and splits. */
export async function prepareTraining(request: TrainingRequest, context: TrainingContext = {}): Promise<PreparedTraining> {
  const options = { ...DEFAULT_TRAINING_OPTIONS, ...context.options };
  const seed = request.seed ?? 1;
  const dataset = await new DatasetStore(options, context.logger ?? rootLogger).open(request.datasetId);
  let featureSpec: FeatureSpec;
  if (request.family === 'mlp') {
    featureSpec = { kind: 'pixels', ...(request.pixels ?? { width: 28, height: 28, channels: 1 }) };
  } else if (request.family === 'transfer') {
    const backbone = request.backbone === undefined ? undefined : context.backbones?.[request.backbone];
    if (!backbone) throw new ZerveError('BAD_REQUEST', `unknown backbone ${String(request.backbone)}`, { details: { known: Object.keys(context.backbones ?? {}) } });
    featureSpec = { kind: 'embedding', backbone };
  } else {
    throw new ZerveError('BAD_REQUEST', `unknown family ${String(request.family)}`);
  }
  const extractor = context.extractor ?? new FeatureExtractor(options);
  let features: FeatureMatrix;
  try {
    features = await extractor.extract(dataset, featureSpec, {
      ...(context.signal ? { signal: context.signal } : {}),
      onProgress: (done, total) => context.onProgress?.({ phase: 'features', done, total }),
      ...(context.logger ? { logger: context.logger } : {}),
    });
  } finally {
    if (!context.extractor) await extractor.close();
  }
  const split = request.split ?? { kind: 'auto' };
  const useExplicit = split.kind === 'explicit' || (split.kind === 'auto' && dataset.explicitTest);
  const outer = useExplicit ? explicitTestSplit(dataset.splits) : stratifiedHoldout(dataset.labels, split.testFraction ?? 0.2, seed);
  const folds = split.folds
    ? stratifiedKFold(dataset.labels, split.folds, seed + 1, outer.train).map((f) => ({ train: f.train, val: f.test }))
    : [stratifiedHoldout(dataset.labels, split.validationFraction ?? 0.1, seed + 1, outer.train)].map((h) => ({ train: h.train, val: h.test }));
  return { request, dataset, featureSpec, features, trainRows: outer.train, testRows: outer.test, folds, seed };
}

function fitOptionsFor(prepared: PreparedTraining, options: TrainingOptions): Pick<FitOptions, 'augmentShift' | 'yieldIntervalMs'> {
  const shift = prepared.request.augmentShiftPx ?? 0;
  const spec = prepared.featureSpec;
  return {
    yieldIntervalMs: options.yieldIntervalMs,
    ...(shift > 0 && spec.kind === 'pixels' ? { augmentShift: { width: spec.width, height: spec.height, channels: spec.channels, maxShiftPx: shift } } : {}),
  };
}

/**
 * Trains one configuration on every validation fold and reports the mean validation metrics.
 * Deterministic: the same prepared data and config give the same numbers.
 */
export async function trainOne(
  prepared: PreparedTraining,
  config: RunConfig,
  run: { signal?: AbortSignal; onEpoch?: FitOptions['onEpoch']; options?: Partial<TrainingOptions> } = {},
): Promise<RunResult> {
  const options = { ...DEFAULT_TRAINING_OPTIONS, ...run.options };
  const started = performance.now();
  let valAccuracy = 0;
  let valLoss = 0;
  let bestEpoch = 0;
  let epochsRun = 0;
  for (const fold of prepared.folds) {
    const mlp = new MlpClassifier(prepared.features.cols, prepared.dataset.classes.length, config.mlp);
    const fit = await mlp.fit(gather(prepared.features, prepared.dataset.labels, fold.train), gather(prepared.features, prepared.dataset.labels, fold.val), {
      ...fitOptionsFor(prepared, options),
      ...(run.signal ? { signal: run.signal } : {}),
      ...(run.onEpoch ? { onEpoch: run.onEpoch } : {}),
    });
    const best = fit.history[fit.bestEpoch - 1];
    valAccuracy += best.valAccuracy / prepared.folds.length;
    valLoss += best.valLoss / prepared.folds.length;
    bestEpoch += fit.bestEpoch / prepared.folds.length;
    epochsRun += fit.epochsRun;
  }
  return { params: config.params, valAccuracy, valLoss, bestEpoch: Math.max(1, Math.round(bestEpoch)), epochsRun, elapsedMs: performance.now() - started };
}

/** Better run first: higher validation accuracy, then lower validation loss, then earlier. */
export function compareRuns(a: RunResult, b: RunResult): number {
  if (a.valAccuracy !== b.valAccuracy) return b.valAccuracy - a.valAccuracy;
  return a.valLoss - b.valLoss;
}

/** Runs the whole search, refits the best configuration, evaluates it and optionally exports it. */
export async function runTraining(request: TrainingRequest, context: TrainingContext = {}): Promise<TrainingResult> {
  const started = performance.now();
  const options = { ...DEFAULT_TRAINING_OPTIONS, ...context.options };
  const log = (context.logger ?? rootLogger).child({ component: 'trainer', datasetId: request.datasetId });
  const prepared = await prepareTraining(request, context);
  const points = expandSearch(request.search, prepared.seed);
  const configs = points.map((point) => runConfigFor(request, point));
  const runs: RunResult[] = [];
  const totalEpochs = configs.reduce((n, c) => n + c.mlp.epochs * prepared.folds.length, 0) + (configs[0]?.mlp.epochs ?? 0);
  let epochsDone = 0;
  const progressFor = (phase: 'run' | 'refit', index: number, config: RunConfig) => (epoch: number, p: { loss: number; valAccuracy: number; valLoss: number }) => {
    epochsDone++;
    const elapsedMs = performance.now() - started;
    // Upper bound: early stopping usually ends runs sooner.
    const etaMs = (elapsedMs / epochsDone) * Math.max(totalEpochs - epochsDone, 0);
    context.onProgress?.({
      phase,
      run: index + 1,
      runs: configs.length,
      params: config.params,
      epoch,
      epochs: config.mlp.epochs,
      loss: p.loss,
      valAccuracy: p.valAccuracy,
      valLoss: p.valLoss,
      elapsedMs,
      etaMs,
    });
  };
  for (const [i, config] of configs.entries()) {
    const result = await trainOne(prepared, config, {
      ...(context.signal ? { signal: context.signal } : {}),
      onEpoch: progressFor('run', i, config),
      options,
    });
    log.info({ run: i + 1, runs: configs.length, params: result.params, valAccuracy: result.valAccuracy, bestEpoch: result.bestEpoch }, 'run done');
    runs.push(result);
  }
  const finished = await finishTraining(prepared, configs, runs, {
    ...context,
    onRefitEpoch: (bestIndex, refitConfig) => progressFor('refit', bestIndex, refitConfig),
  });
  const elapsedMs = performance.now() - started;
  log.info({ testAccuracy: finished.test.accuracy, best: finished.best.params, runs: runs.length, ms: Math.round(elapsedMs) }, 'training done');
  return { ...finished, elapsedMs };
}

/**
 * Picks the best of `runs` (one per entry of `configs`), refits it on train + validation for its
 * best epoch count, evaluates it on the test split and exports it when the request asks. Used by
 * `runTraining` and by the training worker, whose runs come back from other workers.
 */
export async function finishTraining(
  prepared: PreparedTraining,
  configs: RunConfig[],
  runs: RunResult[],
  context: TrainingContext & { onRefitEpoch?: (bestIndex: number, config: RunConfig) => FitOptions['onEpoch'] } = {},
): Promise<Omit<TrainingResult, 'elapsedMs'>> {
  if (runs.length === 0 || runs.length !== configs.length) throw new ZerveError('INTERNAL', 'finishTraining needs one result per configuration');
  const options = { ...DEFAULT_TRAINING_OPTIONS, ...context.options };
  const request = prepared.request;
  const bestIndex = runs.reduce((best, r, i) => (compareRuns(r, runs[best]) < 0 ? i : best), 0);
  const best = runs[bestIndex];
  // Refit on train + validation for the epochs that were best, with no early stopping.
  const refitConfig: RunConfig = { params: best.params, mlp: { ...configs[bestIndex].mlp, epochs: best.bestEpoch } };
  const model = new MlpClassifier(prepared.features.cols, prepared.dataset.classes.length, refitConfig.mlp);
  await model.fit(gather(prepared.features, prepared.dataset.labels, prepared.trainRows), undefined, {
    ...fitOptionsFor(prepared, options),
    ...(context.signal ? { signal: context.signal } : {}),
    ...(context.onRefitEpoch ? { onEpoch: context.onRefitEpoch(bestIndex, refitConfig) } : {}),
  });
  const test = gather(prepared.features, prepared.dataset.labels, prepared.testRows);
  const proba = await model.predictProba(test.x, test.rows, options.yieldIntervalMs);
  const classes = prepared.dataset.classes.length;
  const testPredictions = argmaxRows(proba, test.rows, classes);
  const report = classificationReport(test.y, testPredictions, classes, proba);
  let exported: ExportedModel | undefined;
  if (request.export) {
    context.onProgress?.({ phase: 'export' });
    exported = await exportModel({
      mlp: model,
      features: prepared.featureSpec,
      classes: prepared.dataset.classes,
      models: options.models,
      name: request.export.name,
      ...(context.addVersion ? { addVersion: context.addVersion } : {}),
      ...(request.export.description !== undefined ? { description: request.export.description } : {}),
    });
  }
  return {
    datasetId: request.datasetId,
    classes: prepared.dataset.classes,
    runs,
    best,
    test: report,
    testPredictions,
    testRows: prepared.testRows,
    model,
    featureSpec: prepared.featureSpec,
    featureImagesPerSecond: prepared.features.imagesPerSecond,
    ...(exported ? { exported } : {}),
  };
}
