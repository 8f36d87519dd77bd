import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { unpack as unpackHeader } from 'msgpackr';
import * as zmq from 'zeromq';
import { DEFAULT_BROKER_OPTIONS, type BrokerOptions } from '../shared/config.ts';
import { ZerveError, type ErrorCode } from '../shared/errors.ts';
import { logger, type Logger } from '../shared/logger.ts';
import { encodeError, encodeJson, isMsgpackMap, type ServiceInfo } from '../shared/messages.ts';
import {
  MDPC01,
  MDPC02,
  MDPW01,
  MDPW02,
  MMI_PREFIX,
  MMI_SERVICE,
  MMI_SERVICES,
  MMI_WORKERS,
  ProtocolError,
  encodeClientReply,
  encodeWorkerDisconnect,
  encodeWorkerHeartbeat,
  encodeWorkerRequest,
  parseClientRequest,
  parseWorkerMessage,
  type WorkerMessage,
} from '../shared/protocol.ts';
import { SendQueue } from '../shared/send-queue.ts';
import type { PendingRequest } from './pending-request.ts';
import { ServiceQueue } from './service-queue.ts';
import { WorkerRegistry, type WorkerRecord } from './worker-registry.ts';

/** Services whose requests may be sent to another worker when theirs dies. */
const SWEEP_INTERVAL_MS = 50;

/**
 * The Majordomo broker: a ROUTER frontend for clients and a ROUTER backend for workers (either socket
 * accepts both kinds of peer, so single-socket MDP setups work too). Credit-based dispatch: a request
 * goes only to a worker with free capacity, per-service FIFO; heartbeats both ways; requeue of
 * idempotent requests when a worker dies; bounded queues and deadlines.
 *
 * Events: `'worker-ready'` (WorkerInfo) when a worker registers or changes its services,
 * `'worker-removed'` (WorkerInfo, reason) when one leaves or is dropped.
 *
 * @example
 * const broker = new Broker({ frontend: 'tcp://*:5555', backend: 'tcp://*:5556' });
 * await broker.start();
 */
export class Broker extends EventEmitter {
  readonly options: BrokerOptions;
  /** Bound frontend endpoint, with the real port when a wildcard port was asked for. */
  frontendEndpoint = '';
  backendEndpoint = '';

  private readonly log: Logger;
  private readonly workers = new WorkerRegistry();
  private readonly queues = new Map<string, ServiceQueue>();
  private frontend?: zmq.Router;
  private backend?: zmq.Router;
  private frontendSends?: SendQueue;
  private backendSends?: SendQueue;
  private readonly loops: Promise<void>[] = [];
  private heartbeatTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private tokenCounter = 0;
  private dispatchCounter = 0;
  private malformed = 0;
  private lastMalformedLog = 0;
  private closing?: Promise<void>;

  constructor(options: Partial<BrokerOptions> = {}, log: Logger = logger) {
    super();
    this.options = { ...DEFAULT_BROKER_OPTIONS, ...options };
    const o = this.options;
    if (!(o.heartbeatIntervalMs > 0 && o.heartbeatLiveness >= 1 && o.defaultDeadlineMs > 0)) {
      throw new ZerveError('BAD_REQUEST', 'heartbeatIntervalMs, heartbeatLiveness and defaultDeadlineMs must be positive');
    }
    if (!(o.maxQueuedPerService >= 0 && o.maxRequeues >= 0 && o.maxPendingSends > 0)) {
      throw new ZerveError('BAD_REQUEST', 'queue limits must not be negative');
    }
    this.log = log.child({ component: 'broker' });
  }

