/**
 * Message bodies carried inside MDP frames: one definition of each, used by both ends.
 *
 * `classify.<model>` request body: frame 0 the header (JSON text or msgpack, told apart by the first
 * byte), frame 1 the image file's bytes. Every reply is one UTF-8 JSON frame: a result, or
 * `{"error":{"code","message"}}`.
 */
import { pack, unpack } from 'msgpackr';
import { ZerveError, isErrorBody, type ErrorBody } from './errors.ts';
import type { ServedModelVersions } from './models.ts';

/** Header of a request; every field is optional (`{}` is valid). */
export interface RequestHeader {
  /** How many predictions to return; defaults to the model's config. */
  topk?: number;
  /** Model version to use; defaults to the latest. */
  version?: string;
  /** Time budget in milliseconds from when the broker receives the request. */
  deadlineMs?: number;
  /** `false` skips the inference worker's result cache: the image is classified, and the answer not stored. */
  cache?: boolean;
  [key: string]: unknown;
}

export interface Prediction {
  index: number;
  label: string;
  probability: number;
}

export interface ClassifyReply {
  model: string;
  version: string;
  predictions: Prediction[];
  /** Milliseconds spent per stage: `decodeMs`, `inferenceMs`, `hashMs`, `totalMs`, ... (a cached answer has no decode or inference). */
  timings: Record<string, number>;
  /** Set when the answer came from the worker's result cache, without inference. */
  cached?: true;
}

/** A worker as `mmi.workers` lists it. */
export interface WorkerInfo {
  id: string;
  kind: string;
  host: string;
  pid: number | null;
  protocol: 'MDP/0.1' | 'MDP/0.2';
  services: string[];
  capacity: number;
  inFlight: number;
  /** Milliseconds since the broker last heard from it. */
  lastSeenMs: number;
  /** Models it serves with their versions, when it announced them (inference workers). */
  models?: ServedModelVersions[];
  /** True once it announced it is stopping: it finishes what it holds and gets nothing new. */
  draining?: boolean;
}

/** One service's counts at a broker since it started, as `mmi.stats` answers. */
export interface ServiceStats {
  name: string;
  /** Requests answered, by outcome: `OK` or the error code. */
  outcomes: Record<string, number>;
  /** Requests by time from arrival to final reply, per bucket of `BrokerStats.bucketsS` (not cumulative; the last is +Inf). */
  durationBuckets: number[];
  /** Requests by time waited in the queue for a worker, per bucket of `BrokerStats.bucketsS`. */
  queueBuckets: number[];
}

/** A broker's cumulative request statistics (`mmi.stats`): what its `/metrics` shows, as JSON for the /cluster page. */
export interface BrokerStats {
  /** Upper bounds of the histogram buckets, in seconds, ascending (+Inf implied). */
  bucketsS: number[];
  services: ServiceStats[];
  /** Requests sent to another worker because theirs was lost. */
  requeues: number;
  /** Workers dropped without saying DISCONNECT. */
  lost: number;
  /** Requests refused OVERLOADED by the broker. */
  overloaded: number;
}

/** A service as `mmi.services` lists it. */
export interface ServiceInfo {
  name: string;
  workers: number;
  capacity: number;
  inFlight: number;
  queued: number;
}

/** How the broker's sockets authenticate, as `mmi.security` tells it. */
export interface SecurityInfo {
  /** The worker socket: `curve` (allowlisted keys only) or `plain`. */
  workers: 'curve' | 'plain';
  /** The client socket: `plain`, `curve` (any key) or `allowlist`. */
  clients: 'plain' | 'curve' | 'allowlist';
  /** Whether the broker runs with `--insecure`: its worker socket may be open to anyone who reaches it. */
  insecure: boolean;
}

const MAX_HEADER_BYTES = 64 * 1024;

