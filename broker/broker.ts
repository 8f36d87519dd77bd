import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import * as zmq from 'zeromq';
import { DEFAULT_BROKER_OPTIONS, type BrokerOptions } from '../shared/config.ts';
import { ZerveError, type ErrorCode } from '../shared/errors.ts';
import { logger, type Logger } from '../shared/logger.ts';
import { encodeError, encodeJson, headerDeadlineMs, type ServiceInfo } from '../shared/messages.ts';
import {
  MDPC01,
  MDPC02,
  MDPW01,
  MDPW02,
  MMI_IDENTIFY,
  MMI_PREFIX,
  MMI_SECURITY,
  MMI_SERVICE,
  MMI_SERVICES,
  MMI_WORKERS,
  MMI_STATS,
  ProtocolError,
  encodeClientReply,
  encodeWorkerDisconnect,
  encodeWorkerHeartbeat,
  encodeWorkerRequest,
  parseClientRequest,
  parseWorkerMessage,
  type WorkerMessage,
} from '../shared/protocol.ts';
import { PauseDetector } from '../shared/pause-detector.ts';
import { SendQueue } from '../shared/send-queue.ts';
import { BrokerMetrics } from './broker-metrics.ts';
import { BrokerSecurity } from './broker-security.ts';
import { MemoryTrimmer } from './memory-trim.ts';
import type { PendingRequest } from './pending-request.ts';
import { ServiceQueue } from './service-queue.ts';
import { WorkerRegistry, type WorkerRecord } from './worker-registry.ts';

/** How often requests, queued and in flight, are checked for passed deadlines (at most every heartbeat interval). */
const SWEEP_INTERVAL_MS = 50;
/** Longest retry hint an OVERLOADED answer gives (also the hint when the queue has not drained lately). */
const RETRY_AFTER_CEILING_MS = 60_000;

