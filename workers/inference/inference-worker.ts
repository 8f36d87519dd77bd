import { DEFAULT_INFERENCE_OPTIONS, DEFAULT_MODEL_SYNC_OPTIONS, type InferenceOptions, type ModelSyncOptions, type WorkerConnectionOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger, type Logger } from '../../shared/logger.ts';
import { decodeHeader, encodeJson } from '../../shared/messages.ts';
import { INFER_PREFIX, inferService } from '../../shared/infer-messages.ts';
import type { ServedModelVersions } from '../../shared/models.ts';
import { CLASSIFY_PREFIX, MODELS_DESCRIBE } from '../../shared/protocol.ts';
import { WorkerConnection, type RequestContext } from '../../shared/worker-connection.ts';
import { WorkerMetrics } from '../../shared/worker-metrics.ts';
import { InferenceEngine } from './inference-engine.ts';
import { InferenceMetrics } from './inference-metrics.ts';
import { TensorInference } from './tensor-inference.ts';
import { ModelHolder } from '../../shared/model-exchange/model-holder.ts';
import { ModelSync } from '../../shared/model-exchange/model-sync.ts';
import { ModelFetcher } from '../../shared/model-exchange/model-transfer.ts';

export type InferenceWorkerOptions = InferenceOptions & Partial<WorkerConnectionOptions> & Partial<ModelSyncOptions>;

/**
 * An inference worker process's core: the engine (model repository, sessions, decoding) behind an MDP
 * worker connection. It registers `classify.<model>` and `infer.<model>` (tensors and batches, see
 * `TensorInference`) for every model it can serve, once warmed up, plus `models.describe`, and
 * re-registers when models appear or go. Its repository takes part in the cluster's models
 * (ModelHolder offers what it holds, ModelSync fetches what it lacks).
 */
export class InferenceWorker {
  readonly engine: InferenceEngine;
  readonly connection: WorkerConnection;
  readonly metrics = new WorkerMetrics();
  private readonly inferenceMetrics = new InferenceMetrics(this.metrics);
  readonly holder: ModelHolder;
  readonly sync: ModelSync;
  private readonly log: Logger;
  private readonly tensors: TensorInference;
  private closing?: Promise<void>;

  constructor(options: Partial<InferenceWorkerOptions> = {}, log: Logger = logger) {
    const merged = { ...DEFAULT_INFERENCE_OPTIONS, ...DEFAULT_MODEL_SYNC_OPTIONS, ...options };
    this.log = log.child({ component: 'inference-worker' });
    this.engine = new InferenceEngine(merged);
    this.tensors = new TensorInference(this.engine, (reply) => this.inferenceMetrics.inferred(reply));
    // Classification, tensor inference and model listing change nothing: safe to resend if this worker dies.
    const idempotent = (service: string) => service.startsWith(CLASSIFY_PREFIX) || service.startsWith(INFER_PREFIX) || service === MODELS_DESCRIBE;
    this.connection = new WorkerConnection([], (body, ctx) => this.handle(body, ctx), { kind: 'inference', ...options, idempotent }, log);
    this.connection.reportMetrics(this.metrics);
    // Its own connection: serving chunks to other hosts never takes an inference slot.
    this.holder = new ModelHolder({ ...merged, kind: 'models' }, log);
    this.sync = new ModelSync(this.holder, new ModelFetcher(merged.models, this.holder.client, merged, log), merged, log);
    this.sync.on('fetched', () => void this.engine.refresh().catch((err: unknown) => this.log.error({ err }, 'rescan after a fetch failed')));
  }

  /** Loads and warms every local model, registers with the broker, then takes the cluster's models. */
  async start(): Promise<void> {
    await this.engine.start();
    const register = () => this.connection.setServices(withTensorServices(this.engine.services()), this.servedVersions());
    this.engine.on('services', (services: string[]) => {
      this.log.info({ services }, 'models changed; re-registering');
      register();
    });
    this.engine.on('latest', register);
    // A removed version that was not the latest changes no service: announce the versions left anyway.
    this.sync.on('removed', () => {
      void this.engine
        .refresh()
        .then(register)
        .catch((err: unknown) => this.log.error({ err }, 'rescan after a removal failed'));
    });
    register();
    this.connection.start();
    await this.holder.start();
    this.sync.start();
  }

  /** Graceful stop: no new work, in-flight requests finish, DISCONNECT, sessions released. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.sync.close();
      await Promise.allSettled([this.connection.close(), this.holder.close()]);
      await this.engine.close();
    })();
    return this.closing;
  }

  private servedVersions(): ServedModelVersions[] {
    return this.engine.models().map((m) => ({ name: m.name, versions: m.versions, latest: m.latest }));
  }

  private async handle(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    if (ctx.service === MODELS_DESCRIBE) return [encodeJson({ models: this.engine.models() })];
    if (ctx.service.startsWith(INFER_PREFIX)) return this.tensors.handle(ctx.service.slice(INFER_PREFIX.length), body, ctx.signal);
    if (!ctx.service.startsWith(CLASSIFY_PREFIX)) {
      throw new ZerveError('UNKNOWN_SERVICE', `this worker does not offer ${ctx.service}`);
    }
    const header = decodeHeader(body[0]);
    const image = body[1];
    if (image === undefined) throw new ZerveError('BAD_REQUEST', 'missing image frame: the body is [header, image]');
    if (body.length > 2) throw new ZerveError('BAD_REQUEST', `expected 2 body frames (header, image), got ${body.length}`);
    // Not ctx.signal: a classification is short, so a closing worker lets it finish past its drain timeout.
    const reply = await this.engine.classify(ctx.service.slice(CLASSIFY_PREFIX.length), header, image);
    this.inferenceMetrics.classified(reply);
    return [encodeJson(reply)];
  }
}

/** The engine's `classify.<model>` services, each with its `infer.<model>`, plus `models.describe`. */
function withTensorServices(classify: string[]): string[] {
  return [...classify, ...classify.map((s) => inferService(s.slice(CLASSIFY_PREFIX.length))), MODELS_DESCRIBE];
}