  async start(): Promise<void> {
    const o = this.options;
    const socketOptions = {
      mandatory: true, // never drop a reply silently: unroutable sends fail with EHOSTUNREACH
      sendHighWaterMark: o.highWaterMark,
      receiveHighWaterMark: o.highWaterMark,
      maxMessageSize: o.maxMessageBytes,
      linger: 0,
    };
    this.frontend = new zmq.Router(socketOptions);
    this.backend = new zmq.Router(socketOptions);
    this.frontendSends = new SendQueue(this.frontend, this.log.child({ socket: 'frontend' }), o.maxPendingSends);
    this.backendSends = new SendQueue(this.backend, this.log.child({ socket: 'backend' }), o.maxPendingSends);
    await bindWithRetry(this.frontend, wildcardPort(o.frontend), this.log);
    this.frontendEndpoint = this.frontend.lastEndpoint ?? o.frontend;
    if (o.backend !== o.frontend || /:(0|\*)$/.test(o.backend)) {
      await bindWithRetry(this.backend, wildcardPort(o.backend), this.log);
      this.backendEndpoint = this.backend.lastEndpoint ?? o.backend;
    } else {
      this.backendEndpoint = this.frontendEndpoint;
    }
    this.loops.push(this.receive(this.frontend, this.frontendSends), this.receive(this.backend, this.backendSends));
    this.heartbeatTimer = setInterval(() => this.heartbeat(), o.heartbeatIntervalMs);
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(SWEEP_INTERVAL_MS, o.heartbeatIntervalMs));
    this.log.info({ frontend: this.frontendEndpoint, backend: this.backendEndpoint }, 'broker listening');
  }

  /** Stops the broker; idempotent. Workers notice by heartbeat and re-register with the next broker. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    clearInterval(this.sweepTimer);
    this.frontendSends?.close();
    this.backendSends?.close();
    this.frontend?.close();
    this.backend?.close();
    await Promise.allSettled(this.loops);
    this.log.info('broker closed');
  }

  // -------------------------------------------------------------------------------------------
  // Receiving
  // -------------------------------------------------------------------------------------------

  private async receive(socket: zmq.Router, via: SendQueue): Promise<void> {
    try {
      for await (const frames of socket) {
        try {
          this.route(frames, via);
        } catch (err) {
          this.log.error({ err }, 'error handling a message');
        }
      }
    } catch (err) {
      if (!this.closing) this.log.error({ err }, 'receive loop failed');
    }
  }

  private route(frames: Buffer[], via: SendQueue): void {
    const identity = frames[0]!;
    const first = frames[1];
    const second = frames[2];
    if (first === undefined) return this.dropMalformed('no frames after identity', identity);
    try {
      if (first.equals(MDPC02) || (first.length === 0 && second?.equals(MDPC01))) {
        this.onClient(identity, frames.slice(1), via);
      } else if (first.equals(MDPW02) || (first.length === 0 && second?.equals(MDPW01))) {
        this.onWorker(identity, parseWorkerMessage(frames.slice(1)), via);
      } else {
        this.dropMalformed('unknown protocol header', identity);
      }
    } catch (err) {
      if (err instanceof ProtocolError) this.dropMalformed(err.message, identity);
      else throw err;
    }
  }

  /** Logs hostile or broken messages at most once a second, with a count, so a flood cannot flood the log. */
  private dropMalformed(reason: string, identity: Buffer): void {
    this.malformed++;
    const now = performance.now();
    if (now - this.lastMalformedLog >= 1000) {
      this.log.warn({ reason, peer: identity.toString('hex'), dropped: this.malformed }, 'malformed message dropped');
      this.lastMalformedLog = now;
      this.malformed = 0;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Clients
  // -------------------------------------------------------------------------------------------

  private onClient(identity: Buffer, frames: Buffer[], via: SendQueue): void {
    const { version, service, body } = parseClientRequest(frames);
    const serviceFrame = frames[2]!;
    if (service.startsWith(MMI_PREFIX)) {
      via.push([identity, ...encodeClientReply(version, serviceFrame, [this.mmi(service, body)])], true);
      return;
    }
    const now = performance.now();
    const request: PendingRequest = {
      client: identity,
      via,
      clientVersion: version,
      service,
      serviceFrame,
      body,
      deadline: now + (headerDeadlineMs(body[0]) ?? this.options.defaultDeadlineMs),
      receivedAt: now,
      requeues: 0,
    };
    if (service.length === 0) return this.answer(request, 'BAD_REQUEST', 'empty service name');
    if (via.full || this.backendSends!.full) {
      return this.answer(request, 'OVERLOADED', 'broker send queues are full');
    }
    const queue = this.queueFor(service);
    if (queue.length === 0) {
      const worker = this.workers.pick(service);
      if (worker) return this.dispatch(request, worker);
    }
    if (queue.length >= this.options.maxQueuedPerService) {
      return this.answer(request, 'OVERLOADED', `queue of ${service} is full (${queue.length} waiting)`);
    }
    queue.push(request);
  }

  private queueFor(service: string): ServiceQueue {
    let queue = this.queues.get(service);
    if (!queue) this.queues.set(service, (queue = new ServiceQueue(service)));
    return queue;
  }

  /** Answers a request with an error and forgets it. */
  private answer(request: PendingRequest, code: ErrorCode, message: string): void {
    const reply = encodeError(new ZerveError(code, message));
    request.via.push([request.client, ...encodeClientReply(request.clientVersion, request.serviceFrame, [reply])], true);
  }

  private mmi(service: string, body: Buffer[]): Buffer {
    switch (service) {
      case MMI_SERVICE: {
        const name = body[0]?.toString() ?? '';
        return Buffer.from(this.workers.forService(name)?.size ? '200' : '404');
      }
      case MMI_SERVICES:
        return encodeJson(this.serviceInfo());
      case MMI_WORKERS: {
        const now = performance.now();
        return encodeJson([...this.workers.all()].map((w) => this.workers.info(w, now)));
      }
      default:
        return Buffer.from('501');
    }
  }

  private serviceInfo(): ServiceInfo[] {
    const names = new Set([...this.workers.services(), ...[...this.queues].filter(([, q]) => q.length > 0).map(([s]) => s)]);
    return [...names].sort().map((name) => {
      const workers = [...(this.workers.forService(name) ?? [])];
      return {
        name,
        workers: workers.length,
        capacity: workers.reduce((sum, w) => sum + w.capacity, 0),
        inFlight: workers.reduce((sum, w) => sum + [...w.inFlight.values()].filter((r) => r.service === name).length, 0),
        queued: this.queues.get(name)?.length ?? 0,
      };
    });
  }

  // -------------------------------------------------------------------------------------------
  // Workers
  // -------------------------------------------------------------------------------------------

  private onWorker(identity: Buffer, message: WorkerMessage, via: SendQueue): void {
    const id = identity.toString('hex');
    const worker = this.workers.get(id);
    const now = performance.now();
    if (worker) {
      worker.expiry = now + this.options.heartbeatIntervalMs * this.options.heartbeatLiveness;
      worker.lastSeen = now;
    }
    switch (message.kind) {
      case 'ready': {
        if (worker) {
          if (!message.extension) return this.disconnect(worker, 'second READY without extension');
          this.workers.updateServices(worker, message.extension);
          this.log.info({ worker: id, services: message.extension.services, draining: worker.draining }, 'worker updated');
          this.emit('worker-ready', this.workers.info(worker, now));
          return this.fill(worker);
        }
        if (message.service.startsWith(MMI_PREFIX)) {
          via.push([identity, ...encodeWorkerDisconnect(message.version)], true);
          return;
        }
        const ext = message.extension;
        const record: WorkerRecord = {
          identity,
          id,
          via,
          version: message.version,
          extended: ext !== undefined,
          services: new Set(ext ? ext.services : [message.service]),
          idempotent: new Set(ext?.idempotent),
          capacity: ext?.capacity ?? 1,
          draining: ext?.draining === true,
          inFlight: new Map(),
          kind: ext?.kind ?? 'mdp',
          host: ext?.host ?? 'unknown',
          pid: ext?.pid ?? null,
          expiry: now + this.options.heartbeatIntervalMs * this.options.heartbeatLiveness,
          lastSeen: now,
          lastDispatch: 0,
        };
        this.workers.add(record);
        this.log.info(
          { worker: id, services: [...record.services], capacity: record.capacity, host: record.host, pid: record.pid, protocol: message.version },
          'worker ready',
        );
        this.emit('worker-ready', this.workers.info(record, now));
        return this.fill(record);
      }
      case 'reply': {
        if (!worker || worker.version !== message.version) {
          // Not registered with us (for example, this broker restarted): tell it to register again.
          via.push([identity, ...encodeWorkerDisconnect(message.version)], true);
          return;
        }
        const token = message.client.toString('latin1');
        const request = worker.inFlight.get(token);
        if (!request) {
          this.log.debug({ worker: id }, 'reply for an unknown or already settled request dropped');
          return;
        }
        if (!request.answered && (message.final || request.clientVersion === 2)) {
          request.via.push([request.client, ...encodeClientReply(request.clientVersion, request.serviceFrame, message.body, message.final)], true);
        }
        if (message.final) {
          worker.inFlight.delete(token);
          this.fill(worker);
        }
        return;
      }
      case 'heartbeat':
        if (!worker) via.push([identity, ...encodeWorkerDisconnect(message.version)], true);
        return;
      case 'disconnect':
        if (worker) this.removeWorker(worker, 'worker disconnected');
        return;
    }
  }

  private dispatch(request: PendingRequest, worker: WorkerRecord): void {
    const token = (++this.tokenCounter).toString(36);
    request.token = token;
    request.worker = worker;
    worker.inFlight.set(token, request);
    worker.lastDispatch = ++this.dispatchCounter;
    const body = worker.extended ? [request.serviceFrame, ...request.body] : request.body;
    worker.via.push([worker.identity, ...encodeWorkerRequest(worker.version, Buffer.from(token, 'latin1'), body)], true);
  }

  /** Gives a worker with free capacity the oldest waiting request among its services. */
  private fill(worker: WorkerRecord): void {
    const now = performance.now();
    while (!worker.draining && worker.inFlight.size < worker.capacity) {
      let oldest: ServiceQueue | undefined;
      for (const service of worker.services) {
        const queue = this.queues.get(service);
        const head = queue?.peek();
        if (head && (!oldest || head.receivedAt < oldest.peek()!.receivedAt)) oldest = queue;
      }
      if (!oldest) return;
      const request = oldest.shift()!;
      if (request.deadline <= now) this.answer(request, 'TIMEOUT', 'deadline passed while queued');
      else this.dispatch(request, worker);
    }
  }

  /** Dispatches queued requests of a service to whichever workers have capacity. */
  private drainQueue(service: string): void {
    const queue = this.queues.get(service);
    if (!queue) return;
    const now = performance.now();
    let worker: WorkerRecord | undefined;
    while (queue.length > 0 && (worker = this.workers.pick(service))) {
      const request = queue.shift()!;
      if (request.deadline <= now) this.answer(request, 'TIMEOUT', 'deadline passed while queued');
      else this.dispatch(request, worker);
    }
  }

  private disconnect(worker: WorkerRecord, reason: string): void {
    worker.via.push([worker.identity, ...encodeWorkerDisconnect(worker.version)], true);
    this.removeWorker(worker, reason);
  }

  /** Forgets a worker; its idempotent in-flight requests go to other workers, the rest fail WORKER_LOST. */
  private removeWorker(worker: WorkerRecord, reason: string): void {
    this.workers.remove(worker);
    const now = performance.now();
    const lost = [...worker.inFlight.values()].filter((r) => !r.answered).sort((a, b) => b.receivedAt - a.receivedAt);
    worker.inFlight.clear();
    const affected = new Set<string>();
    let requeued = 0;
    for (const request of lost) {
      if (worker.idempotent.has(request.service) && request.requeues < this.options.maxRequeues && request.deadline > now) {
        request.requeues++;
        delete request.token;
        delete request.worker;
        this.queueFor(request.service).unshift(request);
        affected.add(request.service);
        requeued++;
      } else {
        this.answer(request, 'WORKER_LOST', `worker on ${worker.host} (pid ${worker.pid ?? '?'}) was lost: ${reason}`);
      }
    }
    const level = lost.length > 0 || reason !== 'worker disconnected' ? 'warn' : 'info';
    this.log[level]({ worker: worker.id, host: worker.host, pid: worker.pid, reason, requeued, failed: lost.length - requeued }, 'worker removed');
    this.emit('worker-removed', this.workers.info(worker, now), reason);
    for (const service of affected) this.drainQueue(service);
  }

  // -------------------------------------------------------------------------------------------
  // Timers
  // -------------------------------------------------------------------------------------------

  private heartbeat(): void {
    const now = performance.now();
    for (const worker of [...this.workers.all()]) {
      if (worker.expiry <= now) {
        this.removeWorker(worker, 'heartbeat expired');
        continue;
      }
      worker.via.push([worker.identity, ...encodeWorkerHeartbeat(worker.version)]);
    }
  }

  /** Answers requests whose deadline passed: queued ones TIMEOUT (or NO_WORKERS), in-flight ones TIMEOUT. */
  private sweep(): void {
    const now = performance.now();
    for (const [service, queue] of this.queues) {
      if (queue.length === 0) {
        if (!this.workers.forService(service)) this.queues.delete(service);
        continue;
      }
      for (const request of queue.takeExpired(now)) {
        if (this.workers.forService(service)) {
          this.answer(request, 'TIMEOUT', `no free worker for ${service} before the deadline`);
        } else {
          this.answer(request, 'NO_WORKERS', `no worker offers ${service}`);
        }
      }
    }
    for (const worker of this.workers.all()) {
      for (const request of worker.inFlight.values()) {
        if (!request.answered && request.deadline <= now) {
          request.answered = true; // the worker's slot stays taken until it replies
          this.answer(request, 'TIMEOUT', `worker on ${worker.host} did not answer before the deadline`);
        }
      }
    }
  }
}

/**
 * Binds, retrying for a few seconds while the address is still held: a broker restarted at once (or in
 * the same process) finds the old socket's port not yet released.
 */
async function bindWithRetry(socket: zmq.Router, endpoint: string, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await socket.bind(endpoint);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE' || attempt >= 50) throw err;
      if (attempt === 1) log.warn({ endpoint }, 'address in use; retrying');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** ZeroMQ binds a random port with `*`; accept the common `:0` spelling too. */
function wildcardPort(endpoint: string): string {
  return endpoint.replace(/^(tcp:\/\/[^/]+):0$/, '$1:*');
}

/** Reads `deadlineMs` from a JSON or msgpack header frame without rejecting anything (workers validate). */
function headerDeadlineMs(frame: Buffer | undefined): number | undefined {
  if (!frame || frame.length === 0 || frame.length > 65536) return undefined;
  const first = frame[0]!;
  try {
    let header: unknown;
    if (first === 0x7b /* { */) header = JSON.parse(frame.toString('utf8'));
    else if (isMsgpackMap(first)) header = unpackHeader(frame);
    else return undefined;
    const deadline = (header as { deadlineMs?: unknown } | null)?.deadlineMs;
    return typeof deadline === 'number' && deadline > 0 ? deadline : undefined;
  } catch {
    return undefined;
  }
}
