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

/** CURVE on connections to the broker; every process that connects takes these (docs/operations.md, "Keys and authentication"). */
export interface CurveOptions {
  /** This process's own CURVE secret key file (`NAME.key`, `NAME.pub` beside it); '' for none. @defaultValue '' */
  curveKey: string;
  /**
   * The broker's CURVE public key file (`.pub`); '' connects without CURVE. With several brokers, one
   * file for all or a list in the same order as the endpoints. @defaultValue ''
   */
  brokerKey: string;
  /**
   * The broker's client socket: `plain` (no CURVE), `curve` (CURVE, any client key) or `allowlist`
   * (CURVE, keys in `authorizedClients` only). Connecting processes read it to know whether their
   * client sockets need CURVE, so one config file serves the whole cluster. @defaultValue 'plain'
   */
  clientAuth: string;
  /** Lets a broker bind a non-loopback worker socket without CURVE (logged as a warning, shown by `zerve status`). @defaultValue false */
  insecure: boolean;
}

export const DEFAULT_CURVE_OPTIONS: CurveOptions = {
  curveKey: '',
  brokerKey: '',
  clientAuth: 'plain',
  insecure: false,
};

export interface BrokerSecurityOptions extends CurveOptions {
  /** Worker public keys admitted on the worker socket: a file of keys or a folder of `.pub` files; reloaded on SIGHUP and change. @defaultValue '' */
  authorizedWorkers: string;
  /** Client public keys admitted when `clientAuth` is `allowlist`: a file or a folder of `.pub` files. @defaultValue '' */
  authorizedClients: string;
  /**
   * Client keys mapped to users: lines `<Z85 key> <user> [role]`, or `<key> *` for a trusted client
   * (the web app) that names the user in each request; needs `clientAuth` curve or allowlist (docs/auth.md).
   * Reloaded on SIGHUP and change. @defaultValue ''
   */
  clientUsers: string;
}

export const DEFAULT_BROKER_SECURITY_OPTIONS: BrokerSecurityOptions = {
  ...DEFAULT_CURVE_OPTIONS,
  authorizedWorkers: '',
  authorizedClients: '',
  clientUsers: '',
};

export interface BrokerOptions extends HeartbeatOptions, BrokerSecurityOptions {
  /** Endpoint clients connect to (ROUTER, bound). @defaultValue 'tcp://127.0.0.1:5555' */
  frontend: string;
  /** Endpoint workers connect to (ROUTER, bound). @defaultValue 'tcp://127.0.0.1:5556' */
  backend: string;
  /** Deadline of a request whose header sets none. @defaultValue 30000 */
  defaultDeadlineMs: number;
  /** Requests waiting per service; past it a request is answered OVERLOADED. @defaultValue 200000 */
  maxQueuedPerService: number;
  /** Body bytes waiting per service; past it a request is answered OVERLOADED. @defaultValue 268435456 */
  maxQueuedBytesPerService: number;
  /**
   * Longest deadline a request may ask for, by service-name prefix (the longest matching prefix wins,
   * `''` matches every service); a larger `deadlineMs` is lowered to it, or to the longest a worker
   * offering the service declared in READY (training workers declare `train` and `train.run`). As a
   * flag or variable: `echo=60000,=3600000`. @defaultValue { '': 3600000 }
   */
  maxDeadlineMs: Readonly<Record<string, number>>;
  /** Longest service name, in bytes; names must also be printable ASCII without spaces. @defaultValue 255 */
  maxServiceNameBytes: number;
  /** Services with requests waiting and no worker; a request for one more is answered NO_WORKERS at once. @defaultValue 1000 */
  maxUnservedServices: number;
  /** Body bytes waiting for services with no worker, all together; past it, NO_WORKERS at once. @defaultValue 67108864 */
  maxUnservedBytes: number;
  /** Times a request whose worker died is sent to another worker before WORKER_LOST. @defaultValue 2 */
  maxRequeues: number;
  /** Largest message accepted on either socket, in bytes; larger ones are dropped by ZeroMQ. @defaultValue 67108864 */
  maxMessageBytes: number;
  /** Messages buffered per peer before sends wait (ZMQ_SNDHWM / ZMQ_RCVHWM). @defaultValue 100000 */
  highWaterMark: number;
  /**
   * How often the broker gives freed native memory back to the OS (glibc `malloc_trim`): without it,
   * RSS stays near its peak after a burst of messages. 0 turns it off. @defaultValue 10000
   */
  memoryTrimIntervalMs: number;
}

