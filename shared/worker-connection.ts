import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { DEFAULT_WORKER_CONNECTION_OPTIONS, type WorkerConnectionOptions } from './config.ts';
import { ZerveError } from './errors.ts';
import { logger, type Logger } from './logger.ts';
import { encodeError } from './messages.ts';
import type { ServedModelVersions } from './models.ts';
import { ANONYMOUS_CALLER, HOSTNAME, encodeMetricsHeartbeat, encodeReady, encodeWorkerReply, parseCaller, type CallerIdentity, type ReadyExtension } from './protocol.ts';
import { PauseDetector } from './pause-detector.ts';
import type { SendQueue } from './send-queue.ts';
import { parseBrokerList, pairBrokerKeys } from './broker-list.ts';
import type { WorkerMetrics } from './worker-metrics.ts';
import { workerCurve } from './curve-socket-options.ts';
import { BrokerLink, type BrokerLinkOwner } from './broker-link.ts';
import { creditDonor, splitCapacity } from './capacity-shares.ts';
import { proveKey } from './key-proof.ts';

export interface RequestContext {
  /** The service the request was sent to. */
  service: string;
  /**
   * Who sent it, as the broker stamped it (docs/auth.md, "Identity on the ZeroMQ side"); anonymous
   * unless the worker was made with `caller: true`.
   */
  caller: CallerIdentity;
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
  /**
   * Whether a request only follows work already running here (a resend attached to it), so it takes
   * no unit of the capacity and never waits for one. @defaultValue () => false
   */
  follows?: (service: string, body: Buffer[]) => boolean;
  /** Whether the worker asks the broker for each request's caller (`RequestContext.caller`). @defaultValue false */
  caller?: boolean;
}

/**
 * An MDP/0.2 worker on one broker or several: a DEALER socket to each broker in `connect` (a
 * {@link BrokerLink}), READY with Zerve's extension (several services, one capacity) on each,
 * heartbeats both ways, reconnection on its own when a broker goes silent or says DISCONNECT (so a
 * restarted broker gets it back), and a graceful `close()`.
 *
 * With several brokers the capacity is shared out as grants (shared/capacity-shares.ts): each broker
 * is told its grant as the capacity in its READY, a broker that fills its grant takes credit from one
 * that leaves its own unused, and a broker that goes silent gives its share to the others. The worker
 * itself never runs more than `capacity` requests at once, whatever the brokers send.
 *
 * Events: `'connected'` after each READY; `'refused'` (a NOT_ADMITTED ZerveError) when a broker's
 * ZAP handler turns this connection's CURVE key away; `'reconnecting'` (the reason, the endpoint)
 * before each new connection after a silent broker or a DISCONNECT; `'shares'` (the grants, in the
 * order of `connect`) whenever they change.
 */
export class WorkerConnection extends EventEmitter implements BrokerLinkOwner {
  readonly options: WorkerConnectionOptions;
  private readonly isIdempotent: (service: string) => boolean;
  private readonly maxDeadlineOf: (service: string) => number | undefined;
  private readonly follows: (service: string, body: Buffer[]) => boolean;
  private readonly wantsCaller: boolean;
  private services: string[];
  private models?: ServedModelVersions[];
  private readonly log: Logger;
  private readonly links: BrokerLink[];
  private heartbeatTimer?: NodeJS.Timeout;
  private pauses?: PauseDetector;
  private draining = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Requests running in a handler now (at most `capacity`). */
  private running = 0;
  /** Requests that arrived while `capacity` were running, first come first served. */
  private readonly waiting: Array<() => void> = [];
  private readonly abort = new AbortController();
  private closing?: Promise<void>;
  private metrics?: WorkerMetrics;
  private lastMetrics = -Infinity;
  private metricsLink?: BrokerLink;
  private creditTimer?: NodeJS.Timeout;

