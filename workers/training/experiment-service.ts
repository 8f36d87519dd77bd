/**
 * `train`: one experiment. Prepares the data, runs every search combination (fanned out as
 * `train.run` through the broker when the worker has a client, so all training workers on all hosts
 * share a search; else here), refits the best, evaluates, exports, records everything in the run
 * store, and streams progress as PARTIAL replies (shared/training.ts).
 *
 * A `train` with a `key` runs once per key on this worker: a resend with the key of an experiment
 * still running (the jobs service's attempt resent through another broker after its broker died)
 * follows it, getting its next PARTIALs and its FINAL without taking a unit of capacity; one with the
 * key of an experiment that finished gets its answer (KeyedAnswers: one day, 10,000 keys); one whose
 * experiment failed trains again.
 */
import { randomBytes } from 'node:crypto';
import type { ZerveClient } from '../../shared/client.ts';
import { ZerveError } from '../../shared/errors.ts';
import { isIdempotencyKey } from '../../shared/idempotency-key.ts';
import { KeyedAnswers } from '../../shared/keyed-answers.ts';
import type { Logger } from '../../shared/logger.ts';
import { decodeHeader, decodeReply, encodeJson, type RequestHeader } from '../../shared/messages.ts';
import type { MetricTable } from '../../shared/metric-table.ts';
import { HOSTNAME } from '../../shared/protocol.ts';
import { expandSearch } from '../../shared/search-space.ts';
import { DEFAULT_TRAIN_DEADLINE_MS, TRAIN_RUN_SERVICE, TRAIN_SERVICE, type TrainEpoch, type TrainProgressMessage, type TrainResultMessage, type TrainStarted } from '../../shared/training.ts';
import type { ParamSet, TrainingRequest } from '../../shared/training-request.ts';
import type { ModelHolder } from '../../shared/model-exchange/model-holder.ts';
import { WorkerConnection, type RequestContext } from '../../shared/worker-connection.ts';
import { abortError, stopping } from './active-trainings.ts';
import { MNIST_DATASET_ID } from './builtin-mnist.ts';
import type { EpochProgress } from './mlp.ts';
import type { Notifier } from './notifier.ts';
import type { ExperimentStore } from '../../shared/store/experiment-store.ts';
import type { RunServiceParts, TrainRunRequest } from './run-service.ts';
import { finishTraining, runConfigFor, trainOne, type PreparedTraining, type RunConfig, type RunResult } from './trainer.ts';

type RunOutcome = RunResult & { host?: string; pid?: number };

export interface ExperimentServiceParts extends RunServiceParts {
  store: ExperimentStore;
  notifier: Notifier;
  /** `zerve_training_experiments_total{state}`. */
  experiments: MetricTable;
  /** With a broker: fans runs out as `train.run`. */
  client?: ZerveClient;
  /** With a broker: holds exported models and publishes them to the cluster. */
  models?: ModelHolder;
}

/** The `train` registration (capacity 1 by default) and its handler. */
export class ExperimentService {
  readonly connection: WorkerConnection;
  private readonly log: Logger;
  /** Answers of keyed experiments, running or finished: a resend with the same key gets the first one's. */
  private readonly answers = new KeyedAnswers<Buffer[]>();
  /** The routes each running keyed experiment sends its PARTIALs to: the first request's, then each resend's. */
  private readonly followers = new Map<string, Set<(frames: Buffer[]) => void>>();

  constructor(private readonly parts: ExperimentServiceParts, log: Logger) {
    this.log = log;
    this.connection = new WorkerConnection([TRAIN_SERVICE], (body, ctx) => this.handle(body, ctx), {
      ...parts.options,
      kind: 'training',
      maxDeadlineMs: () => DEFAULT_TRAIN_DEADLINE_MS,
      follows: (_service, body) => this.follows(body),
    }, log);
  }

  /** Whether `body` is a resend of a keyed experiment running here: it then takes no unit of capacity. */
  private follows(body: Buffer[]): boolean {
    if (this.followers.size === 0) return false;
    try {
      const { key } = decodeHeader(body[0]);
      return typeof key === 'string' && this.followers.has(key);
    } catch {
      return false; // the handler answers BAD_REQUEST
    }
  }

  private async handle(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    const { key, ...fields } = decodeHeader(body[0]);
    if (key === undefined) return this.train(fields, ctx.partial, ctx.signal);
    if (!isIdempotencyKey(key)) throw new ZerveError('BAD_REQUEST', 'key must be 1 to 128 printable ASCII characters without spaces');
    const followers = this.followers.get(key);
    if (followers) {
      followers.add(ctx.partial);
      this.log.info({ key }, 'train resent with the key of a running experiment: following it');
    }
    return this.answers.run(key, () => {
      const routes = new Set([ctx.partial]);
      this.followers.set(key, routes);
      const send = (frames: Buffer[]) => {
        for (const partial of routes) partial(frames);
      };
      return this.train(fields, send, ctx.signal).finally(() => this.followers.delete(key));
    });
  }

