/**
 * The training worker process kind (`zerve worker training`). Three broker registrations, so one
 * kind of work never starves another:
 * - `train` (capacity 1 by default): orchestrates an experiment: prepares the data, runs every
 *   search combination (fanned out as `train.run` through the broker when `broker` is set, so all
 *   training workers on all hosts share a search; else here), refits the best, evaluates, exports,
 *   records everything in the run store, and streams progress as PARTIAL replies.
 * - `train.run` (capacity `runCapacity`): one combination, a pure function of (request, point).
 * - control (`datasets.add|list|get`, `train.cancel.<this worker>`, and `datasets.fetch.<id>` per
 *   dataset stored here): answered at once, even while training. A `train` or `train.run` for a
 *   dataset only another worker holds fetches it first (DatasetTransfer).
 * Message bodies: shared/training.ts.
 */
import { randomBytes } from 'node:crypto';
import { ZerveClient } from '../../shared/client.ts';
import { DEFAULT_TRAINING_WORKER_OPTIONS, type TrainingOptions, type TrainingWorkerOptions } from '../../shared/config.ts';
import { curveOptionsOf } from '../../shared/curve-socket-options.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { decodeHeader, decodeReply, encodeJson } from '../../shared/messages.ts';
import { basePerWorkerService, PER_WORKER_SERVICES, perWorkerService } from '../../shared/per-worker-services.ts';
import { HOSTNAME } from '../../shared/protocol.ts';
import {
  DATASETS_ADD,
  DATASETS_FETCH_PREFIX,
  DATASETS_GET,
  DATASETS_LIST,
  datasetFetchService,
  RUNS_GET,
  RUNS_LIST,
  TRAIN_CANCEL_PREFIX,
  TRAIN_RUN_SERVICE,
  TRAIN_SERVICE,
  type DatasetSummary,
  type TrainDatasetFetch,
  type TrainEpoch,
  type TrainProgressMessage,
  type TrainResultMessage,
  type TrainStarted,
} from '../../shared/training.ts';
import { METRICS } from '../../shared/metrics.ts';
import { ModelHolder } from '../inference/model-holder.ts';
import { WorkerConnection, type RequestContext } from '../worker-connection.ts';
import { WorkerMetrics } from '../worker-metrics.ts';
import type { BackboneSpec } from './backbone.ts';
import { BackboneRepository } from './backbone-repository.ts';
import { loadMnist, MNIST_DATASET_ID } from './builtin-mnist.ts';
import { DatasetStore, type DatasetManifest } from './dataset-store.ts';
import { DatasetTransfer } from './dataset-transfer.ts';
import type { EpochProgress } from './mlp.ts';
import { Notifier, parseNotify, type NotifyTarget } from './notifier.ts';
import { RunStore } from './run-store.ts';
import { expandSearch } from '../../shared/search-space.ts';
import { checkTrainRequest, compileTrainChecks, type ParamSet, type TrainingRequest } from '../../shared/training-request.ts';
import { finishTraining, prepareTraining, runConfigFor, trainOne, type PreparedTraining, type RunConfig, type RunResult } from './trainer.ts';
import { isAlive } from '../../shared/process-alive.ts';

/** Frame 0 of `train.run`. */
interface TrainRunRequest {
  deadlineMs?: number;
  experimentId: string;
  runId: string;
  index: number;
  runs: number;
  request: TrainingRequest;
  point: ParamSet;
}

/** Frame 0 of `train.run` with its own fields checked (`request` is checked as any training request). */
function trainRunRequest(header: Record<string, unknown>): Omit<TrainRunRequest, 'request'> & { request: unknown } {
  const { experimentId, runId, index, runs, request, point } = header;
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (typeof runId !== 'string' || typeof experimentId !== 'string' || typeof index !== 'number' || typeof runs !== 'number' || !isObject(request) || !isObject(point)) {
    throw new ZerveError('BAD_REQUEST', 'train.run needs experimentId, runId, index, runs, request and point');
  }
  // The point's values are checked where they become a run's config (runConfigFor).
  return { experimentId, runId, index, runs, request, point: point as ParamSet };
}

type RunOutcome = RunResult & { host?: string; pid?: number };

const MAX_PREPARED = 2;

