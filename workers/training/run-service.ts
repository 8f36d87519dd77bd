/**
 * `train.run`: one search combination of another worker's experiment (or of this one's), a pure
 * function of (request, point): PARTIAL `TrainStarted`, `TrainDatasetFetch` while the dataset is
 * fetched, `TrainEpoch`s, then FINAL `RunResult` with this worker's host and pid.
 */
import type { TrainingWorkerOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';
import { decodeHeader, encodeJson } from '../../shared/messages.ts';
import { HOSTNAME } from '../../shared/protocol.ts';
import { DEFAULT_TRAIN_DEADLINE_MS, TRAIN_RUN_SERVICE, type TrainDatasetFetch, type TrainEpoch, type TrainStarted } from '../../shared/training.ts';
import type { ParamSet, TrainingRequest } from '../../shared/training-request.ts';
import { WorkerConnection, type RequestContext } from '../../shared/worker-connection.ts';
import { abortError, type ActiveTrainings } from './active-trainings.ts';
import type { DatasetTransfer } from './dataset-transfer.ts';
import type { PreparedData } from './prepared-data.ts';
import type { RequestResolver } from './request-resolver.ts';
import { runConfigFor, trainOne } from './trainer.ts';

/** Frame 0 of `train.run`. */
export interface TrainRunRequest {
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

export interface RunServiceParts {
  options: TrainingWorkerOptions;
  /** Where this worker's runs are canceled (`train.cancel.<worker>`). */
  cancelService: string;
  active: ActiveTrainings;
  requests: RequestResolver;
  prepared: PreparedData;
  transfer: DatasetTransfer;
}

/** The `train.run` registration (capacity `runCapacity`) and its handler. */
export class RunService {
  readonly connection: WorkerConnection;

  constructor(private readonly parts: RunServiceParts, log: Logger) {
    const { options } = parts;
    this.connection = new WorkerConnection([TRAIN_RUN_SERVICE], (body, ctx) => this.handle(body, ctx), { ...options, kind: 'training', capacity: options.runCapacity, maxDeadlineMs: () => DEFAULT_TRAIN_DEADLINE_MS }, log);
  }

  private async handle(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    const { active, requests, prepared: data, transfer, options, cancelService } = this.parts;
    const run = trainRunRequest(decodeHeader(body[0]));
    const { request } = await requests.resolve(run.request);
    const controller = active.track(run.runId, ctx.signal);
    try {
      ctx.partial([encodeJson({ type: 'started', experimentId: run.runId, cancelService, host: HOSTNAME, pid: process.pid } satisfies TrainStarted)]);
      // The PARTIALs also keep the orchestrator's wait for this run alive during a long fetch.
      await transfer.ensure(request.datasetId, {
        signal: controller.signal,
        onProgress: (p) => ctx.partial([encodeJson({ type: 'dataset', experimentId: run.experimentId, ...p } satisfies TrainDatasetFetch)]),
      });
      const prepared = await data.prepare(request, controller.signal);
      const config = runConfigFor(request, run.point);
      const result = await trainOne(prepared, config, {
        signal: controller.signal,
        options,
        onEpoch: (epoch, p) => {
          const message: TrainEpoch = { type: 'epoch', experimentId: run.experimentId, phase: 'run', run: run.index, runs: run.runs, runId: run.runId, params: config.params, epoch, epochs: config.mlp.epochs, loss: p.loss, valAccuracy: p.valAccuracy, valLoss: p.valLoss, elapsedMs: p.elapsedMs, etaMs: 0 };
          ctx.partial([encodeJson(message)]);
        },
      });
      return [encodeJson({ ...result, host: HOSTNAME, pid: process.pid })];
    } catch (err) {
      throw controller.signal.aborted ? abortError(controller.signal, err) : err;
    } finally {
      active.untrack(run.runId);
    }
  }
}
