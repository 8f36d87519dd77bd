/**
 * Every component's options with their documented defaults, in one place, and the loader that
 * resolves them from (lowest to highest) defaults, a JSON config file, environment variables and
 * command-line flags, all with the same names: option `heartbeatIntervalMs` is flag
 * `--heartbeat-interval-ms`, variable `ZERVE_HEARTBEAT_INTERVAL_MS` and file key `heartbeatIntervalMs`.
 * The file is `--config FILE` or `ZERVE_CONFIG`.
 */
import { readFileSync } from 'node:fs';
import { ZerveError } from './errors.ts';

export const DEFAULT_FRONTEND = 'tcp://127.0.0.1:5555';
export const DEFAULT_BACKEND = 'tcp://127.0.0.1:5556';

export interface HeartbeatOptions {
  /** How often each side sends HEARTBEAT when otherwise silent. @defaultValue 1000 */
  heartbeatIntervalMs: number;
  /** Intervals of silence after which the peer counts as gone. @defaultValue 3 */
  heartbeatLiveness: number;
}

export interface BrokerOptions extends HeartbeatOptions {
  /** Endpoint clients connect to (ROUTER, bound). @defaultValue 'tcp://127.0.0.1:5555' */
  frontend: string;
  /** Endpoint workers connect to (ROUTER, bound). @defaultValue 'tcp://127.0.0.1:5556' */
  backend: string;
  /** Deadline of a request whose header sets none. @defaultValue 30000 */
  defaultDeadlineMs: number;
  /** Requests waiting per service; past it a request is answered OVERLOADED. @defaultValue 1000 */
  maxQueuedPerService: number;
  /** Times a request whose worker died is sent to another worker before WORKER_LOST. @defaultValue 2 */
  maxRequeues: number;
  /** Largest message accepted on either socket, in bytes; larger ones are dropped by ZeroMQ. @defaultValue 67108864 */
  maxMessageBytes: number;
  /** Messages buffered per peer before sends wait (ZMQ_SNDHWM / ZMQ_RCVHWM). @defaultValue 100000 */
  highWaterMark: number;
  /** Messages waiting in a socket's send queue before new requests are answered OVERLOADED. @defaultValue 10000 */
  maxPendingSends: number;
}

export const DEFAULT_BROKER_OPTIONS: BrokerOptions = {
  frontend: DEFAULT_FRONTEND,
  backend: DEFAULT_BACKEND,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
  defaultDeadlineMs: 30_000,
  maxQueuedPerService: 1000,
  maxRequeues: 2,
  maxMessageBytes: 64 * 1024 * 1024,
  highWaterMark: 100_000,
  maxPendingSends: 10_000,
};

export interface WorkerConnectionOptions extends HeartbeatOptions {
  /** Broker backend endpoint. @defaultValue 'tcp://127.0.0.1:5556' */
  connect: string;
  /** Requests handled at once (credit announced in READY). @defaultValue 2 */
  capacity: number;
  /** Pause before reconnecting after the broker went silent. @defaultValue 500 */
  reconnectDelayMs: number;
  /** Worker kind reported to `mmi.workers`. @defaultValue 'worker' */
  kind: string;
  /**
   * On close, how long requests in flight may run before their `signal` aborts (a training then
   * stops at its next mini-batch and answers WORKER_LOST; a classification, which never looks at
   * the signal, just finishes). Below the supervisor's 10 s SIGKILL. @defaultValue 5000
   */
  drainTimeoutMs: number;
}

export const DEFAULT_WORKER_CONNECTION_OPTIONS: WorkerConnectionOptions = {
  connect: DEFAULT_BACKEND,
  capacity: 2,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
  reconnectDelayMs: 500,
  kind: 'worker',
  drainTimeoutMs: 5000,
};

export interface InferenceOptions {
  /** Model repository: `<models>/<name>/<version>/model.onnx` + `config.json`. @defaultValue './models' */
  models: string;
  /** onnxruntime intra-op threads per session. @defaultValue 1 */
  threads: number;
  /** How often the repository is rescanned for new models and versions. @defaultValue 2000 */
  pollIntervalMs: number;
  /** Largest image file accepted, in bytes. @defaultValue 20971520 */
  maxImageBytes: number;
  /** Largest decoded image, in pixels (width × height); guards against decompression bombs. @defaultValue 50000000 */
  maxInputPixels: number;
}

export const DEFAULT_INFERENCE_OPTIONS: InferenceOptions = {
  models: './models',
  threads: 1,
  pollIntervalMs: 2000,
  maxImageBytes: 20 * 1024 * 1024,
  maxInputPixels: 50_000_000,
};