/**
 * The Majordomo broker: a ROUTER frontend for clients and a ROUTER backend for workers (either socket
 * accepts both kinds of peer, so single-socket MDP setups work too). Credit-based dispatch: a request
 * goes only to a worker with free capacity; within a service each client has its own FIFO and dispatch
 * takes one request from each client in turn (`ServiceQueue`); heartbeats both ways; requeue of
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
  /** Prometheus metrics of the broker and, relayed in heartbeats, of its workers. */
  readonly metrics: BrokerMetrics;

  private readonly log: Logger;
  private readonly workers = new WorkerRegistry();
  private readonly queues = new Map<string, ServiceQueue>();
  /** Queues of services no worker offers, and their bytes; recounted by every sweep. */
  private unserved = { services: 0, bytes: 0 };
  private frontend?: zmq.Router;
  private backend?: zmq.Router;
  private frontendSends?: SendQueue;
  private backendSends?: SendQueue;
  private readonly loops: Promise<void>[] = [];
  private heartbeatTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private pauses?: PauseDetector;
  private memoryTrimmer?: MemoryTrimmer;
  private tokenCounter = 0;
  /** `maxDeadlineMs` as [prefix, cap], longest prefix first: the first match is the longest. */
  private readonly deadlineCaps: Array<[string, number]>;
  private dispatchCounter = 0;
  private malformed = 0;
  private lastMalformedLog = 0;
  private closing?: Promise<void>;
  private readonly security: BrokerSecurity;
  /** Whether worker READY is taken on the frontend socket too (see BrokerSecurity.workersOnFrontend). */
  private workersOnFrontend = true;
  /** Whether one socket serves both endpoints (the same endpoint, or roles that do not differ). */
  private sharedSocket = false;

  constructor(options: Partial<BrokerOptions> = {}, log: Logger = logger) {
    super();
    this.options = { ...DEFAULT_BROKER_OPTIONS, ...options };
    const o = this.options;
    if (!(o.heartbeatIntervalMs > 0 && o.heartbeatLiveness >= 1 && o.defaultDeadlineMs > 0)) {
      throw new ZerveError('BAD_CONFIG', 'heartbeatIntervalMs, heartbeatLiveness and defaultDeadlineMs must be positive');
    }
    if (!(o.maxQueuedPerService >= 0 && o.maxRequeues >= 0)) {
      throw new ZerveError('BAD_CONFIG', 'queue limits must not be negative');
    }
    this.deadlineCaps = Object.entries(o.maxDeadlineMs).sort(([a], [b]) => b.length - a.length);
    this.log = log.child({ component: 'broker' });
    this.metrics = new BrokerMetrics(() => this.serviceInfo(), this.log);
    this.security = new BrokerSecurity(o, this.log);
    this.security.on('revoked', (ids: string[]) => this.revoke(ids));
  }

  async start(): Promise<void> {
    const o = this.options;
    const socketOptions = {
      mandatory: true, // never drop a reply silently: unroutable sends fail with EHOSTUNREACH
      sendTimeout: 0, // sends complete at once (see SendQueue): no readiness check or queue per message
      sendHighWaterMark: o.highWaterMark,
      receiveHighWaterMark: o.highWaterMark,
      maxMessageSize: o.maxMessageBytes,
      linger: 0,
    };
    // One socket serves both roles when frontend and backend are the same endpoint: it is then the worker socket.
    const sameEndpoint = o.backend === o.frontend && !/:(0|\*)$/.test(o.backend);
    await this.security.start();
    // It serves both endpoints too when the roles do not differ: no CURVE, and workers are taken on the
    // client socket anyway. One socket instead of two makes about a fifth fewer system calls per request
    // (zeromq.js checks a socket's events after each send to it while a receive waits on it; measured
    // with strace in scripts/bench/broker-profile.ts), and a worker's reply and the next client request
    // are read in one wake-up.
    const merged = sameEndpoint || (!this.security.workerCurve && this.security.workersOnFrontend(false));
    this.sharedSocket = merged;
    this.workersOnFrontend = this.security.workersOnFrontend(merged);
    const frontendRole = sameEndpoint ? 'backend' : 'frontend';
    this.frontend = new zmq.Router({ ...socketOptions, ...this.security.socketOptions(frontendRole) });
    this.security.observe(this.frontend, frontendRole);
    this.frontendSends = new SendQueue(this.frontend, this.log.child({ socket: merged ? 'shared' : 'frontend' }));
    if (merged) {
      this.backend = this.frontend;
      this.backendSends = this.frontendSends;
    } else {
      this.backend = new zmq.Router({ ...socketOptions, ...this.security.socketOptions('backend') });
      this.security.observe(this.backend, 'backend');
      this.backendSends = new SendQueue(this.backend, this.log.child({ socket: 'backend' }));
    }
    await bindWithRetry(this.frontend, wildcardPort(o.frontend), this.log);
    this.frontendEndpoint = this.frontend.lastEndpoint ?? o.frontend;
    if (sameEndpoint) {
      this.backendEndpoint = this.frontendEndpoint;
    } else {
      await bindWithRetry(this.backend, wildcardPort(o.backend), this.log);
      this.backendEndpoint = this.backend.lastEndpoint ?? o.backend;
    }
    this.loops.push(this.receive(this.frontend, this.frontendSends));
    if (!merged) this.loops.push(this.receive(this.backend, this.backendSends));
    this.pauses = new PauseDetector(o.heartbeatIntervalMs);
    this.heartbeatTimer = setInterval(() => this.heartbeat(), o.heartbeatIntervalMs);
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(SWEEP_INTERVAL_MS, o.heartbeatIntervalMs));
    this.memoryTrimmer = new MemoryTrimmer(o.memoryTrimIntervalMs, this.log);
    this.memoryTrimmer.start();
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
    this.memoryTrimmer?.close();
    this.frontendSends?.close();
    this.backendSends?.close();
    this.frontend?.close();
    if (this.backend !== this.frontend) this.backend?.close();
    await Promise.allSettled(this.loops);
    await this.security.close();
    this.log.info('broker closed');
  }

  // -------------------------------------------------------------------------------------------
  // Receiving
  // -------------------------------------------------------------------------------------------

  private async receive(socket: zmq.Router, via: SendQueue): Promise<void> {
    // receive() directly rather than the socket's async iterator, which wraps each message in one more
    // async call and result object.
    try {
      while (!socket.closed) {
        const frames = await socket.receive();
        try {
          this.route(frames, via);
        } catch (err) {
          this.log.error({ err }, 'error handling a message');
        }
      }
    } catch (err) {
      // Closing the socket ends a pending receive with EAGAIN.
      if (!this.closing && !socket.closed) this.log.error({ err }, 'receive loop failed');
    }
  }

  private route(frames: Buffer[], via: SendQueue): void {
    const identity = frames[0]!;
    const first = frames[1];
    const second = frames[2];
    if (first === undefined) return this.dropMalformed('no frames after identity', identity);
    if (this.security.isBanned(identity)) return; // a revoked or refused worker's connection: never reaches MDP
    try {
      if (first.equals(MDPC02) || (first.length === 0 && second?.equals(MDPC01))) {
        this.onClient(identity, frames.slice(1), via);
      } else if (first.equals(MDPW02) || (first.length === 0 && second?.equals(MDPW01))) {
        if (via === this.frontendSends && !this.workersOnFrontend) return this.dropMalformed('worker message on the client socket', identity);
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
    const { version, service, serviceFrame, body, tag } = parseClientRequest(frames);
    if (service.startsWith(MMI_PREFIX)) {
      via.push([identity, ...encodeClientReply(version, serviceFrame, [this.mmi(service, body, identity)], true, tag)], true);
      return;
    }
    const now = performance.now();
    let bytes = 0;
    for (const frame of body) bytes += frame.length;
    const request: PendingRequest = {
      client: identity,
      clientKey: identity.toString('latin1'),
      via,
      clientVersion: version,
      service,
      serviceFrame,
      body,
      bytes,
      deadline: now + this.deadlineMs(service, headerDeadlineMs(body[0])),
      receivedAt: now,
      requeues: 0,
      tag,
    };
    const nameProblem = serviceNameProblem(serviceFrame, this.options.maxServiceNameBytes);
    if (nameProblem) return this.answer(request, 'BAD_REQUEST', nameProblem);
    const queue = this.queues.get(service);
    if (!queue || queue.length === 0) {
      const worker = this.workers.pick(service);
      if (worker) return this.dispatch(request, worker);
    }
    if (!this.workers.forService(service)) return this.queueUnserved(request, queue);
    const target = queue ?? this.queueFor(service);
    if (target.length >= this.options.maxQueuedPerService || target.bytes + bytes > this.options.maxQueuedBytesPerService) {
      const full = target.length >= this.options.maxQueuedPerService ? `${target.length} waiting` : `${target.bytes + bytes} bytes would be waiting`;
      const retryAfterMs = target.drainMs(now, RETRY_AFTER_CEILING_MS);
      return this.answer(request, 'OVERLOADED', `queue of ${service} is full (${full}); retry in ${Math.ceil(retryAfterMs / 1000)} s`, { retryAfterMs });
    }
    target.push(request);
  }

  /**
   * The request's deadline, lowered to the longest its service's prefix allows, or, when it asks for
   * more, to the longest a worker offering the service declared in READY (a training worker's `train`).
   */
  private deadlineMs(service: string, asked: number | undefined): number {
    const wanted = asked ?? this.options.defaultDeadlineMs;
    let cap = Infinity;
    for (const [prefix, max] of this.deadlineCaps) {
      if (service.startsWith(prefix)) {
        cap = max;
        break;
      }
    }
    if (wanted <= cap) return wanted;
    let declared = 0;
    for (const worker of this.workers.forService(service) ?? []) declared = Math.max(declared, worker.maxDeadlineMs.get(service) ?? 0);
    return Math.min(wanted, Math.max(cap, declared));
  }

  /**
   * Queues a request for a service no worker offers (one may register before the deadline), within
   * the bounds on such services and their bytes: a flood of made-up names must not fill memory.
   */
  private queueUnserved(request: PendingRequest, queue: ServiceQueue | undefined): void {
    const o = this.options;
    if (!queue && this.unserved.services >= o.maxUnservedServices) {
      return this.answer(request, 'NO_WORKERS', `no worker offers ${request.service}, and ${this.unserved.services} other services without a worker have requests waiting`);
    }
    if ((queue?.length ?? 0) >= o.maxQueuedPerService) {
      return this.answer(request, 'OVERLOADED', `${request.service} has ${queue!.length} requests queued; retry later`);
    }
    if (this.unserved.bytes + request.bytes > o.maxUnservedBytes) {
      return this.answer(request, 'NO_WORKERS', `no worker offers ${request.service}, and the requests waiting for services without a worker are at their bound`);
    }
    if (!queue) this.unserved.services++;
    this.unserved.bytes += request.bytes;
    this.queueFor(request.service).push(request);
  }

  private queueFor(service: string): ServiceQueue {
    let queue = this.queues.get(service);
    if (!queue) this.queues.set(service, (queue = new ServiceQueue(service)));
    return queue;
  }

  /** Answers a request with an error and forgets it. */
  private answer(request: PendingRequest, code: ErrorCode, message: string, details?: Record<string, unknown>): void {
    this.metrics.answered(request, code);
    const reply = encodeError(new ZerveError(code, message, details ? { details } : undefined));
    request.via.push([request.client, ...encodeClientReply(request.clientVersion, request.serviceFrame, [reply], true, request.tag)], true);
  }

  private mmi(service: string, body: Buffer[], identity: Buffer): Buffer {
    switch (service) {
      case MMI_IDENTIFY:
        return Buffer.from(this.security.identify(identity, body[0]));
      case MMI_SERVICE: {
        const name = body[0]?.toString() ?? '';
        return Buffer.from(this.workers.forService(name)?.size ? '200' : '404');
      }
      case MMI_SERVICES:
        return encodeJson(this.serviceInfo());
      case MMI_SECURITY:
        return encodeJson(this.security.info());
      case MMI_STATS:
        return encodeJson(this.metrics.stats());
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
        const names = message.extension?.services ?? [message.service];
        const bad = names.map((n) => serviceNameProblem(Buffer.from(n), this.options.maxServiceNameBytes)).find(Boolean);
        if (bad) return this.dropMalformed(`READY: ${bad}`, identity);
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
        const admission = via === this.backendSends || this.sharedSocket ? this.security.admitWorker(identity, ext) : { ok: true as const };
        if (!admission.ok) {
          // Dropped, not told DISCONNECT: an honest worker with a bad proof would only retry in a loop.
          return this.security.refuseWorker(identity, admission.reason, ext?.keyProof?.publicKey);
        }
        const record: WorkerRecord = {
          identity,
          id,
          via,
          version: message.version,
          extended: ext !== undefined,
          services: new Set(ext ? ext.services : [message.service]),
          idempotent: new Set(ext?.idempotent),
          caller: ext?.caller === true,
          maxDeadlineMs: new Map(Object.entries(ext?.maxDeadlineMs ?? {})),
          capacity: ext?.capacity ?? 1,
          draining: ext?.draining === true,
          inFlight: new Map(),
          kind: ext?.kind ?? 'mdp',
          host: ext?.host ?? 'unknown',
          pid: ext?.pid ?? null,
          ...(ext?.models ? { models: ext.models } : {}),
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
        const token = readToken(message.client);
        const request = worker.inFlight.get(token);
        if (!request) {
          this.log.debug({ worker: id }, 'reply for an unknown or already settled request dropped');
          return;
        }
        if (message.final) {
          // The freed slot is refilled before the reply goes out: a worker of capacity 1 idles until then.
          worker.inFlight.delete(token);
          this.fill(worker);
        }
        if (request.answered) return;
        if (message.final) this.metrics.replied(request, message.body);
        if (message.final || request.clientVersion === 2) {
          request.via.push([request.client, ...encodeClientReply(request.clientVersion, request.serviceFrame, message.body, message.final, request.tag)], true);
        }
        return;
      }
      case 'heartbeat':
        if (worker && message.metrics) this.metrics.heartbeat(id, message.metrics);
        if (!worker) via.push([identity, ...encodeWorkerDisconnect(message.version)], true);
        return;
      case 'disconnect':
        if (worker) this.removeWorker(worker, 'worker disconnected');
        return;
    }
  }

  private dispatch(request: PendingRequest, worker: WorkerRecord): void {
    const token = ++this.tokenCounter;
    request.token = token;
    request.worker = worker;
    worker.inFlight.set(token, request);
    worker.lastDispatch = ++this.dispatchCounter;
    this.metrics.dispatched(request);
    // The caller frame is the broker's own: whatever a client puts in its body comes after it.
    const body = !worker.extended
      ? request.body
      : worker.caller
        ? [request.serviceFrame, this.security.callerFrame(request.clientKey, request.body[0]), ...request.body]
        : [request.serviceFrame, ...request.body];
    worker.via.push([worker.identity, ...encodeWorkerRequest(worker.version, tokenFrame(token), body)], true);
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
      const request = oldest.shift(now)!;
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
      const request = queue.shift(now)!;
      if (request.deadline <= now) this.answer(request, 'TIMEOUT', 'deadline passed while queued');
      else this.dispatch(request, worker);
    }
  }

  /** Workers whose key left the allowlist: told DISCONNECT, their routing ids ignored from now on, their requests requeued. */
  private revoke(ids: string[]): void {
    for (const id of ids) {
      const worker = this.workers.get(id);
      const publicKey = this.security.keyOfWorker(id);
      this.security.ban(Buffer.from(id, 'hex'));
      if (worker) {
        this.log.warn({ worker: id, host: worker.host, pid: worker.pid, publicKey }, 'worker key revoked');
        this.disconnect(worker, 'key revoked');
      }
    }
  }

  private disconnect(worker: WorkerRecord, reason: string): void {
    worker.via.push([worker.identity, ...encodeWorkerDisconnect(worker.version)], true);
    this.removeWorker(worker, reason);
  }

  /** Forgets a worker; its idempotent in-flight requests go to other workers, the rest fail WORKER_LOST. */
  private removeWorker(worker: WorkerRecord, reason: string): void {
    this.workers.remove(worker);
    this.security.forget(worker.id);
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
    this.metrics.workerRemoved(worker.id, reason !== 'worker disconnected', requeued);
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
    const { heartbeatIntervalMs, heartbeatLiveness } = this.options;
    // After a pause of the broker's own, each worker gets one liveness period from now instead of all being dropped.
    const pausedMs = this.pauses!.tick(now);
    const paused = pausedMs > 0;
    if (paused) this.log.warn({ sinceLastMs: Math.round(pausedMs) }, 'broker was paused: worker liveness starts again');
    for (const worker of [...this.workers.all()]) {
      if (paused) {
        worker.expiry = Math.max(worker.expiry, now + heartbeatIntervalMs * heartbeatLiveness);
      } else if (worker.expiry <= now) {
        this.removeWorker(worker, 'heartbeat expired');
        continue;
      }
      worker.via.push([worker.identity, ...encodeWorkerHeartbeat(worker.version)]);
    }
  }

  /** Answers requests whose deadline passed: queued ones TIMEOUT (or NO_WORKERS), in-flight ones TIMEOUT. */
  private sweep(): void {
    const now = performance.now();
    const unserved = { services: 0, bytes: 0 };
    for (const [service, queue] of this.queues) {
      const served = this.workers.forService(service) !== undefined;
      for (const request of queue.takeExpired(now)) {
        if (served) {
          this.answer(request, 'TIMEOUT', `no free worker for ${service} before the deadline`);
        } else {
          this.answer(request, 'NO_WORKERS', `no worker offers ${service}`);
        }
      }
      if (queue.length === 0) {
        // An idle entry goes: junk service names must not pile up.
        if (!served) this.queues.delete(service);
      } else if (!served) {
        unserved.services++;
        unserved.bytes += queue.bytes;
      }
    }
    this.unserved = unserved;
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

/** Bytes of the token that stands for the client towards the worker: a dispatch counter, big-endian. */
const TOKEN_BYTES = 6;

function tokenFrame(token: number): Buffer {
  const frame = Buffer.allocUnsafe(TOKEN_BYTES);
  frame.writeUIntBE(token, 0, TOKEN_BYTES);
  return frame;
}

/** The token a worker's reply carries back, or -1 (no request has it) when the frame is not one. */
function readToken(frame: Buffer): number {
  return frame.length === TOKEN_BYTES ? frame.readUIntBE(0, TOKEN_BYTES) : -1;
}

/** ZeroMQ binds a random port with `*`; accept the common `:0` spelling too. */
function wildcardPort(endpoint: string): string {
  return endpoint.replace(/^(tcp:\/\/[^/]+):0$/, '$1:*');
}

/** Why a service name is refused (not printable ASCII without spaces, or too long), or undefined. */
function serviceNameProblem(name: Buffer, maxBytes: number): string | undefined {
  if (name.length === 0) return 'empty service name';
  if (name.length > maxBytes) return `service name of ${name.length} bytes; at most ${maxBytes}`;
  for (let i = 0; i < name.length; i++) {
    const byte = name[i]!;
    if (byte < 0x21 || byte > 0x7e) return `service name must be printable ASCII without spaces (byte 0x${byte.toString(16)} at ${i})`;
  }
  return undefined;
}