export const DEFAULT_BROKER_OPTIONS: BrokerOptions = {
  ...DEFAULT_BROKER_SECURITY_OPTIONS,
  frontend: DEFAULT_FRONTEND,
  backend: DEFAULT_BACKEND,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
  defaultDeadlineMs: 30_000,
  maxQueuedPerService: 200_000,
  maxQueuedBytesPerService: 256 * 1024 * 1024,
  maxDeadlineMs: { '': 3_600_000 },
  maxServiceNameBytes: 255,
  maxUnservedServices: 1000,
  maxUnservedBytes: 64 * 1024 * 1024,
  maxRequeues: 2,
  maxMessageBytes: 64 * 1024 * 1024,
  highWaterMark: 100_000,
  memoryTrimIntervalMs: 10_000,
};

export interface WorkerConnectionOptions extends HeartbeatOptions, CurveOptions {
  /**
   * Broker backend endpoint, or several separated by commas (an array in a config file): the worker
   * registers on each and shares its capacity among them (docs/brokers.md). @defaultValue 'tcp://127.0.0.1:5556'
   */
  connect: string;
  /** Requests handled at once (credit announced in READY). @defaultValue 2 */
  capacity: number;
  /** Pause before reconnecting after the broker went silent. @defaultValue 500 */
  reconnectDelayMs: number;
  /** Worker kind reported to `mmi.workers`. @defaultValue 'worker' */
  kind: string;
  /** How often the worker's metrics ride on a HEARTBEAT to the broker (when it has any). @defaultValue 5000 */
  metricsIntervalMs: number;
  /**
   * On close, how long requests in flight may run before their `signal` aborts (a training then
   * stops at its next mini-batch and answers WORKER_LOST; a classification, which never looks at
   * the signal, just finishes). Below the supervisor's 10 s SIGKILL. @defaultValue 5000
   */
  drainTimeoutMs: number;
  /**
   * With several brokers: how long a broker must leave part of its grant unused before the worker
   * gives one unit of it to a broker that has its whole grant in flight. @defaultValue 100
   */
  creditIdleMs: number;
}

export const DEFAULT_WORKER_CONNECTION_OPTIONS: WorkerConnectionOptions = {
  ...DEFAULT_CURVE_OPTIONS,
  connect: DEFAULT_BACKEND,
  capacity: 2,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
  reconnectDelayMs: 500,
  kind: 'worker',
  metricsIntervalMs: 5000,
  drainTimeoutMs: 5000,
  creditIdleMs: 100,
};

export interface MetricsOptions {
  /** Port of the broker's or a worker's `/metrics` and `/healthz`; -1 is off, 0 picks a free port. @defaultValue -1 */
  metricsPort: number;
  /** Address the metrics server listens on (`0.0.0.0` in a container). @defaultValue '127.0.0.1' */
  metricsHost: string;
}

export const DEFAULT_METRICS_OPTIONS: MetricsOptions = {
  metricsPort: -1,
  metricsHost: '127.0.0.1',
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
  /** Bytes of answers the worker's result cache keeps (LRU; same image, model, version, topk); 0 turns it off. @defaultValue 67108864 */
  resultCacheBytes: number;
  /** Models this worker serves and fetches, comma-separated (`squeezenet,digits`); '' serves all. @defaultValue '' */
  serve: string;
}

export const DEFAULT_INFERENCE_OPTIONS: InferenceOptions = {
  models: './models',
  threads: 1,
  pollIntervalMs: 2000,
  maxImageBytes: 20 * 1024 * 1024,
  maxInputPixels: 50_000_000,
  resultCacheBytes: 64 * 1024 * 1024,
  serve: '',
};

