/**
 * The Majordomo wire protocol: MDP/0.2 (ZeroMQ RFC 18) and MDP/0.1 (RFC 7), plus Zerve's READY
 * extension. Frames shown here exclude the identity frame a ROUTER socket prepends.
 *
 * MDP/0.2 client:  ["MDPC02", cmd, service, ...body]            cmd: REQUEST | PARTIAL | FINAL
 * tagged client:   ["MDPC02", cmd | 0x80, tag, service, ...body] Zerve's correlation extension (below)
 * MDP/0.1 client:  ["", "MDPC01", service, ...body]             (REQ sockets add the empty frame)
 * MDP/0.2 worker:  ["MDPW02", cmd, ...]                          READY service [ext] | REQUEST/PARTIAL/FINAL client "" ...body
 * MDP/0.1 worker:  ["", "MDPW01", cmd, ...]                      READY service [ext] | REQUEST/REPLY client "" ...body
 */
import { hostname } from 'node:os';
import type { KeyProof } from './key-proof.ts';
import type { ServedModelVersions } from './models.ts';

export type MdpVersion = 1 | 2;

export const MDPC01 = Buffer.from('MDPC01');
export const MDPC02 = Buffer.from('MDPC02');
export const MDPW01 = Buffer.from('MDPW01');
export const MDPW02 = Buffer.from('MDPW02');

const EMPTY = Buffer.alloc(0);

/** MDP/0.2 client command codes. */
export const ClientCommand = { REQUEST: 0x01, PARTIAL: 0x02, FINAL: 0x03 } as const;

/**
 * Zerve's correlation extension, so one client socket can have any number of requests in flight: a
 * client command with this bit set carries a tag frame (1 to {@link MAX_TAG_BYTES} bytes, chosen by
 * the client) before the service frame, and the broker returns the same tag in every reply to it.
 * The broker keeps the tag with the request and never sends it to workers; a plain MDP client never
 * sets the bit, so it never sees a tag.
 *
 * tagged REQUEST:          ["MDPC02", 0x81, tag, service, ...body]
 * tagged PARTIAL / FINAL:  ["MDPC02", 0x82 | 0x83, tag, service, ...body]
 */
export const CLIENT_TAGGED = 0x80;
export const MAX_TAG_BYTES = 255;

/** MDP/0.2 worker command codes. */
export const WorkerCommand = {
  READY: 0x01,
  REQUEST: 0x02,
  PARTIAL: 0x03,
  FINAL: 0x04,
  HEARTBEAT: 0x05,
  DISCONNECT: 0x06,
} as const;

/** MDP/0.1 worker command codes (REPLY is the only, final, reply). */
export const WorkerCommandV1 = { READY: 0x01, REQUEST: 0x02, REPLY: 0x03, HEARTBEAT: 0x04, DISCONNECT: 0x05 } as const;

const COMMAND_FRAMES_V2 = Object.fromEntries(
  Object.values(WorkerCommand).map((code) => [code, Buffer.from([code])]),
) as Record<number, Buffer>;
const COMMAND_FRAMES_V1 = Object.fromEntries(
  Object.values(WorkerCommandV1).map((code) => [code, Buffer.from([code])]),
) as Record<number, Buffer>;
const CLIENT_FRAMES = Object.fromEntries(
  Object.values(ClientCommand).flatMap((code) => [
    [code, Buffer.from([code])],
    [code | CLIENT_TAGGED, Buffer.from([code | CLIENT_TAGGED])],
  ]),
) as Record<number, Buffer>;

// Service names live in shared/services.ts; these are re-exported for the modules that import them from here.
export { CLASSIFY_PREFIX, ECHO_SERVICE, MMI_IDENTIFY, MMI_PREFIX, MMI_SECURITY, MMI_SERVICE, MMI_SERVICES, MMI_STATS, MMI_WORKERS, MODELS_DESCRIBE, classifyService } from './services.ts';