export class TrainingWorker {
  readonly options: TrainingWorkerOptions;
  /** Service that cancels this worker's experiments and runs. */
  readonly cancelService: string;
  /** `zerve_training_experiments_total{state}`; relayed to the broker by the `train` connection, which answers experiments. */
  readonly metrics = new WorkerMetrics();
  private readonly experiments = this.metrics.table(METRICS.trainingExperiments);
  private readonly log: Logger;
  private readonly train: WorkerConnection;
  private readonly run: WorkerConnection;
  private readonly control: WorkerConnection;
  private readonly datasets: DatasetStore;
  private readonly store: RunStore;
  private readonly notifier: Notifier;
  private readonly client?: ZerveClient;
  /** With a broker: holds this worker's exported models and publishes them to the cluster. */
  private readonly models?: ModelHolder;
  /** Fetches datasets this worker lacks from the workers holding them; serves ours. */
  private readonly transfer: DatasetTransfer;
  /** Control services besides one `datasets.fetch.<id>` per dataset held. */
  private readonly controlServices: string[];
  /** `<host>-<pid>-<tag>`: the suffix of this worker's own service names. */
  private readonly workerName: string;
  /** Datasets whose fetch service this worker offers. */
  private readonly offered = new Set<string>();
  private readonly active = new Map<string, AbortController>();
  /** Removes the listener `track` put on the connection's signal, which outlives every request. */
  private readonly detach = new Map<string, () => void>();
  /** Prepared data by request key: features are computed once per process for a whole search. */
  private readonly prepared = new Map<string, Promise<PreparedTraining>>();
  private readonly backboneRepository: BackboneRepository;
  private closing?: Promise<void>;