/** True when the first byte starts a msgpack map (fixmap, map16, map32). */
export function isMsgpackMap(first: number): boolean {
  return (first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf;
}

/** A header frame's value: msgpack when it starts a msgpack map, else JSON; throws on bytes that are neither. */
function parseHeaderFrame(frame: Buffer): unknown {
  return isMsgpackMap(frame[0]!) ? unpack(frame) : JSON.parse(frame.toString('utf8'));
}

/**
 * The `deadlineMs` of a header frame, for the broker: never throws, and reads only what looks like
 * a header (a JSON object or a msgpack map within the size limit). Workers validate the rest.
 */
export function headerDeadlineMs(frame: Buffer | undefined): number | undefined {
  if (!frame || frame.length === 0 || frame.length > MAX_HEADER_BYTES) return undefined;
  const first = frame[0]!;
  if (first !== 0x7b /* { */ && !isMsgpackMap(first)) return undefined;
  try {
    const deadline = (parseHeaderFrame(frame) as { deadlineMs?: unknown } | null)?.deadlineMs;
    return typeof deadline === 'number' && deadline > 0 ? deadline : undefined;
  } catch {
    return undefined;
  }
}

/** Header fields with which a trusted client (the web app) names the user it sends a request for. */
export interface SpeaksFor {
  asUser?: string;
  asRole?: string;
}

/**
 * The user and role a trusted client (the web app) asks to speak for, from its header frame's
 * `asUser` and `asRole`: the broker reads them only for a client its `--client-users` file marks
 * trusted. Never throws.
 */
export function headerSpeaksFor(frame: Buffer | undefined): { user: string; role?: string } | undefined {
  if (!frame || frame.length === 0 || frame.length > MAX_HEADER_BYTES) return undefined;
  const first = frame[0]!;
  if (first !== 0x7b /* { */ && !isMsgpackMap(first)) return undefined;
  try {
    const { asUser, asRole } = (parseHeaderFrame(frame) ?? {}) as { asUser?: unknown; asRole?: unknown };
    if (typeof asUser !== 'string' || asUser === '' || asUser.length > 256) return undefined;
    return typeof asRole === 'string' ? { user: asUser, role: asRole } : { user: asUser };
  } catch {
    return undefined;
  }
}

/**
 * Decodes a request header frame: JSON if it starts with `{` (after whitespace), msgpack if it
 * starts a msgpack map. An absent or empty frame is `{}`.
 * @throws ZerveError BAD_REQUEST for anything else
 */
export function decodeHeader(frame: Buffer | undefined): RequestHeader {
  if (frame === undefined || frame.length === 0) return {};
  if (frame.length > MAX_HEADER_BYTES) {
    throw new ZerveError('BAD_REQUEST', `header frame is ${frame.length} bytes; the limit is ${MAX_HEADER_BYTES}`);
  }
  let value: unknown;
  try {
    value = parseHeaderFrame(frame);
  } catch (err) {
    throw new ZerveError('BAD_REQUEST', 'header is neither a JSON object nor a msgpack map', { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ZerveError('BAD_REQUEST', 'header must be a JSON object or a msgpack map');
  }
  const header = value as RequestHeader;
  if (header.topk !== undefined && !(Number.isInteger(header.topk) && header.topk >= 1 && header.topk <= 1000)) {
    throw new ZerveError('BAD_REQUEST', 'topk must be an integer from 1 to 1000');
  }
  if (header.version !== undefined) {
    if (typeof header.version === 'number') header.version = String(header.version);
    if (typeof header.version !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(header.version)) {
      throw new ZerveError('BAD_REQUEST', 'version must be a version name such as "1"');
    }
  }
  if (header.deadlineMs !== undefined && !(typeof header.deadlineMs === 'number' && header.deadlineMs > 0)) {
    throw new ZerveError('BAD_REQUEST', 'deadlineMs must be a positive number of milliseconds');
  }
  if (header.cache !== undefined && typeof header.cache !== 'boolean') {
    throw new ZerveError('BAD_REQUEST', 'cache must be true or false');
  }
  return header;
}

/** Encodes a header as JSON (the default) or msgpack. */
export function encodeHeader(header: RequestHeader, format: 'json' | 'msgpack' = 'json'): Buffer {
  return format === 'msgpack' ? pack(header) : Buffer.from(JSON.stringify(header));
}

export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export function encodeError(err: ZerveError): Buffer {
  return encodeJson(err.toJSON());
}

/** Parses a JSON reply frame; an error body becomes a thrown ZerveError. */
export function decodeReply<T = unknown>(frame: Buffer | undefined): T {
  if (frame === undefined) throw new ZerveError('INTERNAL', 'empty reply');
  let value: unknown;
  try {
    value = JSON.parse(frame.toString('utf8'));
  } catch (err) {
    throw new ZerveError('INTERNAL', 'reply is not JSON', { cause: err });
  }
  if (isErrorBody(value)) throw ZerveError.fromBody(value as ErrorBody);
  return value as T;
}
