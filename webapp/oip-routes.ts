import { createRequire } from 'node:module';
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import type { ZerveClient } from '../shared/client.ts';
import type { WebAppOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { decodeInferRequest, inferService, INFER_PREFIX, type InferHeader, type InferReplyHeader, type ModelMetadata } from '../shared/infer-messages.ts';
import { logger as rootLogger, type Logger } from '../shared/logger.ts';
import { decodeReply, encodeHeader } from '../shared/messages.ts';
import { httpErrorHandler, toZerveError } from './http-error.ts';
import type { ModelCatalog } from './model-catalog.ts';
import { encodeInferResponse, parseInferBody, toWorkerRequest } from './oip-codec.ts';
import type { CheckedParameters } from './request-validator.ts';

const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
/** Protocol extensions these routes speak (Triton's names). */
export const OIP_EXTENSIONS = ['binary_tensor_data', 'classification'];
const HEADER_LENGTH = 'inference-header-content-length';
/** Models and versions whose last metadata is kept (only ones a worker described, so clients cannot grow it past what is served). */
const MAX_KNOWN_METADATA = 1000;

/** What the `/v2` routes need of the web app. */
export interface OipRoutesContext {
  client: ZerveClient;
  catalog: ModelCatalog;
  options: WebAppOptions;
  /** Runs `work` within the web app's bound of requests in flight (OVERLOADED past it). */
  withSlot: (work: () => Promise<void>) => Promise<void>;
  /** Aborted when the HTTP client goes away before its answer. */
  signalOf: (res: Response) => AbortSignal;
  logger?: Logger;
}

const isOipPath = (path: string) => path === '/v2' || path.startsWith('/v2/');

function params(res: Response): CheckedParameters {
  return res.locals.params as CheckedParameters;
}

/**
 * The Open Inference Protocol (KServe v2 REST) under `/v2`: health, server and model metadata, model
 * readiness and inference, with Triton's binary data and classification extensions. Requests go to
 * the workers' `infer.<model>` service (`shared/infer-messages.ts`); errors answer
 * `{"error":"message","code"}` with the status of the error catalog.
 */
export class OipRoutes {
  private readonly log: Logger;
  /**
   * The last metadata a worker gave for each model (and pinned version), by `model\nversion`: what
   * metadata and readiness fall back on while the model's workers are too busy to answer in time, so a
   * saturated model reads as ready (it is, and its requests queue) instead of 504.
   */
  private readonly knownMetadata = new Map<string, ModelMetadata>();

  constructor(private readonly context: OipRoutesContext) {
    this.log = (context.logger ?? rootLogger).child({ component: 'oip' });
  }

  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    // Any content type (Triton's client sends none); gzip and deflate bodies are inflated; past the limit: 413.
    const body = express.raw({ type: () => true, limit: this.context.options.maxUploadBytes });
    app.get('/v2/health/live', check('oipLive'), (_req, res) => {
      res.json({ live: true });
    });
    app.get('/v2/health/ready', check('oipReady'), this.serverReady);
    app.get('/v2', check('oipServerMetadata'), (_req, res) => {
      res.json({ name: 'zerve', version: VERSION, extensions: OIP_EXTENSIONS });
    });
    app.get('/v2/models/:model', check('oipModelMetadata'), this.modelMetadata);
    app.get('/v2/models/:model/versions/:version', check('oipModelVersionMetadata'), this.modelMetadata);
    app.get('/v2/models/:model/ready', check('oipModelReady'), this.modelReady);
    app.get('/v2/models/:model/versions/:version/ready', check('oipModelVersionReady'), this.modelReady);
    app.post('/v2/models/:model/infer', check('oipInfer'), body, this.infer);
    app.post('/v2/models/:model/versions/:version/infer', check('oipVersionInfer'), body, this.infer);
    app.use('/v2', this.notFound);
    // The protocol's error body, `{"error": "message"}`, plus our stable `code`. Not mounted at `/v2`:
    // a mounted handler rewrites req.baseUrl, and the metrics' route label would read `/v2/v2/...`.
    const oipErrors = httpErrorHandler(this.log, this.context.options.retryAfterSeconds, (error) => ({ error: error.message, code: error.code }));
    app.use(((err, req, res, next) => (isOipPath(req.path) ? oipErrors(err, req, res, next) : next(err))) satisfies ErrorRequestHandler);
  }

  private readonly serverReady: RequestHandler = async (_req, res) => {
    let ready = false;
    let why = 'the broker answers, but no worker serves a model';
    let code = 'NO_WORKERS';
    try {
      const services = await this.context.catalog.serviceList(0);
      ready = services.some((s) => s.name.startsWith(INFER_PREFIX) && s.workers > 0);
    } catch (err) {
      const error = toZerveError(err);
      why = `the broker does not answer: ${error.message}`;
      code = error.code;
    }
    if (ready) {
      res.json({ ready: true });
      return;
    }
    res.status(503).set('Retry-After', String(this.context.options.retryAfterSeconds)).json({ ready: false, error: why, code });
  };

  private readonly modelMetadata: RequestHandler = async (_req, res) => {
    const metadata = await this.metadata(res);
    res.json({ name: metadata.name, versions: metadata.versions, platform: 'onnxruntime_onnx', inputs: metadata.inputs, outputs: metadata.outputs });
  };

  private readonly modelReady: RequestHandler = async (_req, res) => {
    const metadata = await this.metadata(res);
    res.json({ name: metadata.name, version: metadata.version, ready: true });
  };

  private readonly infer: RequestHandler = async (req, res) => {
    const { model, version } = params(res).path as { model: string; version?: string };
    await this.context.withSlot(async () => {
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const { request, binaries } = parseInferBody(raw, req.get(HEADER_LENGTH));
      const base: Pick<InferHeader, 'version' | 'deadlineMs'> = { deadlineMs: this.context.options.requestTimeoutMs };
      if (version !== undefined) base.version = version;
      const { header, frames } = toWorkerRequest(request, binaries, base);
      decodeInferRequest([encodeHeader(header), ...frames]); // the worker's own checks, before a round trip
      await this.context.catalog.requireModel(model);
      const reply = await this.ask(model, [encodeHeader(header), ...frames], this.context.signalOf(res));
      const replyHeader = decodeReply<InferReplyHeader>(reply[0]);
      const output = reply[1];
      if (!output) throw new ZerveError('INTERNAL', 'the worker answered no output tensor');
      const { json, binary } = encodeInferResponse(request, replyHeader, output);
      if (!binary) {
        res.json(json);
        return;
      }
      const text = Buffer.from(JSON.stringify(json));
      res.status(200).set({ 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': String(text.length) });
      res.end(Buffer.concat([text, binary]));
    });
  };

  /** The model version's tensors from a worker serving it (a pinned version is loaded if needed). */
  private async metadata(res: Response): Promise<ModelMetadata> {
    const { model, version } = params(res).path as { model: string; version?: string };
    await this.context.catalog.requireModel(model);
    const header: InferHeader = { op: 'metadata', deadlineMs: this.context.options.probeTimeoutMs };
    if (version !== undefined) header.version = version;
    const key = `${model}\n${version ?? ''}`;
    try {
      const metadata = decodeReply<ModelMetadata>((await this.ask(model, [encodeHeader(header)]))[0]);
      if (!this.knownMetadata.has(key) && this.knownMetadata.size >= MAX_KNOWN_METADATA) this.knownMetadata.delete(this.knownMetadata.keys().next().value!);
      this.knownMetadata.set(key, metadata);
      return metadata;
    } catch (err) {
      const known = this.knownMetadata.get(key);
      const code = toZerveError(err).code;
      if (known && (code === 'TIMEOUT' || code === 'OVERLOADED')) return known;
      throw err;
    }
  }

  private ask(model: string, body: Buffer[], signal?: AbortSignal): Promise<Buffer[]> {
    const { options, client } = this.context;
    return client.request(inferService(model), body, { timeoutMs: options.requestTimeoutMs, retries: 0, ...(signal ? { signal } : {}) });
  }

  private readonly notFound: RequestHandler = (req: Request) => {
    throw new ZerveError('NOT_FOUND', `no route ${req.method} ${req.originalUrl.split('?')[0]}`);
  };

}