  constructor(options: Partial<TrainingWorkerOptions> = {}, log: Logger = rootLogger) {
    this.options = { ...DEFAULT_TRAINING_WORKER_OPTIONS, ...options };
    const { runConcurrency, runRetries, runCapacity } = this.options;
    if (!(Number.isInteger(runConcurrency) && runConcurrency >= 1 && Number.isInteger(runRetries) && runRetries >= 0 && Number.isInteger(runCapacity) && runCapacity >= 1)) {
      throw new ZerveError('BAD_REQUEST', 'runConcurrency and runCapacity must be positive integers, runRetries not negative');
    }
    this.log = log.child({ component: 'training-worker' });
    this.cancelService = `${TRAIN_CANCEL_PREFIX}${HOSTNAME}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.datasets = new DatasetStore(this.options, this.log);
    this.backboneRepository = new BackboneRepository(this.options.models);
    this.store = new RunStore(this.options.data);
    this.notifier = new Notifier(this.options, this.log);
    if (this.options.broker !== '') this.client = new ZerveClient({ broker: this.options.broker, ...curveOptionsOf(this.options) });
    if (this.options.broker !== '') this.models = new ModelHolder({ ...this.options, kind: 'models' }, this.log);
    const connection = { ...this.options, kind: 'training' };
    this.train = new WorkerConnection([TRAIN_SERVICE], (body, ctx) => this.handleTrain(body, ctx), connection, this.log);
    this.run = new WorkerConnection([TRAIN_RUN_SERVICE], (body, ctx) => this.handleRun(body, ctx), { ...connection, capacity: runCapacity }, this.log);
    this.transfer = new DatasetTransfer(this.datasets, this.client, {}, this.log);
    this.transfer.on('fetched', (id: string) => this.offerDatasets(id));
    // Names of its own too, so a client can ask every host's run store and datasets (shared/per-worker-services.ts).
    this.workerName = this.cancelService.slice(TRAIN_CANCEL_PREFIX.length);
    const own = PER_WORKER_SERVICES.map((base) => perWorkerService(base, this.workerName));
    this.controlServices = [DATASETS_ADD, DATASETS_LIST, DATASETS_GET, RUNS_LIST, RUNS_GET, ...own, this.cancelService];
    this.control = new WorkerConnection(
      this.controlServices,
      (body, ctx) => this.handleControl(body, ctx),
      { ...connection, capacity: 4 },
      this.log,
    );
    this.train.reportMetrics(this.metrics);
  }

  start(): void {
    const abandoned = this.store.failAbandoned(HOSTNAME, isAlive);
    if (abandoned.length > 0) this.log.warn({ experiments: abandoned }, 'marked failed: experiments whose training worker died');
    // Parsing the built-in digits and compiling the request checks block the event loop for a moment:
    // do it before heartbeats start.
    loadMnist();
    compileTrainChecks();
    this.control.start();
    this.offerStoredDatasets().catch((err: unknown) => this.log.error({ err }, 'cannot list the stored datasets'));
    this.run.start();
    this.train.start();
    this.models?.start().catch((err: unknown) => this.log.error({ err }, 'cannot offer the exported models'));
  }

  /** Stops taking work, finishes running requests, closes the store; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const results = await Promise.allSettled([this.train.close(), this.run.close()]);
      results.push(...(await Promise.allSettled([this.control.close(), this.client?.close(), this.notifier.close(), this.models?.close()])));
      this.store.close();
      for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'error while closing');
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------------
  // train: one experiment
  // -------------------------------------------------------------------------------------------

  private async handleTrain(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    const { deadlineMs, ...fields } = decodeHeader(body[0]);
    // notify stays here: it is neither recorded nor sent on with train.run.
    const { request, notify } = await this.validRequest(fields);
    const experimentId = `e${randomBytes(4).toString('hex')}`;
    const send = (message: TrainProgressMessage) => ctx.partial([encodeJson(message)]);
    const started = performance.now();
    const log = this.log.child({ experimentId, datasetId: request.datasetId });
    const seed = request.seed ?? 1;
    const points = expandSearch(request.search, seed);
    const configs = points.map((point) => runConfigFor(request, point));
    const runIds = points.map((_, i) => `${experimentId}-${i + 1}`);
    // Before the experiment is recorded: nothing may throw between that and the try that finishes it.
    const datasetName = this.store.datasetName(request.datasetId) ?? (request.datasetId === MNIST_DATASET_ID ? 'mnist' : null);
    const outcome = { experimentId, datasetId: request.datasetId, datasetName, name: request.export?.name ?? null, runs: points.length, startedAt: new Date() };
    this.store.startExperiment({ id: experimentId, ...(request.export ? { name: request.export.name } : {}), datasetId: request.datasetId, request, seed, host: HOSTNAME, pid: process.pid });
    const controller = this.track(experimentId, ctx.signal);
    send({
      type: 'started',
      experimentId,
      cancelService: this.cancelService,
      host: HOSTNAME,
      pid: process.pid,
      runs: points.length,
      family: request.family,
      ...(request.family === 'transfer' && request.backbone !== undefined ? { backbone: request.backbone } : {}),
    });
    log.info({ runs: points.length, fanOut: this.fansOut(points.length) }, 'experiment started');
    try {
      // Progress of a long fetch is logged (DatasetTransfer), not streamed: the CLI and the page take
      // any PARTIAL other than started and features for an epoch (TrainDatasetFetch is train.run's only).
      await this.transfer.ensure(request.datasetId, { signal: controller.signal });
      let lastFeatures = 0;
      const prepared = await this.prepare(request, controller.signal, (done, total) => {
        const now = performance.now();
        if (done === total || now - lastFeatures > 500) {
          lastFeatures = now;
          send({ type: 'features', experimentId, done, total });
        }
      });
      const folds = prepared.folds.length;
      const totalEpochs = configs.reduce((n, c) => n + c.mlp.epochs * folds, 0) + Math.max(...configs.map((c) => c.mlp.epochs));
      let epochsDone = 0;
      const onEpoch = (phase: 'run' | 'refit', index: number, params: ParamSet, epochs: number) => (epoch: number, p: EpochProgress) => {
        epochsDone++;
        const elapsedMs = performance.now() - started;
        // An upper bound: early stopping usually ends runs sooner.
        const etaMs = (elapsedMs / epochsDone) * Math.max(totalEpochs - epochsDone, 0);
        const runId = runIds[index];
        this.store.addEpoch(runId, { phase, epoch, loss: p.loss, valAccuracy: p.valAccuracy, valLoss: p.valLoss, elapsedMs: p.elapsedMs });
        const message: TrainEpoch = { type: 'epoch', experimentId, phase, run: index + 1, runs: configs.length, runId, params, epoch, epochs, loss: p.loss, valAccuracy: p.valAccuracy, valLoss: p.valLoss, elapsedMs, etaMs };
        send(message);
      };
      const runs = await this.runSearch(experimentId, request, prepared, points, configs, runIds, controller.signal, onEpoch, deadlineMs);
      const finished = await finishTraining(prepared, configs, runs, {
        options: this.trainingOptions(),
        signal: controller.signal,
        logger: log,
        ...(this.models ? { addVersion: (version) => this.models!.publish(version) } : {}),
        onRefitEpoch: (bestIndex, config) => onEpoch('refit', bestIndex, config.params, config.mlp.epochs),
      });
      const bestIndex = runs.indexOf(finished.best);
      const elapsedMs = performance.now() - started;
      const { confusion, accuracy, macroPrecision, macroRecall, macroF1, logLoss } = finished.test;
      const result: TrainResultMessage = {
        experimentId,
        datasetId: request.datasetId,
        classes: finished.classes,
        best: { runId: runIds[bestIndex], params: finished.best.params, valAccuracy: finished.best.valAccuracy, valLoss: finished.best.valLoss, bestEpoch: finished.best.bestEpoch },
        runs: runs.map((r, i) => ({ runId: runIds[i], params: r.params, valAccuracy: r.valAccuracy, valLoss: r.valLoss, bestEpoch: r.bestEpoch, epochsRun: r.epochsRun, elapsedMs: r.elapsedMs, ...(r.host ? { host: r.host } : {}), ...(r.pid ? { pid: r.pid } : {}) })),
        test: { accuracy, macroPrecision, macroRecall, macroF1, ...(logLoss !== undefined ? { logLoss } : {}), confusion },
        ...(finished.exported ? { model: { name: finished.exported.name, version: finished.exported.version } } : {}),
        elapsedMs,
      };
      this.experiments.child('succeeded').inc();
      this.store.finishExperiment(experimentId, {
        status: 'succeeded',
        durationMs: elapsedMs,
        bestRunId: runIds[bestIndex],
        test: { ...result.test, perClass: finished.test.perClass, classes: finished.classes },
        ...(result.model ? { modelName: result.model.name, modelVersion: result.model.version } : {}),
      });
      log.info({ testAccuracy: accuracy, best: finished.best.params, model: result.model, ms: Math.round(elapsedMs) }, 'experiment done');
      // In the background: a slow or dead webhook or SMTP server never delays the reply.
      void this.notifier.notify(notify, { ...outcome, durationMs: elapsedMs, result });
      return [encodeJson(result)];
    } catch (err) {
      const error = controller.signal.aborted ? abortError(controller.signal, err) : ZerveError.from(err);
      this.experiments.child(error.code === 'CANCELED' ? 'canceled' : 'failed').inc();
      this.store.finishExperiment(experimentId, { status: error.code === 'CANCELED' ? 'canceled' : 'failed', durationMs: performance.now() - started, error: `${error.code}: ${error.message}` });
      log.warn({ code: error.code, err: error.message }, 'experiment ended without a model');
      // A worker that stops hands the training back (WORKER_LOST): it is not over, so nobody is told yet.
      if (!stopping(controller.signal)) void this.notifier.notify(notify, { ...outcome, durationMs: performance.now() - started, error });
      throw error;
    } finally {
      this.untrack(experimentId);
    }
  }

  private fansOut(points: number): boolean {
    return this.client !== undefined && points > 1;
  }

  /** Every combination's result, in order: here one after another, or through `train.run` at `runConcurrency`. */
  private async runSearch(
    experimentId: string,
    request: TrainingRequest,
    prepared: PreparedTraining,
    points: ParamSet[],
    configs: RunConfig[],
    runIds: string[],
    signal: AbortSignal,
    onEpoch: (phase: 'run', index: number, params: ParamSet, epochs: number) => (epoch: number, p: EpochProgress) => void,
    deadlineMs: number | undefined,
  ): Promise<RunOutcome[]> {
    const results: RunOutcome[] = new Array(points.length);
    const runOne = async (i: number): Promise<void> => {
      this.store.startRun({ id: runIds[i], experimentId, index: i + 1, params: configs[i].params });
      const progress = onEpoch('run', i, configs[i].params, configs[i].mlp.epochs);
      const result = this.fansOut(points.length)
        ? await this.remoteRun({ ...(deadlineMs ? { deadlineMs } : {}), experimentId, runId: runIds[i], index: i + 1, runs: points.length, request, point: points[i] }, signal, progress)
        : { ...(await trainOne(prepared, configs[i], { signal, onEpoch: progress, options: this.trainingOptions() })), host: HOSTNAME, pid: process.pid };
      this.store.finishRun(runIds[i], { status: 'succeeded', valAccuracy: result.valAccuracy, valLoss: result.valLoss, bestEpoch: result.bestEpoch, epochsRun: result.epochsRun, durationMs: result.elapsedMs, ...(result.host ? { host: result.host } : {}) });
      results[i] = result;
    };
    if (!this.fansOut(points.length)) {
      for (let i = 0; i < points.length; i++) await runOne(i);
      return results;
    }
    let next = 0;
    const lanes = Array.from({ length: Math.min(this.options.runConcurrency, points.length) }, async () => {
      while (next < points.length && !signal.aborted) await runOne(next++);
    });
    // The first failure ends the search; the others are canceled through the shared signal.
    const settled = await Promise.allSettled(lanes);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    if (signal.aborted) throw new ZerveError('CANCELED', 'the training was canceled');
    return results;
  }

  /** One combination through the broker; cancels it remotely when `signal` aborts; retries WORKER_LOST. */
  private async remoteRun(run: TrainRunRequest, signal: AbortSignal, onEpoch: (epoch: number, p: EpochProgress) => void): Promise<RunOutcome> {
    const client = this.client!;
    for (let attempt = 0; ; attempt++) {
      let started: TrainStarted | undefined;
      const cancel = () => {
        if (started) client.requestJson(started.cancelService, [encodeJson({ experimentId: started.experimentId })], { timeoutMs: 5000 }).catch(() => undefined);
      };
      signal.addEventListener('abort', cancel, { once: true });
      try {
        for await (const chunk of client.stream(TRAIN_RUN_SERVICE, [encodeJson(run)], { timeoutMs: 10 * 60_000 })) {
          if (chunk.final) return decodeReply<RunOutcome>(chunk.body[0]);
          const message = decodeReply<TrainProgressMessage>(chunk.body[0]);
          if (message.type === 'started') {
            started = message;
            if (signal.aborted) cancel();
          } else if (message.type === 'epoch') {
            onEpoch(message.epoch, message);
          }
        }
        throw new ZerveError('INTERNAL', 'train.run ended without a FINAL');
      } catch (err) {
        const error = ZerveError.from(err);
        if (error.code === 'WORKER_LOST' && attempt < this.options.runRetries && !signal.aborted) {
          this.log.warn({ runId: run.runId, attempt: attempt + 1 }, 'run lost with its worker; sending it again');
          continue;
        }
        throw error;
      } finally {
        signal.removeEventListener('abort', cancel);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // train.run: one combination for another worker's experiment
  // -------------------------------------------------------------------------------------------

  private async handleRun(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    const run = trainRunRequest(decodeHeader(body[0]));
    const { request } = await this.validRequest(run.request);
    const controller = this.track(run.runId, ctx.signal);
    try {
      ctx.partial([encodeJson({ type: 'started', experimentId: run.runId, cancelService: this.cancelService, host: HOSTNAME, pid: process.pid } satisfies TrainStarted)]);
      // The PARTIALs also keep the orchestrator's wait for this run alive during a long fetch.
      await this.transfer.ensure(request.datasetId, {
        signal: controller.signal,
        onProgress: (p) => ctx.partial([encodeJson({ type: 'dataset', experimentId: run.experimentId, ...p } satisfies TrainDatasetFetch)]),
      });
      const prepared = await this.prepare(request, controller.signal);
      const config = runConfigFor(request, run.point);
      const result = await trainOne(prepared, config, {
        signal: controller.signal,
        options: this.trainingOptions(),
        onEpoch: (epoch, p) => {
          const message: TrainEpoch = { type: 'epoch', experimentId: run.experimentId, phase: 'run', run: run.index, runs: run.runs, runId: run.runId, params: config.params, epoch, epochs: config.mlp.epochs, loss: p.loss, valAccuracy: p.valAccuracy, valLoss: p.valLoss, elapsedMs: p.elapsedMs, etaMs: 0 };
          ctx.partial([encodeJson(message)]);
        },
      });
      return [encodeJson({ ...result, host: HOSTNAME, pid: process.pid })];
    } catch (err) {
      throw controller.signal.aborted ? abortError(controller.signal, err) : err;
    } finally {
      this.untrack(run.runId);
    }
  }

  // -------------------------------------------------------------------------------------------
  // datasets.* and train.cancel.*
  // -------------------------------------------------------------------------------------------

  private async handleControl(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    const base = basePerWorkerService(ctx.service, this.workerName);
    if (base) return this.handleControl(body, { ...ctx, service: base });
    switch (ctx.service) {
      case DATASETS_ADD: {
        const header = decodeHeader(body[0]);
        const archive = body[1];
        if (!archive || archive.length === 0) throw new ZerveError('BAD_DATASET', 'datasets.add needs the archive bytes (zip or tar.gz) as frame 2');
        if (header.name !== undefined && (typeof header.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(header.name))) {
          throw new ZerveError('BAD_REQUEST', 'name must be 1 to 64 letters, digits, dots, dashes or underscores');
        }
        const manifest = await this.datasets.importArchive(archive);
        this.offerDatasets(manifest.id);
        if (typeof header.name === 'string') this.store.nameDataset(manifest.id, header.name);
        this.log.info({ datasetId: manifest.id, name: header.name, images: manifest.images.length, skipped: manifest.skipped.length }, 'dataset added');
        return [encodeJson(this.summary(manifest))];
      }
      case DATASETS_LIST: {
        const ids = await this.datasets.list();
        const summaries = await Promise.all(ids.map(async (id) => this.summary(await this.datasets.manifest(id), false)));
        return [encodeJson(summaries)];
      }
      case DATASETS_GET: {
        const { id } = decodeHeader(body[0]);
        if (typeof id !== 'string') throw new ZerveError('BAD_REQUEST', 'datasets.get needs {"id"}');
        const manifest = await this.datasets.manifest(this.resolveDatasetId(id));
        // The built-in mnist lists 10,000 images; a summary is what anyone wants from it.
        return [encodeJson(manifest.id === MNIST_DATASET_ID ? this.summary(manifest) : { ...manifest, name: this.store.datasetName(manifest.id) })];
      }
      case RUNS_LIST: {
        const { limit = 50 } = decodeHeader(body[0]);
        if (!(Number.isInteger(limit) && (limit as number) >= 1 && (limit as number) <= 1000)) throw new ZerveError('BAD_REQUEST', 'limit must be an integer from 1 to 1000');
        return [encodeJson(this.store.summaries(limit as number))];
      }
      case RUNS_GET: {
        const { id } = decodeHeader(body[0]);
        if (typeof id !== 'string') throw new ZerveError('BAD_REQUEST', 'runs.get needs {"id"}');
        const found = this.store.detail(id);
        if (!found) throw new ZerveError('UNKNOWN_RUN', `no run or experiment ${id}`);
        return [encodeJson(found)];
      }
      case this.cancelService: {
        const { experimentId } = decodeHeader(body[0]);
        const controller = typeof experimentId === 'string' ? this.active.get(experimentId) : undefined;
        controller?.abort(new ZerveError('CANCELED', 'the training was canceled'));
        if (controller) this.log.info({ experimentId }, 'canceled');
        return [encodeJson({ canceled: controller !== undefined })];
      }
      default:
        if (ctx.service.startsWith(DATASETS_FETCH_PREFIX)) return this.transfer.serve(ctx.service.slice(DATASETS_FETCH_PREFIX.length), body);
        throw new ZerveError('UNKNOWN_SERVICE', `no service ${ctx.service} here`);
    }
  }

  private summary(manifest: DatasetManifest, withSkipped = true): DatasetSummary {
    const name = manifest.id === MNIST_DATASET_ID ? 'mnist' : this.store.datasetName(manifest.id);
    return {
      id: manifest.id,
      ...(name ? { name } : {}),
      source: manifest.source,
      classes: manifest.classes,
      counts: manifest.counts,
      images: manifest.images.length,
      skipped: withSkipped ? manifest.skipped : [],
      explicitTest: manifest.explicitTest,
    };
  }

  // -------------------------------------------------------------------------------------------

  private trainingOptions(): TrainingOptions {
    return this.options;
  }

  /** A dataset id, or the name a dataset was added under. */
  private resolveDatasetId(idOrName: string): string {
    if (idOrName === MNIST_DATASET_ID || /^[0-9a-f]{64}$/.test(idOrName)) return idOrName;
    const id = this.store.datasetByName(idOrName);
    if (!id) throw new ZerveError('UNKNOWN_DATASET', `no dataset ${idOrName}`);
    return id;
  }

  /** The header checked against the shared request schema, its dataset name resolved and its family settled. */
  private async validRequest(fields: unknown): Promise<{ request: TrainingRequest; notify?: NotifyTarget }> {
    const { notify: notifyField, ...checked } = checkTrainRequest(fields);
    const datasetId = this.resolveDatasetId(checked.datasetId);
    const chosen = checked.family ?? (checked.backbone !== undefined ? 'transfer' : undefined);
    // Photos (any uploaded dataset) default to transfer learning when a backbone is there: an MLP
    // on 28x28 grey pixels of photos cannot do well. The built-in digits default to the MLP.
    const preferred = chosen === undefined && datasetId !== MNIST_DATASET_ID ? await this.backboneRepository.preferred() : undefined;
    const family = chosen ?? (preferred ? 'transfer' : 'mlp');
    const backbone = checked.backbone ?? (family === 'transfer' ? (preferred ?? (await this.backboneRepository.preferred())) : undefined);
    const request: TrainingRequest = { ...checked, family, ...(backbone !== undefined ? { backbone } : {}), datasetId };
    const notify = parseNotify(notifyField, { emailEnabled: this.notifier.emailEnabled });
    // Fails early (before any work) on a dataset neither here nor offered by another worker (mmi.service).
    if (!(await this.transfer.available(request.datasetId))) throw new ZerveError('UNKNOWN_DATASET', `no dataset ${request.datasetId}`);
    return { request, ...(notify ? { notify } : {}) };
  }

  /** Offers `datasets.fetch.<id>` (one READY for all), so the broker sends other workers' fetches of them here. */
  private offerDatasets(...ids: string[]): void {
    const fresh = ids.filter((id) => id !== MNIST_DATASET_ID && !this.offered.has(id));
    if (fresh.length === 0) return;
    for (const id of fresh) this.offered.add(id);
    this.control.setServices([...this.controlServices, ...[...this.offered].map(datasetFetchService)]);
  }

  private async offerStoredDatasets(): Promise<void> {
    this.offerDatasets(...(await this.datasets.list()));
  }

  /** An abort controller for `id`, aborted too when the connection's own signal aborts (close). */
  private track(id: string, outer: AbortSignal): AbortController {
    const controller = new AbortController();
    const onAbort = () => controller.abort(outer.reason);
    outer.addEventListener('abort', onAbort, { once: true });
    this.active.set(id, controller);
    this.detach.set(id, () => outer.removeEventListener('abort', onAbort));
    return controller;
  }

  /** Ends what `track` started; once per tracked request, in its `finally`. */
  private untrack(id: string): void {
    this.active.delete(id);
    this.detach.get(id)?.();
    this.detach.delete(id);
  }

  /** The backbone a transfer request names: the latest version of that model in the repository (squeezenet layouts). */
  private async backbones(request: TrainingRequest): Promise<Record<string, BackboneSpec>> {
    const name = request.backbone;
    if (request.family !== 'transfer' || typeof name !== 'string') return {};
    const spec = await this.backboneRepository.resolve(name);
    return spec ? { [name]: spec } : {};
  }

  private prepare(request: TrainingRequest, signal: AbortSignal, onFeatures?: (done: number, total: number) => void): Promise<PreparedTraining> {
    const key = JSON.stringify([request.datasetId, request.family, request.pixels, request.backbone, request.split, request.seed ?? 1]);
    let prepared = this.prepared.get(key);
    if (!prepared) {
      prepared = this.backbones(request).then((backbones) => prepareTraining({ ...request, search: undefined }, {
        options: this.trainingOptions(),
        backbones,
        signal,
        logger: this.log,
        ...(onFeatures ? { onProgress: (e) => e.phase === 'features' && onFeatures(e.done, e.total) } : {}),
      }));
      this.prepared.set(key, prepared);
      prepared.catch(() => this.prepared.delete(key));
      while (this.prepared.size > MAX_PREPARED) this.prepared.delete(this.prepared.keys().next().value!);
    }
    // Prepared data is shared between requests; each keeps its own request (export, params, ...).
    return prepared.then((p) => ({ ...p, request }));
  }
}

/**
 * The error a training aborted by `signal` answers: WORKER_LOST when this worker is closing (so
 * the jobs service, or the orchestrator of a `train.run`, sends it to another worker), else
 * CANCELED.
 */
function abortError(signal: AbortSignal, cause: unknown): ZerveError {
  return stopping(signal) ? (signal.reason as ZerveError) : new ZerveError('CANCELED', 'the training was canceled', { cause });
}

/** Whether `signal` was aborted because the worker is closing (WorkerConnection's drain timeout). */
function stopping(signal: AbortSignal): boolean {
  return signal.reason instanceof ZerveError && signal.reason.code === 'WORKER_LOST';
}