/** Models through the cluster (shared/models.ts): holders, fetchers and publishers. */
export interface ModelSyncOptions {
  /** Broker frontend: the cluster's catalog (`mmi.services`) and fetches; '' uses the worker's `connect` endpoint. @defaultValue '' */
  broker: string;
  /** Bytes asked for per chunk of a model file; kept well under `maxMessageBytes`. @defaultValue 8388608 */
  modelChunkBytes: number;
  /** Largest chunk a holder serves, whatever a request asks. @defaultValue 33554432 */
  modelMaxChunkBytes: number;
  /** Wait for one chunk; also its broker deadline. @defaultValue 60000 */
  modelChunkTimeoutMs: number;
  /** Times a chunk lost with its holder is asked again (of another holder, or the same one back). @defaultValue 3 */
  modelChunkRetries: number;
  /** How often the cluster's catalog is read for versions this worker lacks. @defaultValue 2000 */
  modelSyncIntervalMs: number;
  /** How long a version number must stand unchallenged in the catalog before it is fetched or kept. @defaultValue 1000 */
  modelSettleMs: number;
  /** How long `zerve models add` and the web app wait for an inference worker to take a new version. @defaultValue 120000 */
  modelHandoffTimeoutMs: number;
}

export const DEFAULT_MODEL_SYNC_OPTIONS: ModelSyncOptions = {
  broker: '',
  modelChunkBytes: 8 * 1024 * 1024,
  modelMaxChunkBytes: 32 * 1024 * 1024,
  modelChunkTimeoutMs: 60_000,
  modelChunkRetries: 3,
  modelSyncIntervalMs: 2000,
  modelSettleMs: 1000,
  modelHandoffTimeoutMs: 120_000,
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

export interface ClientOptions extends CurveOptions, HeartbeatOptions {
  /**
   * Broker frontend endpoint, or several separated by commas (an array in a config file): requests
   * are spread over those that are up. @defaultValue ZERVE_BROKER, else 'tcp://127.0.0.1:5555'
   */
  broker: string;
  /** Time to wait for a reply before resending under a new tag. @defaultValue 30000 */
  timeoutMs: number;
  /** Resends after a timeout (Lazy Pirate) before failing with TIMEOUT. @defaultValue 0 */
  retries: number;
  /** Requests in flight at once on the client's one socket; past it a request is refused OVERLOADED. @defaultValue 100000 */
  maxInFlight: number;
}

export const DEFAULT_CLIENT_OPTIONS: ClientOptions = {
  ...DEFAULT_CURVE_OPTIONS,
  broker: process.env.ZERVE_BROKER ?? DEFAULT_FRONTEND,
  timeoutMs: 30_000,
  retries: 0,
  maxInFlight: 100_000,
  // With several brokers: the ZMTP heartbeat that notices a broker cut off (HeartbeatOptions).
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
};

function envName(key: string): string {
  return `ZERVE_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function coerce(key: string, value: unknown, like: unknown): unknown {
  if (typeof like === 'number') {
    const n = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(n)) throw new ZerveError('BAD_CONFIG', `option ${key} must be a number, got ${String(value)}`);
    return n;
  }
  if (typeof like === 'boolean') return value === true || value === 'true' || value === '1';
  if (typeof like === 'object' && like !== null) return coerceNumberMap(key, value);
  // A list in a config file (brokers, say) is the comma-separated string a flag would give.
  if (Array.isArray(value)) return value.map(String).join(',');
  return String(value);
}

/** A map of numbers: an object (config file) or `key=number,key=number` (flag, variable). */
function coerceNumberMap(key: string, value: unknown): Record<string, number> {
  const entries =
    typeof value === 'string'
      ? value.split(',').filter(Boolean).map((pair) => {
          const at = pair.lastIndexOf('=');
          return [at < 0 ? pair : pair.slice(0, at), at < 0 ? Number.NaN : Number(pair.slice(at + 1))] as const;
        })
      : typeof value === 'object' && value !== null
        ? Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, Number(v)] as const)
        : [];
  if (entries.length === 0 || entries.some(([, n]) => !(Number.isFinite(n) && n > 0))) {
    throw new ZerveError('BAD_CONFIG', `option ${key} must be prefix=number pairs separated by commas, got ${String(value)}`);
  }
  return Object.fromEntries(entries);
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
      throw new ZerveError('BAD_CONFIG', `cannot read config file ${configPath}`, { cause: err });
    }
  }
  const result: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, like] of Object.entries(defaults)) {
    const value = flags[key] ?? env[envName(key)] ?? file[key];
    if (value !== undefined) result[key] = coerce(key, value, like);
  }
  return result as T;
}

export interface JobsOptions extends HeartbeatOptions, CurveOptions, Pick<WorkerConnectionOptions, 'metricsIntervalMs'> {
  /** Broker backend endpoint the jobs worker connects to. @defaultValue 'tcp://127.0.0.1:5556' */
  connect: string;
  /** Broker frontend endpoint jobs are dispatched through. @defaultValue ZERVE_BROKER, else 'tcp://127.0.0.1:5555' */
  broker: string;
  /** Folder of the job store (`jobs.sqlite`, WAL) when `store` is ''. @defaultValue './data' */
  data: string;
  /**
   * Where jobs are kept: '' for `jobs.sqlite` in `data`, `sqlite:FOLDER`, or a `postgres://` URL of a
   * database several jobs services share (docs/store.md). @defaultValue ''
   */
  store: string;
  /**
   * A running job's lease in the store, renewed every third of it; when its jobs service dies, another
   * takes the job over once the lease runs out. @defaultValue 30000
   */
  leaseMs: number;
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
  ...DEFAULT_CURVE_OPTIONS,
  connect: DEFAULT_BACKEND,
  broker: process.env.ZERVE_BROKER ?? DEFAULT_FRONTEND,
  data: './data',
  store: '',
  leaseMs: 30_000,
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
  metricsIntervalMs: DEFAULT_WORKER_CONNECTION_OPTIONS.metricsIntervalMs,
};

/** Where a short-lived model publisher (`zerve models add`, the web app's `POST /api/models`) offers the new version. */
export interface ModelPublisherOptions {
  /**
   * Broker worker endpoint the new version is offered on (a worker connection of its own) until an
   * inference worker has taken it; '' uses the `broker` endpoint, which a plain broker on loopback
   * takes workers on. Under CURVE only the worker socket takes workers: name it here.
   * @defaultValue ''
   */
  connect: string;
}

export const DEFAULT_MODEL_PUBLISHER_OPTIONS: ModelPublisherOptions = {
  connect: '',
};

/** `HeartbeatOptions`: those of the worker connection a model upload is offered on (the broker's own). */
/** Who may use the web app (docs/auth.md). */
export interface WebAuthOptions {
  /**
   * `off` (every route open), `tokens` (bearer tokens from the auth store) or `oidc`. Off on a
   * non-loopback `host` refuses to start unless `insecure`. @defaultValue 'off'
   */
  auth: string;
  /** Data directory of the auth store (`<data>/auth.sqlite`) when `store` is '', shared with `zerve users` and `zerve tokens`. @defaultValue './data' */
  data: string;
  /**
   * Where users and tokens are kept: '' for `auth.sqlite` in `data`, `sqlite:FOLDER`, or a `postgres://`
   * URL every web app replica shares (docs/store.md). The web app also reads run history from a
   * `postgres://` store directly instead of asking every training worker. @defaultValue ''
   */
  store: string;
  /** How long a token's stored record is trusted before it is read again: the longest a revocation takes to hold on a replica. @defaultValue 2000 */
  authCacheMs: number;
  /** `/metrics`: `open`, or `token` (a bearer token with the `metrics` scope) when auth is on. @defaultValue 'open' */
  metricsAuth: string;
  /** Failed authentications an address or a token id may have per `authFailureWindowMs`; past it, 429 TOO_MANY_ATTEMPTS. @defaultValue 20 */
  maxAuthFailures: number;
  /** The window of `maxAuthFailures`, in milliseconds (whole seconds). @defaultValue 60000 */
  authFailureWindowMs: number;
  /** Lifetime of a page session made by logging in with a token. @defaultValue 43200000 */
  sessionTtlMs: number;
  /** `auth oidc`: the OpenID provider's issuer URL. @defaultValue '' */
  oidcIssuer: string;
  /** `auth oidc`: this web app's client id at the provider. @defaultValue '' */
  oidcClientId: string;
  /** `auth oidc`: its client secret (better in ZERVE_OIDC_CLIENT_SECRET or the config file than in argv). @defaultValue '' */
  oidcClientSecret: string;
  /** Groups (`groups` claim) or e-mail domains (`@example.org`) whose users are admins, comma-separated. @defaultValue '' */
  oidcAdmins: string;
  /** Groups or e-mail domains whose users are members; other users are viewers. @defaultValue '' */
  oidcMembers: string;
  /** Accept an `http:` issuer (a provider on loopback, for trials and tests). @defaultValue false */
  oidcAllowHttp: boolean;
}

export const DEFAULT_WEB_AUTH_OPTIONS: WebAuthOptions = {
  auth: 'off',
  data: './data',
  store: '',
  authCacheMs: 2000,
  metricsAuth: 'open',
  maxAuthFailures: 20,
  authFailureWindowMs: 60_000,
  sessionTtlMs: 12 * 3_600_000,
  oidcIssuer: '',
  oidcClientId: '',
  oidcClientSecret: '',
  oidcAdmins: '',
  oidcMembers: '',
  oidcAllowHttp: false,
};

export interface WebAppOptions extends CurveOptions, ModelPublisherOptions, HeartbeatOptions, WebAuthOptions {
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
  /** Largest model file `POST /api/models` accepts, in bytes. @defaultValue 268435456 */
  maxModelBytes: number;
  /** How long `POST /api/models` waits for an inference worker to take the new version. @defaultValue 120000 */
  modelHandoffTimeoutMs: number;
  /** Time a classification may take before the answer is TIMEOUT (504). @defaultValue 30000 */
  requestTimeoutMs: number;
  /**
   * Classifications and submissions in flight at once, uploads included; past it requests are answered
   * OVERLOADED (503). A guard against a flood of slow uploads only: the working limit is the broker's
   * bounded queue (`maxQueuedPerService`), whose OVERLOADED the web app passes on. @defaultValue 10000
   */
  maxInFlight: number;
  /** How long the model list behind `/api/info` and model checks is cached. @defaultValue 2000 */
  infoCacheMs: number;
  /** Time `/readyz` and `/api/info` wait for the broker. @defaultValue 2000 */
  probeTimeoutMs: number;
  /** How often an SSE stream polls the jobs service for news. @defaultValue 250 */
  eventsPollMs: number;
  /** Seconds sent in `Retry-After` with 503 answers that carry no retry hint from the broker. @defaultValue 1 */
  retryAfterSeconds: number;
  /** How often the /cluster page's data is polled from the broker (`mmi.workers`, `mmi.services`, `mmi.stats`). @defaultValue 1000 */
  clusterPollMs: number;
}

export const DEFAULT_WEB_APP_OPTIONS: WebAppOptions = {
  ...DEFAULT_CURVE_OPTIONS,
  ...DEFAULT_WEB_AUTH_OPTIONS,
  ...DEFAULT_MODEL_PUBLISHER_OPTIONS,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
  broker: process.env.ZERVE_BROKER ?? DEFAULT_FRONTEND,
  http: 8080,
  host: '127.0.0.1',
  samples: '',
  maxUploadBytes: 20 * 1024 * 1024,
  maxModelBytes: 256 * 1024 * 1024,
  modelHandoffTimeoutMs: 120_000,
  requestTimeoutMs: 30_000,
  maxInFlight: 10_000,
  infoCacheMs: 2000,
  probeTimeoutMs: 2000,
  eventsPollMs: 250,
  retryAfterSeconds: 1,
  clusterPollMs: 1000,
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
  /**
   * Where experiments, runs, epochs and dataset names are kept: '' for `runs.sqlite` in `data`,
   * `sqlite:FOLDER`, or a `postgres://` URL every training worker shares (docs/store.md). @defaultValue ''
   */
  store: string;
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
  store: '',
};