/**
 * Zerve's extension of READY: an extra frame of JSON after the service name, which plain MDP brokers
 * ignore. It lets one worker offer several services with one shared capacity (credit-based dispatch).
 * A worker that already registered may send READY again with a new extension to change its services.
 * Because one worker then serves several services, the broker puts the service name as the first body
 * frame of each REQUEST it sends to such a worker (REQUEST: client, "", service, ...body).
 */
export interface ReadyExtension {
  /** Every service the worker offers; the READY's service frame is the first of them. */
  services: string[];
  /** Requests the worker takes at once. */
  capacity: number;
  kind?: string;
  host?: string;
  pid?: number;
  /** Set when the worker is stopping: it finishes what it has and takes nothing new. */
  draining?: boolean;
  /** On a CURVE worker socket: the worker's public key and its proof (shared/key-proof.ts). */
  keyProof?: KeyProof;
  /** The models it serves with their versions (inference workers), shown by `mmi.workers` and `zerve status`. */
  models?: ServedModelVersions[];
  /**
   * The services (of `services`) whose requests may be sent to another worker when this one dies
   * with them. Absent: none (so a plain MDP worker's requests are never resent).
   */
  idempotent?: string[];
  /**
   * The longest deadline, in ms, a request of each listed service (of `services`) may ask for, where
   * it is longer than the broker's `maxDeadlineMs`: a training worker declares `train` so. Absent: the
   * broker's caps apply.
   */
  maxDeadlineMs?: Record<string, number>;
  /**
   * The worker wants the caller frame ({@link CallerIdentity}): the broker then sends each REQUEST as
   * `client, "", service, caller, ...body`. The broker writes that frame itself on every request, so a
   * client cannot forge it.
   */
  caller?: boolean;
}

/** The user a request is from, as the broker stamps it for workers that ask (`ReadyExtension.caller`). */
export interface CallerIdentity {
  /** The user name, or {@link ANONYMOUS_USER}. */
  user: string;
  /** Their role: from the broker's `--client-users` file, or as a trusted client (the web app) says. */
  role: 'admin' | 'member' | 'viewer';
}

/** The caller of a request from a client the broker cannot map to a user. */
export const ANONYMOUS_USER = 'anonymous';
export const ANONYMOUS_CALLER: CallerIdentity = Object.freeze({ user: ANONYMOUS_USER, role: 'member' });

export function encodeCaller(caller: CallerIdentity): Buffer {
  return Buffer.from(JSON.stringify({ user: caller.user, role: caller.role }));
}

/** Reads a caller frame; anything that is not one is the anonymous caller. */
export function parseCaller(frame: Buffer | undefined): CallerIdentity {
  try {
    const value = JSON.parse(frame?.toString() ?? '') as Partial<CallerIdentity> | null;
    const role = value?.role;
    if (typeof value?.user === 'string' && value.user !== '' && (role === 'admin' || role === 'member' || role === 'viewer')) {
      return { user: value.user, role };
    }
  } catch {
    // not JSON: anonymous
  }
  return ANONYMOUS_CALLER;
}

/** A message violated the protocol; the broker logs it and drops it. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

// ---------------------------------------------------------------------------------------------
// Client side of the broker
// ---------------------------------------------------------------------------------------------

export interface ClientRequest {
  version: MdpVersion;
  service: string;
  /** The service frame as received, echoed in replies. */
  serviceFrame: Buffer;
  body: Buffer[];
  /** Correlation tag of a tagged request (Zerve's extension), returned in every reply. */
  tag?: Buffer;
}

/** Parses a message from a client (after the ROUTER identity frame). */
export function parseClientRequest(frames: Buffer[]): ClientRequest {
  if (frames.length >= 3 && frames[0]!.length === 0 && frames[1]!.equals(MDPC01)) {
    return { version: 1, service: frames[2]!.toString(), serviceFrame: frames[2]!, body: frames.slice(3) };
  }
  if (frames.length >= 3 && frames[0]!.equals(MDPC02)) {
    const command = frames[1]!;
    if (command.length === 1 && command[0] === ClientCommand.REQUEST) {
      return { version: 2, service: frames[2]!.toString(), serviceFrame: frames[2]!, body: frames.slice(3) };
    }
    if (command.length === 1 && command[0] === (ClientCommand.REQUEST | CLIENT_TAGGED)) {
      const tag = frames[2]!;
      if (frames.length < 4) throw new ProtocolError('tagged REQUEST without a service frame');
      if (tag.length === 0 || tag.length > MAX_TAG_BYTES) throw new ProtocolError(`tag must be 1 to ${MAX_TAG_BYTES} bytes`);
      return { version: 2, service: frames[3]!.toString(), serviceFrame: frames[3]!, body: frames.slice(4), tag };
    }
    throw new ProtocolError('MDP/0.2 client sent a command other than REQUEST');
  }
  throw new ProtocolError('not an MDP client request');
}

