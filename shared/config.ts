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
}

export const DEFAULT_WORKER_CONNECTION_OPTIONS: WorkerConnectionOptions = {
  connect: DEFAULT_BACKEND,
  capacity: 2,
  heartbeatIntervalMs: 1000,
  heartbeatLiveness: 3,
  reconnectDelayMs: 500,
  kind: 'worker',
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
  const result: Record<string, unknown> = { ...defaults };
  for (const [key, like] of Object.entries(defaults)) {
    const value = flags[key] ?? env[envName(key)] ?? file[key];
    if (value !== undefined) result[key] = coerce(key, value, like);
  }
  return result as T;
}
