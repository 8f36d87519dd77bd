import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zmq from 'zeromq';
import { DEFAULT_WORKER_CONNECTION_OPTIONS, type WorkerConnectionOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { logger, type Logger } from '../shared/logger.ts';
import { encodeError } from '../shared/messages.ts';
import type { ServedModelVersions } from '../shared/models.ts';
import {
  HOSTNAME,
  MDPW02,
  ProtocolError,
  WorkerCommand,
  encodeMetricsHeartbeat,
  encodeReady,
  encodeWorkerReply,
  parseBrokerMessage,
  type ReadyExtension,
} from '../shared/protocol.ts';
import { PauseDetector } from '../shared/pause-detector.ts';
import { SendQueue } from '../shared/send-queue.ts';
import { watchSocketEvents } from '../shared/socket-events.ts';
import type { WorkerMetrics } from './worker-metrics.ts';
import { workerCurve, type WorkerCurve } from '../shared/curve-socket-options.ts';
import { proveKey } from '../shared/key-proof.ts';

const HEARTBEAT = [MDPW02, Buffer.from([WorkerCommand.HEARTBEAT])];
const DISCONNECT = [MDPW02, Buffer.from([WorkerCommand.DISCONNECT])];

export interface RequestContext {
  /** The service the request was sent to. */
  service: string;
  /**
   * Aborted, with a WORKER_LOST ZerveError as its reason, when the worker is closing and the
   * request is still running after `drainTimeoutMs`.
   */
  signal: AbortSignal;
  /** Sends an MDP/0.2 PARTIAL reply (progress) before the final one. */
  partial(body: Buffer[]): void;
}

/** Answers one request with the FINAL body; a thrown ZerveError becomes an error reply. */
export type RequestHandler = (body: Buffer[], ctx: RequestContext) => Promise<Buffer[]>;

/** What a worker declares about its services besides their names. */
export interface ServiceTraits {
  /** Whether a request to `service` may be resent to another worker if this one dies with it. @defaultValue () => false */
  idempotent?: (service: string) => boolean;
  /** The longest deadline a request to `service` may ask for, when longer than the broker's cap (declared in READY). @defaultValue () => undefined */
  maxDeadlineMs?: (service: string) => number | undefined;
}

/**
 * An MDP/0.2 worker: one DEALER socket to the broker, READY with Zerve's extension (several services,
 * one capacity), heartbeats both ways, reconnection on its own when the broker goes silent or says
 * DISCONNECT (so a restarted broker gets it back), and a graceful `close()`.
 *
 * Events: `'connected'` after each READY; `'refused'` (a NOT_ADMITTED ZerveError) when the broker's
 * ZAP handler turns this connection's CURVE key away; `'reconnecting'` (the reason) before each new
 * connection after a silent broker or a DISCONNECT.
 */
export class WorkerConnection extends EventEmitter {
  readonly options: WorkerConnectionOptions;
  private readonly isIdempotent: (service: string) => boolean;
  private readonly maxDeadlineOf: (service: string) => number | undefined;
  private services: string[];
  private models?: ServedModelVersions[];
  private socket?: zmq.Dealer;
  private sends?: SendQueue;
  private readonly log: Logger;
  private heartbeatTimer?: NodeJS.Timeout;
  private brokerExpiry = 0;
  private pauses?: PauseDetector;
  private lastSend = 0;
  private draining = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private closing?: Promise<void>;
  private generation = 0;
  private metrics?: WorkerMetrics;
  private lastMetrics = -Infinity;
  private readonly curve?: WorkerCurve;
  /** This connection's routing id: chosen here, so the READY key proof can bind to it. */
  private routingId = '';
  /**
   * Set while the broker refuses this connection's CURVE key (its ZAP handler answered 400: the key is
   * not in its allowlist); cleared by the next handshake that succeeds. ZeroMQ itself retries quietly.
   */
  refusal?: ZerveError;

  constructor(services: string[], private readonly handler: RequestHandler, options: Partial<WorkerConnectionOptions> & ServiceTraits = {}, log: Logger = logger) {
    super();
    const { idempotent, maxDeadlineMs, ...connection } = options;
    this.options = { ...DEFAULT_WORKER_CONNECTION_OPTIONS, ...connection };
    this.isIdempotent = idempotent ?? (() => false);
    this.maxDeadlineOf = maxDeadlineMs ?? (() => undefined);
    if (!(Number.isInteger(this.options.capacity) && this.options.capacity >= 1)) {
      throw new ZerveError('BAD_CONFIG', `capacity must be a positive integer, got ${this.options.capacity}`);
    }
    this.services = [...services];
    this.log = log.child({ component: 'worker', kind: this.options.kind });
    this.curve = workerCurve(this.options);
  }

  /** Requests being handled now. */
  get busy(): number {
    return this.inFlight.size;
  }

  /** Connects and registers; reconnects by itself until closed. Registers nothing while there are no services. */
  start(): void {
    this.connect();
    this.pauses = new PauseDetector(this.options.heartbeatIntervalMs);
    this.heartbeatTimer = setInterval(() => this.tick(), this.options.heartbeatIntervalMs);
  }

  /** Changes the services offered (for example when a model is added), re-sending READY; `models` describes them for `mmi.workers`. */
  setServices(services: string[], models?: ServedModelVersions[]): void {
    this.services = [...services];
    this.models = models;
    this.ready();
  }

  /** Carries these metrics to the broker on a HEARTBEAT every `metricsIntervalMs` (Zerve's extension). */
  reportMetrics(metrics: WorkerMetrics): void {
    this.metrics = metrics;
  }

  /**
   * Stops taking work, lets in-flight requests run for up to `drainTimeoutMs`, then aborts their
   * signal and waits for them to end, then sends DISCONNECT and closes; idempotent.
   *
   * Events: `'drain-timeout'` (with the count of requests still running) when it aborts them.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.draining = true;
    this.ready(); // tells the broker to send nothing new
    // Requests the broker sent before it read the draining READY arrive while others finish: wait for those too.
    const settled = (async () => {
      while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    })();
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.options.drainTimeoutMs);
    });
    if (await Promise.race([settled.then(() => false), graceOver])) {
      const running = this.inFlight.size;
      this.log.warn({ running, drainTimeoutMs: this.options.drainTimeoutMs }, 'drain timeout: aborting the requests still running');
      this.emit('drain-timeout', running);
      this.abort.abort(new ZerveError('WORKER_LOST', `the ${this.options.kind} worker on ${HOSTNAME} (pid ${process.pid}) stopped before the request ended`));
      await settled;
    }
    clearTimeout(timer);
    clearInterval(this.heartbeatTimer);
    if (this.socket && this.sends) {
      // A broker that is gone, or refuses this key, takes nothing: a DEALER with no peer would wait forever.
      const waitMs = this.refusal ? 0 : this.livenessMs();
      const flushed = await Promise.race([this.sends.flush().then(() => true), sleep(waitMs, false, { ref: false })]);
      this.sends.close();
      if (flushed) {
        // One last direct send; the socket is idle, so no other send can be pending.
        await Promise.race([this.socket.send(DISCONNECT).catch(() => undefined), sleep(waitMs, undefined, { ref: false })]);
      }
    }
    this.teardown();
    this.log.info('worker closed');
  }

  private connect(): void {
    const generation = ++this.generation;
    // A fresh routing id per connection: a broker that revoked the last one's key ignores it for good.
    this.routingId = `w${randomBytes(12).toString('hex')}`;
    const socket = new zmq.Dealer({
      linger: 0,
      sendHighWaterMark: 100_000,
      receiveHighWaterMark: 100_000,
      routingId: this.routingId,
      ...this.curve?.socketOptions,
    });
    if (this.curve) this.watchHandshakes(socket, generation);
    socket.connect(this.options.connect);
    this.socket = socket;
    this.sends = new SendQueue(socket, this.log);
    this.brokerExpiry = performance.now() + this.livenessMs();
    this.lastMetrics = -Infinity; // a new broker gets the metrics at the next tick
    this.ready();
    void this.receive(socket, generation);
  }

  private teardown(): void {
    this.sends?.close();
    this.socket?.close();
    this.socket = undefined;
    this.sends = undefined;
  }

  private reconnect(reason: string): void {
    if (this.closing) return;
    this.log.warn({ reason, broker: this.options.connect }, 'reconnecting to broker');
    this.emit('reconnecting', reason);
    this.teardown();
    setTimeout(() => {
      if (!this.closing) this.connect();
    }, this.options.reconnectDelayMs).unref();
  }

  /** Notes the broker refusing this key (see `refusal`), which would otherwise look like a broker that never answers. */
  private watchHandshakes(socket: zmq.Dealer, generation: number): void {
    // Without a watch, a refused key looks like a silent broker, as it would without this.
    watchSocketEvents(
      socket,
      (event) => {
        if (generation !== this.generation) return;
        if (event.type === 'handshake') {
          this.refusal = undefined;
        } else if (event.type === 'handshake:error:auth' && !this.refusal) {
          const key = this.curve!.keyPair.publicKey;
          this.refusal = new ZerveError(
            'NOT_ADMITTED',
            `the broker at ${this.options.connect} refused this process's CURVE key ${key} (ZAP status ${event.error.status}): ` +
              "it is not in the broker's --authorized-workers; add this key's .pub there",
            { details: { publicKey: key, endpoint: this.options.connect } },
          );
          this.log.error({ broker: this.options.connect, publicKey: key }, 'the broker refused this key (not in its --authorized-workers); retrying');
          this.emit('refused', this.refusal);
        }
      },
      this.log,
    );
  }

  private livenessMs(): number {
    return this.options.heartbeatIntervalMs * this.options.heartbeatLiveness;
  }

  private ready(): void {
    if (!this.sends || this.services.length === 0) return;
    const extension: ReadyExtension = {
      services: this.services,
      capacity: this.options.capacity,
      kind: this.options.kind,
      host: HOSTNAME,
      pid: process.pid,
    };
    const idempotent = this.services.filter(this.isIdempotent);
    if (idempotent.length > 0) extension.idempotent = idempotent;
    const caps = this.services.flatMap((service) => {
      const ms = this.maxDeadlineOf(service);
      return ms === undefined ? [] : [[service, ms] as const];
    });
    if (caps.length > 0) extension.maxDeadlineMs = Object.fromEntries(caps);
    if (this.draining) extension.draining = true;
    if (this.curve) extension.keyProof = proveKey(this.curve.keyPair, this.curve.brokerPublicKey, Buffer.from(this.routingId));
    if (this.models) extension.models = this.models;
    this.send(encodeReady(extension));
    this.emit('connected', this.services);
  }

  private send(message: Buffer[]): void {
    if (this.sends?.push(message, true)) this.lastSend = performance.now();
  }

  private tick(): void {
    const now = performance.now();
    // After a pause of this process's own, the broker gets one liveness period from now, as the broker
    // does for its workers after a pause of its own.
    if (this.pauses!.tick(now) > 0) this.brokerExpiry = Math.max(this.brokerExpiry, now + this.livenessMs());
    // Not registered (no services yet): the broker answers a HEARTBEAT from an unknown worker with
    // DISCONNECT and sends none itself, so neither side's heartbeat means anything until READY.
    if (this.services.length === 0) {
      this.brokerExpiry = now + this.livenessMs();
      return;
    }
    if (now > this.brokerExpiry) return this.reconnect('broker silent for the liveness period');
    // Sent even while replies flow (they stand in for heartbeats then), so a busy worker reports too.
    if (this.metrics && now - this.lastMetrics >= this.options.metricsIntervalMs) {
      this.lastMetrics = now;
      return this.send(encodeMetricsHeartbeat(this.metrics.snapshot()));
    }
    if (now - this.lastSend >= this.options.heartbeatIntervalMs * 0.9) this.send(HEARTBEAT);
  }

  private async receive(socket: zmq.Dealer, generation: number): Promise<void> {
    try {
      for await (const frames of socket) {
        if (generation !== this.generation) return;
        this.brokerExpiry = performance.now() + this.livenessMs();
        let message;
        try {
          message = parseBrokerMessage(frames);
        } catch (err) {
          if (err instanceof ProtocolError) {
            this.log.warn({ reason: err.message }, 'malformed message from broker dropped');
            continue;
          }
          throw err;
        }
        if (message.kind === 'disconnect') return this.reconnect('broker sent DISCONNECT');
        if (message.kind === 'request') this.handle(message.client, message.body);
      }
    } catch (err) {
      if (!socket.closed) this.log.error({ err }, 'worker receive loop failed');
    }
  }

  private handle(client: Buffer, frames: Buffer[]): void {
    // The broker puts the service first for workers registered with the extension (see protocol.ts).
    const service = frames[0]?.toString() ?? '';
    const body = frames.slice(1);
    const sends = this.sends;
    const reply = (frames: Buffer[], final: boolean) => {
      // A reply for a request from an earlier connection goes nowhere: that broker is gone.
      if (sends === this.sends) this.send(encodeWorkerReply(client, frames, final));
    };
    const ctx: RequestContext = {
      service,
      signal: this.abort.signal,
      partial: (frames) => reply(frames, false),
    };
    const task = (async () => {
      try {
        reply(await this.handler(body, ctx), true);
      } catch (err) {
        const error = ZerveError.from(err);
        if (error.code === 'INTERNAL') this.log.error({ err, service }, 'request failed');
        reply([encodeError(error)], true);
      }
    })();
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }
}