/** Encodes a reply to a client; MDP/0.1 clients only ever get the final reply; a tagged request gets its tag back. */
export function encodeClientReply(version: MdpVersion, service: Buffer, body: Buffer[], final = true, tag?: Buffer): Buffer[] {
  if (version === 1) return [EMPTY, MDPC01, service, ...body];
  const command = final ? ClientCommand.FINAL : ClientCommand.PARTIAL;
  if (tag) return [MDPC02, CLIENT_FRAMES[command | CLIENT_TAGGED]!, tag, service, ...body];
  return [MDPC02, CLIENT_FRAMES[command]!, service, ...body];
}

/** Encodes an MDP/0.2 REQUEST as a client sends it; with a tag, Zerve's tagged REQUEST. */
export function encodeClientRequest(service: string | Buffer, body: Buffer[], tag?: Buffer): Buffer[] {
  const serviceFrame = typeof service === 'string' ? Buffer.from(service) : service;
  if (tag) return [MDPC02, CLIENT_FRAMES[ClientCommand.REQUEST | CLIENT_TAGGED]!, tag, serviceFrame, ...body];
  return [MDPC02, CLIENT_FRAMES[ClientCommand.REQUEST]!, serviceFrame, ...body];
}

export interface ClientReply {
  final: boolean;
  service: string;
  body: Buffer[];
  /** The request's tag, for a reply to a tagged request. */
  tag?: Buffer;
}

/** Parses a reply as an MDP/0.2 client receives it, tagged or not. */
export function parseClientReply(frames: Buffer[]): ClientReply {
  if (frames.length < 3 || !frames[0]!.equals(MDPC02) || frames[1]!.length !== 1) {
    throw new ProtocolError('not an MDP/0.2 reply');
  }
  const command = frames[1]![0]!;
  const plain = command & ~CLIENT_TAGGED;
  if (plain !== ClientCommand.PARTIAL && plain !== ClientCommand.FINAL) {
    throw new ProtocolError(`unexpected client command 0x${command.toString(16)}`);
  }
  const final = plain === ClientCommand.FINAL;
  if (command === plain) return { final, service: frames[2]!.toString(), body: frames.slice(3) };
  if (frames.length < 4) throw new ProtocolError('tagged reply without a service frame');
  return { final, service: frames[3]!.toString(), body: frames.slice(4), tag: frames[2]! };
}

// ---------------------------------------------------------------------------------------------
// Worker side of the broker
// ---------------------------------------------------------------------------------------------

export type WorkerMessage =
  | { kind: 'ready'; version: MdpVersion; service: string; extension?: ReadyExtension }
  | { kind: 'reply'; version: MdpVersion; final: boolean; client: Buffer; body: Buffer[] }
  | { kind: 'heartbeat'; version: MdpVersion; metrics?: Buffer }
  | { kind: 'disconnect'; version: MdpVersion };