export interface TrainingOptions {
  /** Data directory: datasets under `<data>/datasets/<sha256>/`, embedding cache under `<data>/features/`. @defaultValue './data' */
  data: string;
  /** Model repository exported models are written to: `<models>/<name>/<version>/`. @defaultValue './models' */
  models: string;
  /** Largest dataset archive accepted, in bytes. @defaultValue 536870912 */
  maxArchiveBytes: number;
  /** Largest total size of the files an archive or folder expands to, in bytes; counted while streaming. @defaultValue 1073741824 */
  maxExpandedBytes: number;
  /** Most files (entries) in one dataset. @defaultValue 100000 */
  maxEntries: number;
  /** Largest single image in a dataset, in bytes. @defaultValue 20971520 */
  maxImageBytes: number;
  /** Largest image in a dataset, in pixels (width × height). @defaultValue 50000000 */
  maxInputPixels: number;
  /** onnxruntime intra-op threads of the backbone session that computes embeddings. @defaultValue 1 */
  threads: number;
  /** Images per backbone batch when computing embeddings. @defaultValue 8 */
  embeddingBatchSize: number;
  /** Longest stretch of training computation before yielding to the event loop (heartbeats, abort). @defaultValue 20 */
  yieldIntervalMs: number;
}

export const DEFAULT_TRAINING_OPTIONS: TrainingOptions = {
  data: './data',
  models: './models',
  maxArchiveBytes: 512 * 1024 * 1024,
  maxExpandedBytes: 1024 * 1024 * 1024,
  maxEntries: 100_000,
  maxImageBytes: 20 * 1024 * 1024,
  maxInputPixels: 50_000_000,
  threads: 1,
  embeddingBatchSize: 8,
  yieldIntervalMs: 20,
};

export interface ClientOptions {
  /** Broker frontend endpoint. @defaultValue ZERVE_BROKER, else 'tcp://127.0.0.1:5555' */
  broker: string;
  /** Time to wait for a reply before retrying on a fresh socket. @defaultValue 30000 */
  timeoutMs: number;
  /** Retries after a timeout (Lazy Pirate) before failing with TIMEOUT. @defaultValue 0 */
  retries: number;
  /** Sockets kept for concurrent requests (one request in flight per socket). @defaultValue 64 */
  maxSockets: number;
}

export const DEFAULT_CLIENT_OPTIONS: ClientOptions = {
  broker: process.env.ZERVE_BROKER ?? DEFAULT_FRONTEND,
  timeoutMs: 30_000,
  retries: 0,
  maxSockets: 64,
};

