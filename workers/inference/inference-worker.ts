import { DEFAULT_INFERENCE_OPTIONS, type InferenceOptions, type WorkerConnectionOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger, type Logger } from '../../shared/logger.ts';
import { decodeHeader, encodeJson } from '../../shared/messages.ts';
import { CLASSIFY_PREFIX, MODELS_DESCRIBE } from '../../shared/protocol.ts';
import { WorkerConnection, type RequestContext } from '../worker-connection.ts';
import { InferenceEngine } from './inference-engine.ts';

export type InferenceWorkerOptions = InferenceOptions & Partial<WorkerConnectionOptions>;

/**
 * An inference worker process's core: the engine (model repository, sessions, decoding) behind an MDP
 * worker connection. It registers `classify.<model>` for every model it can serve, once warmed up, plus
 * `models.describe`, and re-registers when models appear or go.
 */
export class InferenceWorker {
  readonly engine: InferenceEngine;
  readonly connection: WorkerConnection;
  private readonly log: Logger;
  private closing?: Promise<void>;

  constructor(options: Partial<InferenceWorkerOptions> = {}, log: Logger = logger) {
    const merged = { ...DEFAULT_INFERENCE_OPTIONS, ...options };
    this.log = log.child({ component: 'inference-worker' });
    this.engine = new InferenceEngine(merged);
    // Classification and model listing change nothing: safe to resend if this worker dies.
    const idempotent = (service: string) => service.startsWith(CLASSIFY_PREFIX) || service === MODELS_DESCRIBE;
    this.connection = new WorkerConnection([], (body, ctx) => this.handle(body, ctx), { kind: 'inference', ...options, idempotent }, log);
  }

  /** Loads and warms every model, then registers with the broker. */
  async start(): Promise<void> {
    await this.engine.start();
    this.engine.on('services', (services: string[]) => {
      this.log.info({ services }, 'models changed; re-registering');
      this.connection.setServices([...services, MODELS_DESCRIBE]);
    });
    this.connection.setServices([...this.engine.services(), MODELS_DESCRIBE]);
    this.connection.start();
  }

  /** Graceful stop: no new work, in-flight requests finish, DISCONNECT, sessions released. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.connection.close();
      await this.engine.close();
    })();
    return this.closing;
  }

  private async handle(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    if (ctx.service === MODELS_DESCRIBE) return [encodeJson({ models: this.engine.models() })];
    if (!ctx.service.startsWith(CLASSIFY_PREFIX)) {
      throw new ZerveError('UNKNOWN_SERVICE', `this worker does not offer ${ctx.service}`);
    }
    const header = decodeHeader(body[0]);
    const image = body[1];
    if (image === undefined) throw new ZerveError('BAD_REQUEST', 'missing image frame: the body is [header, image]');
    if (body.length > 2) throw new ZerveError('BAD_REQUEST', `expected 2 body frames (header, image), got ${body.length}`);
    // Not ctx.signal: a classification is short, so a closing worker lets it finish past its drain timeout.
    const reply = await this.engine.classify(ctx.service.slice(CLASSIFY_PREFIX.length), header, image);
    return [encodeJson(reply)];
  }
}