/** Parses a message from a worker (after the ROUTER identity frame). */
export function parseWorkerMessage(frames: Buffer[]): WorkerMessage {
  let version: MdpVersion;
  let rest: Buffer[];
  if (frames.length >= 2 && frames[0]!.equals(MDPW02)) {
    version = 2;
    rest = frames.slice(1);
  } else if (frames.length >= 3 && frames[0]!.length === 0 && frames[1]!.equals(MDPW01)) {
    version = 1;
    rest = frames.slice(2);
  } else {
    throw new ProtocolError('not an MDP worker message');
  }
  const commandFrame = rest[0]!;
  if (commandFrame.length !== 1) throw new ProtocolError('worker command frame must be one byte');
  const command = commandFrame[0]!;
  const codes = version === 2 ? WorkerCommand : WorkerCommandV1;
  switch (command) {
    case codes.READY: {
      if (rest.length < 2) throw new ProtocolError('READY without a service name');
      const service = rest[1]!.toString();
      if (service.length === 0) throw new ProtocolError('READY with an empty service name');
      const extension = rest.length >= 3 ? parseReadyExtension(rest[2]!) : undefined;
      return extension ? { kind: 'ready', version, service, extension } : { kind: 'ready', version, service };
    }
    case codes.HEARTBEAT:
      return rest.length >= 2 ? { kind: 'heartbeat', version, metrics: rest[1]! } : { kind: 'heartbeat', version };
    case codes.DISCONNECT:
      return { kind: 'disconnect', version };
    default: {
      const isReply =
        version === 2
          ? command === WorkerCommand.PARTIAL || command === WorkerCommand.FINAL
          : command === WorkerCommandV1.REPLY;
      if (!isReply) throw new ProtocolError(`unknown worker command 0x${command.toString(16)}`);
      if (rest.length < 3 || rest[2]!.length !== 0) {
        throw new ProtocolError('reply without a client address and empty delimiter');
      }
      const final = version === 1 || command === WorkerCommand.FINAL;
      return { kind: 'reply', version, final, client: rest[1]!, body: rest.slice(3) };
    }
  }
}

function parseReadyExtension(frame: Buffer): ReadyExtension | undefined {
  try {
    const value = JSON.parse(frame.toString()) as Partial<ReadyExtension>;
    if (!Array.isArray(value.services) || !value.services.every((s) => typeof s === 'string' && s.length > 0)) {
      return undefined;
    }
    const capacity = Number.isInteger(value.capacity) && value.capacity! > 0 ? value.capacity! : 1;
    const extension: ReadyExtension = { services: value.services, capacity };
    if (typeof value.kind === 'string') extension.kind = value.kind;
    if (typeof value.host === 'string') extension.host = value.host;
    if (typeof value.pid === 'number') extension.pid = value.pid;
    if (value.draining === true) extension.draining = true;
    const proof = value.keyProof;
    if (proof && typeof proof.publicKey === 'string' && typeof proof.mac === 'string') extension.keyProof = { publicKey: proof.publicKey, mac: proof.mac };
    if (Array.isArray(value.models)) {
      const strings = (list: unknown) => Array.isArray(list) && list.every((v) => typeof v === 'string');
      const models = value.models.filter((m) => typeof m?.name === 'string' && typeof m.latest === 'string' && strings(m.versions));
      extension.models = models.map((m) => ({ name: m.name, versions: [...m.versions], latest: m.latest }));
    }
    if (Array.isArray(value.idempotent)) extension.idempotent = value.idempotent.filter((s) => typeof s === 'string');
    if (value.caller === true) extension.caller = true;
    if (typeof value.maxDeadlineMs === 'object' && value.maxDeadlineMs !== null && !Array.isArray(value.maxDeadlineMs)) {
      const caps = Object.entries(value.maxDeadlineMs).filter(([s, ms]) => extension.services.includes(s) && typeof ms === 'number' && ms > 0 && Number.isFinite(ms));
      if (caps.length > 0) extension.maxDeadlineMs = Object.fromEntries(caps);
    }
    return extension;
  } catch {
    return undefined; // an unknown extension is ignored, as a plain MDP broker would
  }
}

function workerPrefix(version: MdpVersion, command: number): Buffer[] {
  return version === 2 ? [MDPW02, COMMAND_FRAMES_V2[command]!] : [EMPTY, MDPW01, COMMAND_FRAMES_V1[command]!];
}

/** Broker → worker REQUEST. */
export function encodeWorkerRequest(version: MdpVersion, client: Buffer, body: Buffer[]): Buffer[] {
  const command = version === 2 ? WorkerCommand.REQUEST : WorkerCommandV1.REQUEST;
  return [...workerPrefix(version, command), client, EMPTY, ...body];
}