function envName(key: string): string {
  return `ZERVE_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function coerce(key: string, value: unknown, like: unknown): unknown {
  if (typeof like === 'number') {
    const n = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(n)) throw new ZerveError('BAD_REQUEST', `option ${key} must be a number, got ${String(value)}`);
    return n;
  }
  if (typeof like === 'boolean') return value === true || value === 'true' || value === '1';
  return String(value);
}

/**
 * Resolves options: defaults < config file < environment < flags. Only keys of `defaults` are read.
 * @param flags parsed command-line flags (camelCase keys, as commander gives them)
 */
export function resolveOptions<T extends object>(
  defaults: T,
  flags: Record<string, unknown> = {},
  env: NodeJS.ProcessEnv = process.env,
): T {
  const configPath = (flags.config as string | undefined) ?? env.ZERVE_CONFIG;
  let file: Record<string, unknown> = {};
  if (configPath) {
    try {
      file = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ZerveError('BAD_REQUEST', `cannot read config file ${configPath}`, { cause: err });
    }
  }
  const result: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, like] of Object.entries(defaults)) {
    const value = flags[key] ?? env[envName(key)] ?? file[key];
    if (value !== undefined) result[key] = coerce(key, value, like);
  }
  return result as T;
}

export interface JobsOptions extends HeartbeatOptions {
  /** Broker backend endpoint the jobs worker connects to. @defaultValue 'tcp://127.0.0.1:5556' */
  connect: string;
  /** Broker frontend endpoint jobs are dispatched through. @defaultValue ZERVE_BROKER, else 'tcp://127.0.0.1:5555' */
  broker: string;
  /** Folder of the job store (`jobs.sqlite`, WAL). @defaultValue './data' */
  data: string;
  /** Jobs dispatched to their target service at once. @defaultValue 4 */
  concurrency: number;
  /** Queued jobs kept at most; past it `jobs.submit` is answered OVERLOADED. @defaultValue 10000 */
  maxQueuedJobs: number;
  /** Largest job body (all target frames together), in bytes. @defaultValue 33554432 */
  maxJobBytes: number;
  /** Time one attempt waits for the target's final reply. @defaultValue 30000 */
  requestTimeoutMs: number;
  /** Attempts of a job whose failure may pass (TIMEOUT, NO_WORKERS, OVERLOADED, WORKER_LOST). @defaultValue 5 */
  maxAttempts: number;
  /** Pause before the second attempt; doubles per attempt up to 30 s. @defaultValue 1000 */
  retryDelayMs: number;
  /** How long a finished job (result, error or cancel) is kept before it is removed. @defaultValue 86400000 */
  resultTtlMs: number;
  /** Progress entries (PARTIAL replies) kept per job; older ones are dropped. @defaultValue 100 */
  maxProgressEntries: number;
}

export const DEFAULT_JOBS_OPTIONS: JobsOptions = {
  connect: DEFAULT_BACKEND,
  broker: process.env.ZERVE_BROKER ?? DEFAULT_FRONTEND,
  data: './data',
  concurrency: 4,
  maxQueuedJobs: 10_000,
  maxJobBytes: 32 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  maxAttempts: 5,
  retryDelayMs: 1000,
  resultTtlMs: 24 * 60 * 60 * 1000,
  maxProgressEntries: 100,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
};

export interface WebAppOptions {
  /** Broker frontend endpoint. @defaultValue ZERVE_BROKER, else 'tcp://127.0.0.1:5555' */
  broker: string;
  /** TCP port of the HTTP server; 0 picks a free one. @defaultValue 8080 */
  http: number;
  /** Address the HTTP server listens on. @defaultValue '127.0.0.1' */
  host: string;
  /** Folder of sample images offered on the page's gallery; '' offers none. @defaultValue '' */
  samples: string;
  /** Largest upload accepted, in bytes; enforced while the upload streams in. @defaultValue 20971520 */
  maxUploadBytes: number;
  /** Time a classification may take before the answer is TIMEOUT (504). @defaultValue 30000 */
  requestTimeoutMs: number;
  /** Classifications in flight at once; past it requests are answered OVERLOADED (503). @defaultValue 256 */
  maxInFlight: number;
  /** How long the model list behind `/api/info` and model checks is cached. @defaultValue 2000 */
  infoCacheMs: number;
  /** Time `/readyz` and `/api/info` wait for the broker. @defaultValue 2000 */
  probeTimeoutMs: number;
  /** How often an SSE stream polls the jobs service for news. @defaultValue 250 */
  eventsPollMs: number;
  /** Seconds sent in `Retry-After` with 503 answers. @defaultValue 1 */
  retryAfterSeconds: number;
}

export const DEFAULT_WEB_APP_OPTIONS: WebAppOptions = {
  broker: process.env.ZERVE_BROKER ?? DEFAULT_FRONTEND,
  http: 8080,
  host: '127.0.0.1',
  samples: '',
  maxUploadBytes: 20 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  maxInFlight: 256,
  infoCacheMs: 2000,
  probeTimeoutMs: 2000,
  eventsPollMs: 250,
  retryAfterSeconds: 1,
};

export interface NotifierOptions {
  /**
   * SMTP server completion emails go through, as a URL: `smtp://host:587` (STARTTLS when offered),
   * `smtps://user:password@host:465`; '' sends no email, and a request asking for one is
   * BAD_REQUEST. @defaultValue ''
   */
  smtp: string;
  /** Sender address of completion emails; '' uses `zerve@<host name>`. @defaultValue '' */
  mailFrom: string;
  /** Time one delivery attempt (a webhook POST, an SMTP session) may take. @defaultValue 10000 */
  notifyTimeoutMs: number;
  /** Retries of a delivery after a network error, a 5xx (webhook) or a 4xx (SMTP) answer. @defaultValue 2 */
  notifyRetries: number;
  /** Pause before the first retry; doubles per retry. @defaultValue 1000 */
  notifyRetryDelayMs: number;
}

export const DEFAULT_NOTIFIER_OPTIONS: NotifierOptions = {
  smtp: '',
  mailFrom: '',
  notifyTimeoutMs: 10_000,
  notifyRetries: 2,
  notifyRetryDelayMs: 1000,
};

export interface TrainingWorkerOptions extends TrainingOptions, WorkerConnectionOptions, NotifierOptions {
  /**
   * Broker frontend the `train` handler fans a search's runs out through (`train.run`, shared by
   * every training worker); '' runs the search inside this worker. @defaultValue ''
   */
  broker: string;
  /** `train.run` requests of one search in flight at once. @defaultValue 4 */
  runConcurrency: number;
  /** Times a run whose worker died (WORKER_LOST) is sent again. @defaultValue 1 */
  runRetries: number;
  /** `train.run` requests this worker computes at once. @defaultValue 1 */
  runCapacity: number;
}

export const DEFAULT_TRAINING_WORKER_OPTIONS: TrainingWorkerOptions = {
  ...DEFAULT_TRAINING_OPTIONS,
  ...DEFAULT_WORKER_CONNECTION_OPTIONS,
  ...DEFAULT_NOTIFIER_OPTIONS,
  // One `train` (orchestration) at a time, so training never takes inference capacity.
  capacity: 1,
  kind: 'training',
  broker: '',
  runConcurrency: 4,
  runRetries: 1,
  runCapacity: 1,
};