  private async train(header: RequestHeader, partial: (frames: Buffer[]) => void, signal: AbortSignal): Promise<Buffer[]> {
    const { deadlineMs, ...fields } = header;
    // notify stays here: it is neither recorded nor sent on with train.run.
    const { request, notify } = await this.parts.requests.resolve(fields);
    const experimentId = `e${randomBytes(4).toString('hex')}`;
    const send = (message: TrainProgressMessage) => partial([encodeJson(message)]);
    const started = performance.now();
    const models = this.parts.models;
    const log = this.log.child({ experimentId, datasetId: request.datasetId });
    const seed = request.seed ?? 1;
    const points = expandSearch(request.search, seed);
    const configs = points.map((point) => runConfigFor(request, point));
    const runIds = points.map((_, i) => `${experimentId}-${i + 1}`);
    // Before the experiment is recorded: nothing may throw between that and the try that finishes it.
    const datasetName = (await this.parts.store.datasetName(request.datasetId)) ?? (request.datasetId === MNIST_DATASET_ID ? 'mnist' : null);
    const outcome = { experimentId, datasetId: request.datasetId, datasetName, name: request.export?.name ?? null, runs: points.length, startedAt: new Date() };
    await this.parts.store.startExperiment({ id: experimentId, ...(request.export ? { name: request.export.name } : {}), datasetId: request.datasetId, request, seed, host: HOSTNAME, pid: process.pid });
    const controller = this.parts.active.track(experimentId, signal);
    send({
      type: 'started',
      experimentId,
      cancelService: this.parts.cancelService,
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
      await this.parts.transfer.ensure(request.datasetId, { signal: controller.signal });
      let lastFeatures = 0;
      const prepared = await this.parts.prepared.prepare(request, controller.signal, (done, total) => {
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
        this.record(this.parts.store.addEpoch(runId, { phase, epoch, loss: p.loss, valAccuracy: p.valAccuracy, valLoss: p.valLoss, elapsedMs: p.elapsedMs }), log);
        const message: TrainEpoch = { type: 'epoch', experimentId, phase, run: index + 1, runs: configs.length, runId, params, epoch, epochs, loss: p.loss, valAccuracy: p.valAccuracy, valLoss: p.valLoss, elapsedMs, etaMs };
        send(message);
      };
      const runs = await this.runSearch(experimentId, request, prepared, points, configs, runIds, controller.signal, onEpoch, deadlineMs);
      const finished = await finishTraining(prepared, configs, runs, {
        options: this.parts.options,
        signal: controller.signal,
        logger: log,
        ...(models ? { addVersion: (version) => models.publish(version) } : {}),
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
      this.parts.experiments.child('succeeded').inc();
      this.record(this.parts.store.finishExperiment(experimentId, {
        status: 'succeeded',
        durationMs: elapsedMs,
        bestRunId: runIds[bestIndex],
        test: { ...result.test, perClass: finished.test.perClass, classes: finished.classes },
        ...(result.model ? { modelName: result.model.name, modelVersion: result.model.version } : {}),
      }), log);
      log.info({ testAccuracy: accuracy, best: finished.best.params, model: result.model, ms: Math.round(elapsedMs) }, 'experiment done');
      // In the background: a slow or dead webhook or SMTP server never delays the reply.
      void this.parts.notifier.notify(notify, { ...outcome, durationMs: elapsedMs, result });
      return [encodeJson(result)];
    } catch (err) {
      const error = controller.signal.aborted ? abortError(controller.signal, err) : ZerveError.from(err);
      this.parts.experiments.child(error.code === 'CANCELED' ? 'canceled' : 'failed').inc();
      this.record(this.parts.store.finishExperiment(experimentId, { status: error.code === 'CANCELED' ? 'canceled' : 'failed', durationMs: performance.now() - started, error: `${error.code}: ${error.message}` }), log);
      log.warn({ code: error.code, err: error.message }, 'experiment ended without a model');
      // A worker that stops hands the training back (WORKER_LOST): it is not over, so nobody is told yet.
      if (!stopping(controller.signal)) void this.parts.notifier.notify(notify, { ...outcome, durationMs: performance.now() - started, error });
      throw error;
    } finally {
      this.parts.active.untrack(experimentId);
    }
  }

  /**
   * A history write, not awaited: the store applies writes in order (SQLite at once, PostgreSQL in a
   * queue), and training goes on when one fails; the failure is logged.
   */
  private record(write: Promise<void>, log: Logger): void {
    write.catch((err: unknown) => log.error({ err }, 'recording the experiment history failed'));
  }

  private fansOut(points: number): boolean {
    return this.parts.client !== undefined && points > 1;
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
      this.record(this.parts.store.startRun({ id: runIds[i], experimentId, index: i + 1, params: configs[i].params }), this.log);
      const progress = onEpoch('run', i, configs[i].params, configs[i].mlp.epochs);
      const result = this.fansOut(points.length)
        ? await this.remoteRun({ ...(deadlineMs ? { deadlineMs } : {}), experimentId, runId: runIds[i], index: i + 1, runs: points.length, request, point: points[i] }, signal, progress)
        : { ...(await trainOne(prepared, configs[i], { signal, onEpoch: progress, options: this.parts.options })), host: HOSTNAME, pid: process.pid };
      this.record(this.parts.store.finishRun(runIds[i], { status: 'succeeded', valAccuracy: result.valAccuracy, valLoss: result.valLoss, bestEpoch: result.bestEpoch, epochsRun: result.epochsRun, durationMs: result.elapsedMs, ...(result.host ? { host: result.host } : {}) }), this.log);
      results[i] = result;
    };
    if (!this.fansOut(points.length)) {
      for (let i = 0; i < points.length; i++) await runOne(i);
      return results;
    }
    let next = 0;
    const lanes = Array.from({ length: Math.min(this.parts.options.runConcurrency, points.length) }, async () => {
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
    const client = this.parts.client!;
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
        if (error.code === 'WORKER_LOST' && attempt < this.parts.options.runRetries && !signal.aborted) {
          this.log.warn({ runId: run.runId, attempt: attempt + 1 }, 'run lost with its worker; sending it again');
          continue;
        }
        throw error;
      } finally {
        signal.removeEventListener('abort', cancel);
      }
    }
  }
}