export function encodeWorkerHeartbeat(version: MdpVersion): Buffer[] {
  return workerPrefix(version, version === 2 ? WorkerCommand.HEARTBEAT : WorkerCommandV1.HEARTBEAT);
}

export function encodeWorkerDisconnect(version: MdpVersion): Buffer[] {
  return workerPrefix(version, version === 2 ? WorkerCommand.DISCONNECT : WorkerCommandV1.DISCONNECT);
}

// ---------------------------------------------------------------------------------------------
// Worker's own side (MDP/0.2 only: our workers speak the current version)
// ---------------------------------------------------------------------------------------------

export function encodeReady(extension: ReadyExtension): Buffer[] {
  const first = extension.services[0];
  if (first === undefined) throw new TypeError('a worker must offer at least one service');
  return [MDPW02, COMMAND_FRAMES_V2[WorkerCommand.READY]!, Buffer.from(first), Buffer.from(JSON.stringify(extension))];
}

export function encodeWorkerReply(client: Buffer, body: Buffer[], final: boolean): Buffer[] {
  return [MDPW02, COMMAND_FRAMES_V2[final ? WorkerCommand.FINAL : WorkerCommand.PARTIAL]!, client, EMPTY, ...body];
}

/**
 * Zerve's HEARTBEAT extension: a worker may add one frame of JSON after the command, `[instance,
 * series]`, with its cumulative metrics (plain MDP brokers ignore frames after HEARTBEAT's command, and
 * our broker ignores a frame it cannot read). Sent at most every `metricsIntervalMs`, so it costs the
 * hot path nothing. `instance` names the worker process: the broker counts each process once, however
 * many connections it has and however often it reconnects, and keeps a departed process's counts.
 */
export interface MetricsSnapshot {
  instance: string;
  series: MetricSeriesWire[];
}

/**
 * One series, cumulative since the process started: `[name, labelValues, value]` for counters and
 * gauges; histograms add `sum` and the count per bucket (not cumulative; the last one is +Inf), and
 * `value` is their count.
 */
export type MetricSeriesWire = [name: string, labels: string[], value: number, sum?: number, buckets?: number[]];

export function encodeMetricsHeartbeat(snapshot: MetricsSnapshot): Buffer[] {
  return [MDPW02, COMMAND_FRAMES_V2[WorkerCommand.HEARTBEAT]!, Buffer.from(JSON.stringify([snapshot.instance, snapshot.series]))];
}

/** Reads a HEARTBEAT's metrics frame; undefined when it is not one (checking each series is the reader's job). */
export function parseMetricsSnapshot(frame: Buffer): MetricsSnapshot | undefined {
  try {
    const value: unknown = JSON.parse(frame.toString());
    if (!Array.isArray(value) || typeof value[0] !== 'string' || !Array.isArray(value[1])) return undefined;
    return { instance: value[0], series: value[1] as MetricSeriesWire[] };
  } catch {
    return undefined;
  }
}

export type BrokerMessage =
  | { kind: 'request'; client: Buffer; body: Buffer[] }
  | { kind: 'heartbeat' }
  | { kind: 'disconnect' };

/** Parses a broker → worker message as an MDP/0.2 worker receives it. */
export function parseBrokerMessage(frames: Buffer[]): BrokerMessage {
  if (frames.length < 2 || !frames[0]!.equals(MDPW02) || frames[1]!.length !== 1) {
    throw new ProtocolError('not an MDP/0.2 broker message');
  }
  switch (frames[1]![0]) {
    case WorkerCommand.REQUEST:
      if (frames.length < 4 || frames[3]!.length !== 0) throw new ProtocolError('REQUEST without envelope');
      return { kind: 'request', client: frames[2]!, body: frames.slice(4) };
    case WorkerCommand.HEARTBEAT:
      return { kind: 'heartbeat' };
    case WorkerCommand.DISCONNECT:
      return { kind: 'disconnect' };
    default:
      throw new ProtocolError(`unexpected broker command 0x${frames[1]![0]!.toString(16)}`);
  }
}

/** Host name reported in READY and `mmi.workers`. */
export const HOSTNAME = hostname();