  constructor(services: string[], private readonly handler: RequestHandler, options: Partial<WorkerConnectionOptions> & ServiceTraits = {}, log: Logger = logger) {
    super();
    const { idempotent, maxDeadlineMs, follows, caller, ...connection } = options;
    this.wantsCaller = caller === true;
    this.options = { ...DEFAULT_WORKER_CONNECTION_OPTIONS, ...connection };
    this.isIdempotent = idempotent ?? (() => false);
    this.maxDeadlineOf = maxDeadlineMs ?? (() => undefined);
    this.follows = follows ?? (() => false);
    if (!(Number.isInteger(this.options.capacity) && this.options.capacity >= 1)) {
      throw new ZerveError('BAD_CONFIG', `capacity must be a positive integer, got ${this.options.capacity}`);
    }
    if (!(this.options.creditIdleMs >= 0)) throw new ZerveError('BAD_CONFIG', `creditIdleMs must not be negative, got ${this.options.creditIdleMs}`);
    this.services = [...services];
    this.log = log.child({ component: 'worker', kind: this.options.kind });
    const endpoints = parseBrokerList(this.options.connect, 'connect');
    const keys = pairBrokerKeys(this.options.brokerKey, endpoints.length);
    this.links = endpoints.map((endpoint, i) => {
      const curve = workerCurve({ ...this.options, brokerKey: keys[i]! });
      const linkLog = endpoints.length > 1 ? this.log.child({ broker: endpoint }) : this.log;
      return new BrokerLink(endpoint, curve, this.options, this, linkLog);
    });
    this.share(performance.now());
  }

  /** Requests being handled now (running or waiting for a free slot). */
  get busy(): number {
    return this.inFlight.size;
  }

  /** The capacity announced to each broker now, in the order of `connect`. */
  get grants(): number[] {
    return this.links.map((link) => link.grant);
  }

  /**
   * Set while a broker refuses this connection's CURVE key (its ZAP handler answered 400: the key is
   * not in its allowlist); cleared by the next handshake that succeeds. ZeroMQ itself retries quietly.
   */
  get refusal(): ZerveError | undefined {
    return this.links.find((link) => link.refusal)?.refusal;
  }

  /** Connects and registers; reconnects by itself until closed. Registers nothing while there are no services. */
  start(): void {
    for (const link of this.links) link.connect();
    this.pauses = new PauseDetector(this.options.heartbeatIntervalMs);
    this.heartbeatTimer = setInterval(() => this.tick(), this.options.heartbeatIntervalMs);
  }

  /** Changes the services offered (for example when a model is added), re-sending READY; `models` describes them for `mmi.workers`. */
  setServices(services: string[], models?: ServedModelVersions[]): void {
    this.services = [...services];
    this.models = models;
    for (const link of this.links) link.sendReady();
  }

  /** Carries these metrics to one broker at a time on a HEARTBEAT every `metricsIntervalMs` (Zerve's extension). */
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
    for (const link of this.links) link.sendReady(); // tells each broker to send nothing new
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
    clearTimeout(this.creditTimer);
    await Promise.all(this.links.map((link) => link.disconnect()));
    for (const link of this.links) link.close();
    this.log.info('worker closed');
  }

  /** READY for `link`, announcing its grant as the capacity; undefined while there are no services. */
  ready(link: BrokerLink): Buffer[] | undefined {
    if (this.services.length === 0) return undefined;
    const extension: ReadyExtension = {
      services: this.services,
      capacity: link.grant,
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
    if (this.wantsCaller) extension.caller = true;
    if (link.curve) extension.keyProof = proveKey(link.curve.keyPair, link.curve.brokerPublicKey, Buffer.from(link.routingId));
    if (this.models) extension.models = this.models;
    this.emit('connected', this.services);
    return encodeReady(extension);
  }

  onLive(link: BrokerLink): void {
    this.log.info({ broker: link.endpoint }, 'broker is back: sharing capacity with it again');
    this.reshare();
  }

  onLost(link: BrokerLink, reason: string): void {
    this.emit('reconnecting', reason, link.endpoint);
    if (this.metricsLink === link) this.lastMetrics = -Infinity; // the next broker gets the metrics at the next tick
    this.reshare();
  }

  onRefused(_link: BrokerLink, error: ZerveError): void {
    this.emit('refused', error);
  }

  /** Splits the capacity evenly over the brokers that are up and tells each its grant. */
  private reshare(): void {
    const before = this.grants;
    this.share(performance.now());
    const changed = this.links.filter((link, i) => link.grant !== before[i]);
    for (const link of changed) link.sendReady();
    if (changed.length > 0) this.emit('shares', this.grants);
  }

  private share(now: number): void {
    const grants = splitCapacity(this.options.capacity, this.links);
    this.links.forEach((link, i) => {
      link.grant = grants[i]!;
      link.lastFullAt = now;
    });
  }

  /** Moves one unit of credit to `link`, which has its whole grant in flight, from a broker that leaves part of its own unused. */
  private rebalance(link: BrokerLink, now: number): void {
    link.lastFullAt = now;
    const donor = creditDonor(this.links, link, now, this.options.creditIdleMs);
    if (!donor) {
      // A broker with credit to spare may just not have been idle long enough yet: look again then,
      // since a broker with its whole grant in flight sends nothing that would bring us back here.
      const spare = this.links.some((other) => other !== link && other.up && other.grant > 1 && other.inFlight < other.grant);
      if (spare && !this.creditTimer && !this.closing) {
        this.creditTimer = setTimeout(() => {
          this.creditTimer = undefined;
          if (link.up && link.inFlight >= link.grant && !this.closing) this.rebalance(link, performance.now());
        }, this.options.creditIdleMs).unref();
      }
      return;
    }
    donor.grant--;
    link.grant++;
    donor.lastFullAt = now;
    donor.sendReady();
    link.sendReady();
    this.emit('shares', this.grants);
  }

  private tick(): void {
    const now = performance.now();
    // After a pause of this process's own, each broker gets one liveness period from now, as the
    // broker does for its workers after a pause of its own.
    const paused = this.pauses!.tick(now) > 0;
    // Metrics go through one broker at a time (the first that is up), so that summing a series over
    // brokers counts each worker once.
    this.metricsLink = this.links.find((link) => link.up);
    const metricsDue = this.metrics !== undefined && now - this.lastMetrics >= this.options.metricsIntervalMs;
    if (metricsDue && this.metricsLink) this.lastMetrics = now;
    const registered = this.services.length > 0;
    for (const link of this.links) {
      if (paused) link.extendExpiry(now);
      const metrics = metricsDue && link === this.metricsLink ? () => encodeMetricsHeartbeat(this.metrics!.snapshot()) : undefined;
      link.tick(now, registered, metrics);
    }
  }

  onRequest(link: BrokerLink, client: Buffer, frames: Buffer[], sends: SendQueue): void {
    // The broker puts the service first for workers registered with the extension (see protocol.ts).
    const service = frames[0]?.toString() ?? '';
    // Then the caller frame, when this worker asked for it in READY.
    const body = frames.slice(this.wantsCaller ? 2 : 1);
    const generation = link.generation;
    const reply = (frames: Buffer[], final: boolean) => {
      // A reply for a request from an earlier connection goes nowhere: that broker is gone.
      if (sends === link.sends) link.send(encodeWorkerReply(client, frames, final));
    };
    const ctx: RequestContext = {
      service,
      caller: this.wantsCaller ? parseCaller(frames[1]) : ANONYMOUS_CALLER,
      signal: this.abort.signal,
      partial: (frames) => reply(frames, false),
    };
    link.inFlight++;
    if (this.links.length > 1 && link.inFlight >= link.grant) this.rebalance(link, performance.now());
    // A follower runs beside the request it follows, which already holds the unit of capacity.
    const follower = this.follows(service, body);
    const task = (async () => {
      if (!follower && this.running >= this.options.capacity) await new Promise<void>((resolve) => this.waiting.push(resolve));
      // Its broker went away while it waited: nobody could get the answer.
      if (generation !== link.generation) return;
      if (!follower) this.running++;
      try {
        reply(await this.handler(body, ctx), true);
      } catch (err) {
        const error = ZerveError.from(err);
        if (error.code === 'INTERNAL') this.log.error({ err, service }, 'request failed');
        reply([encodeError(error)], true);
      } finally {
        if (!follower) this.running--;
      }
    })();
    this.inFlight.add(task);
    void task.finally(() => {
      this.inFlight.delete(task);
      if (generation === link.generation) link.inFlight--;
      if (!follower) this.waiting.shift()?.();
    });
  }
}
