import { randomBytes } from 'node:crypto';
import * as zmq from 'zeromq';
import { DEFAULT_CLIENT_OPTIONS, type ClientOptions } from './config.ts';
import { clientCurveSocketOptions } from './curve-socket-options.ts';
import { ZerveError } from './errors.ts';
import { logger, type Logger } from './logger.ts';
import {
  decodeReply,
  encodeHeader,
  type ClassifyReply,
  type RequestHeader,
  type ServiceInfo,
  type WorkerInfo,
} from './messages.ts';
import { proveKey } from './key-proof.ts';
import {
  MMI_IDENTIFY,
  MMI_SERVICE,
  MMI_SERVICES,
  MMI_WORKERS,
  classifyService,
  encodeClientRequest,
  parseClientReply,
} from './protocol.ts';
import { SendQueue } from './send-queue.ts';
import { parseBrokerList, pairBrokerKeys } from './broker-list.ts';
import { isIdempotentService } from './idempotent-services.ts';
import { watchSocketEvents } from './socket-events.ts';

export interface RequestOptions {
  /** Time to wait for the next reply (a PARTIAL restarts it). @defaultValue the client's timeoutMs */
  timeoutMs?: number;
  /** Resends after a timeout, each with a new tag, before failing with TIMEOUT. @defaultValue the client's retries */
  retries?: number;
  /** Aborts the request: the call rejects with CANCELED and a late reply is dropped. */
  signal?: AbortSignal;
  /**
   * Whether the request may run twice, so that it is resent through another broker when the one
   * holding it goes away (a request with an idempotency key is). @defaultValue the client's `idempotent(service)`
   */
  idempotent?: boolean;
  /**
   * Whether the request's PARTIAL replies may go on through another broker: its worker attaches a
   * resend to the request still running (a `train` with a `key` does), so it is resent when its
   * broker goes away even after PARTIALs arrived. Implies `idempotent`. @defaultValue false
   */
  resumable?: boolean;
}

/** One broker as a client sees it (`ZerveClient.brokers`). */
export interface BrokerState {
  endpoint: string;
  /** Connected (with several brokers), or simply in use (with one). */
  up: boolean;
  /** FINAL replies that came through it. */
  replies: number;
}

export interface ReplyChunk {
  final: boolean;
  body: Buffer[];
}

/**
 * A Majordomo (MDP/0.2) client with one DEALER socket per broker for any number of requests in flight. Each
 * request carries a correlation tag in Zerve's tagged REQUEST (`shared/protocol.ts`), which the broker
 * returns with every reply, so replies are matched to their requests by tag. A request that times out
 * is sent again under a new tag (the Guide's Lazy Pirate, without the fresh socket a REQ needs), so a
 * late reply can never be taken for another request's: its tag is forgotten.
 *
 * Given several brokers (`broker` a comma-separated list), it sends each request through the next
 * broker that is up, in turn. A broker counts as gone when its connection drops or its ZMTP heartbeat
 * goes unanswered for `heartbeatIntervalMs × heartbeatLiveness`; the requests it held are then sent
 * again through another broker if they are idempotent (and nothing of their reply arrived yet), or
 * fail with BROKER_LOST. Replies are matched by tag, so a caller is never answered twice.
 *
 * @example
 * const client = new ZerveClient({ broker: 'tcp://127.0.0.1:5555' });
 * const reply = await client.classify('squeezenet', await readFile('kitten.png'), { topk: 3 });
 * await client.close();
 */
export class ZerveClient {
  readonly options: ClientOptions;
  private readonly log: Logger;
  private routes?: BrokerRoute[];
  private nextRoute = 0;
  private readonly endpoints: string[];
  private readonly brokerKeys: string[];
  /** Requests waiting for replies, by tag. */
  private readonly calls = new Map<number, PendingCall>();
  private nextTag = 0;
  private closing?: Promise<void>;
  private readonly isIdempotent: (service: string) => boolean;

  constructor(options: Partial<ClientOptions> & { idempotent?: (service: string) => boolean } = {}, log: Logger = logger) {
    const { idempotent, ...clientOptions } = options;
    this.options = { ...DEFAULT_CLIENT_OPTIONS, ...clientOptions };
    this.isIdempotent = idempotent ?? isIdempotentService;
    const o = this.options;
    if (!(o.timeoutMs > 0 && o.retries >= 0 && o.maxInFlight >= 1)) {
      throw new ZerveError('BAD_CONFIG', 'timeoutMs and maxInFlight must be positive, retries not negative');
    }
    this.log = log.child({ component: 'client' });
    this.endpoints = parseBrokerList(this.options.broker, 'broker');
    this.brokerKeys = pairBrokerKeys(this.options.brokerKey, this.endpoints.length);
    // Read the key files now, so a bad one fails here rather than at the first request.
    for (const brokerKey of new Set(this.brokerKeys)) clientCurveSocketOptions({ ...this.options, brokerKey });
  }

  /** Requests waiting for their FINAL reply. */
  get inFlight(): number {
    return this.calls.size;
  }

  /** Each broker of the list: whether it is up now, and how many FINAL replies came through it. */
  get brokers(): BrokerState[] {
    return this.endpoints.map((endpoint, i) => {
      const route = this.routes?.[i];
      return { endpoint, up: route?.up ?? false, replies: route?.replies ?? 0 };
    });
  }

  /** Sends a request and resolves with the FINAL reply's body frames (PARTIALs are skipped). */
  async request(service: string, body: Buffer[], options: RequestOptions = {}): Promise<Buffer[]> {
    // The loop of `stream` without an async generator: this is every request's hot path.
    const { timeoutMs, retries, signal, serviceFrame, idempotent, resumable } = this.settle(service, options);
    for (let attempt = 0, failovers = 0; ; ) {
      const call = this.send(serviceFrame, body, timeoutMs, signal, idempotent, resumable);
      try {
        for (;;) {
          const chunk = await call.next();
          if (chunk.final) return chunk.body;
        }
      } catch (err) {
        if (this.rethrowUnlessRetry(err, service, timeoutMs, attempt, retries, failovers)) failovers++;
        else attempt++;
      } finally {
        this.forget(call);
      }
    }
  }

  /** Sends a request and parses the FINAL reply as JSON; an error reply throws its ZerveError. */
  async requestJson<T>(service: string, body: Buffer[], options: RequestOptions = {}): Promise<T> {
    return decodeReply<T>((await this.request(service, body, options))[0]);
  }

  /** Classifies one encoded image (JPEG, PNG, WebP, GIF, AVIF, TIFF) with `model`. */
  classify(model: string, image: Buffer, header: RequestHeader = {}, options: RequestOptions = {}): Promise<ClassifyReply> {
    const deadlineMs = header.deadlineMs ?? options.timeoutMs ?? this.options.timeoutMs;
    return this.requestJson<ClassifyReply>(classifyService(model), [encodeHeader({ ...header, deadlineMs }), image], options);
  }

  /** Live services with their workers, capacity and queue depth (`mmi.services`). */
  services(options: RequestOptions = {}): Promise<ServiceInfo[]> {
    return this.requestJson<ServiceInfo[]>(MMI_SERVICES, [], options);
  }

  /** Connected workers with host, pid, services, capacity and in-flight count (`mmi.workers`). */
  workers(options: RequestOptions = {}): Promise<WorkerInfo[]> {
    return this.requestJson<WorkerInfo[]>(MMI_WORKERS, [], options);
  }

  /** Whether at least one worker offers `service` (`mmi.service`, RFC 8). */
  async hasService(service: string, options: RequestOptions = {}): Promise<boolean> {
    const [status] = await this.request(MMI_SERVICE, [Buffer.from(service)], options);
    return status?.toString() === '200';
  }

  /** Sends a request and yields each PARTIAL reply, then the FINAL one. */
  async *stream(service: string, body: Buffer[], options: RequestOptions = {}): AsyncGenerator<ReplyChunk> {
    const { timeoutMs, retries, signal, serviceFrame, idempotent, resumable } = this.settle(service, options);
    for (let attempt = 0, failovers = 0; ; ) {
      const call = this.send(serviceFrame, body, timeoutMs, signal, idempotent, resumable);
      try {
        for (;;) {
          const chunk = await call.next();
          yield chunk;
          if (chunk.final) return;
        }
      } catch (err) {
        if (this.rethrowUnlessRetry(err, service, timeoutMs, attempt, retries, failovers)) failovers++;
        else attempt++;
      } finally {
        // Also when the consumer stops early: the tag is forgotten, so a late reply is dropped.
        this.forget(call);
      }
    }
  }

  private settle(service: string, options: RequestOptions) {
    return {
      timeoutMs: options.timeoutMs ?? this.options.timeoutMs,
      retries: options.retries ?? this.options.retries,
      signal: options.signal,
      serviceFrame: Buffer.from(service),
      idempotent: options.resumable === true || (options.idempotent ?? this.isIdempotent(service)),
      resumable: options.resumable ?? false,
    };
  }

  /**
   * A timeout with attempts left returns false, a broker lost under a request that may be resent
   * returns true (the caller sends again, through another broker); anything else is thrown.
   */
  private rethrowUnlessRetry(err: unknown, service: string, timeoutMs: number, attempt: number, retries: number, failovers: number): boolean {
    if (err instanceof BrokerLostSignal) {
      // Each broker in the list may fail under the same request once before it stops being resent.
      if (failovers < this.endpoints.length) return true;
      throw new ZerveError('BROKER_LOST', `${service}: every broker went away while holding the request (${failovers + 1} tries)`);
    }
    if (!(err instanceof TimeoutSignal)) throw err;
    if (attempt >= retries) {
      throw new ZerveError('TIMEOUT', `no reply from ${service} within ${timeoutMs} ms (${attempt + 1} attempt(s))`);
    }
    return false;
  }

  /** Closes the socket; requests in flight reject with CANCELED. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const error = new ZerveError('CANCELED', 'client closed');
      for (const call of [...this.calls.values()]) call.fail(error);
      this.calls.clear();
      for (const route of this.routes ?? []) {
        route.sends.close();
        route.socket.close();
      }
      await Promise.all((this.routes ?? []).map((route) => route.loop));
    })();
    return this.closing;
  }

  /** Registers a call under a new tag and queues its tagged REQUEST. */
  private send(serviceFrame: Buffer, body: Buffer[], timeoutMs: number, signal: AbortSignal | undefined, idempotent: boolean, resumable: boolean): PendingCall {
    if (signal?.aborted) throw canceled(signal);
    if (this.closing) throw new ZerveError('CANCELED', 'client closed');
    if (this.calls.size >= this.options.maxInFlight) {
      throw new ZerveError('OVERLOADED', `${this.calls.size} requests are in flight on this client; retry later`);
    }
    const route = this.pickRoute();
    const sends = route.sends;
    // A 32-bit counter: it would take 4 billion requests for a tag to come back while its call is waiting.
    this.nextTag = (this.nextTag + 1) >>> 0;
    const tag = Buffer.allocUnsafe(4);
    tag.writeUInt32BE(this.nextTag);
    const call = new PendingCall(this.nextTag, serviceFrame, timeoutMs, signal, idempotent, route, resumable);
    if (!sends.push(encodeClientRequest(serviceFrame, body, tag))) {
      call.dispose();
      throw new ZerveError('OVERLOADED', `the client's send queue is full (${sends.size} messages); retry later`);
    }
    this.calls.set(call.tag, call);
    route.calls.add(call);
    return call;
  }

  private forget(call: PendingCall): void {
    call.dispose();
    call.route.calls.delete(call);
    if (this.calls.get(call.tag) === call) this.calls.delete(call.tag);
  }

  /** The next broker that is up, in turn; while none is, the next one anyway (ZeroMQ queues until it connects). */
  private pickRoute(): BrokerRoute {
    const routes = (this.routes ??= this.endpoints.map((endpoint, i) => this.open(endpoint, this.brokerKeys[i]!)));
    if (routes.length === 1) return routes[0]!;
    for (let i = 0; i < routes.length; i++) {
      const route = routes[(this.nextRoute + i) % routes.length]!;
      if (route.up) {
        this.nextRoute = (this.nextRoute + i + 1) % routes.length;
        return route;
      }
    }
    return routes[this.nextRoute++ % routes.length]!;
  }

  /** The broker went away: its requests are sent again through another, or fail with BROKER_LOST. */
  private lost(route: BrokerRoute, reason: string): void {
    if (!route.up) return;
    route.up = false;
    if (this.closing) return;
    this.log.warn({ broker: route.endpoint, reason, requests: route.calls.size }, 'broker lost: resending its idempotent requests through another');
    for (const call of [...route.calls]) {
      route.calls.delete(call);
      if (call.resendable) call.fail(new BrokerLostSignal());
      else call.fail(new ZerveError('BROKER_LOST', `the broker at ${route.endpoint} went away holding this ${call.serviceFrame.toString()} request, which is not safe to send twice`));
    }
  }

  private open(endpoint: string, brokerKey: string): BrokerRoute {
    const several = this.endpoints.length > 1;
    // ZMTP heartbeats notice a broker that is cut off (no FIN, no RST) within its liveness period.
    const heartbeats = several
      ? { heartbeatInterval: this.options.heartbeatIntervalMs, heartbeatTimeout: this.options.heartbeatIntervalMs * this.options.heartbeatLiveness }
      : {};
    // High-water marks well above any window in flight: the broker's ROUTER drops a reply it cannot
    // queue for us (mandatory routing answers EAGAIN), so our receive side must not be what refuses.
    const curve = clientCurveSocketOptions({ ...this.options, brokerKey });
    // A CURVE client names its connection, so that it can prove its key for it (mmi.identify).
    const routingId = 'curveSecretKey' in curve ? `c${randomBytes(12).toString('hex')}` : undefined;
    const socket = new zmq.Dealer({
      linger: 0,
      sendHighWaterMark: 100_000,
      receiveHighWaterMark: 100_000,
      ...heartbeats,
      ...curve,
      ...(routingId !== undefined ? { routingId } : {}),
    });
    const route: BrokerRoute = { endpoint, socket, sends: new SendQueue(socket, this.log, this.options.maxInFlight), up: !several, calls: new Set(), replies: 0 };
    // Its answer carries no tag, so the reading loop drops it.
    const identify = 'curveSecretKey' in curve
      ? () => {
          const proof = proveKey({ publicKey: curve.curvePublicKey, secretKey: curve.curveSecretKey }, curve.curveServerKey, Buffer.from(routingId!));
          route.sends.push(encodeClientRequest(MMI_IDENTIFY, [Buffer.from(JSON.stringify(proof))]), true);
        }
      : undefined;
    if (several || identify) {
      watchSocketEvents(
        socket,
        (event) => {
          // Again after each handshake: a restarted broker knows no key of ours.
          if (event.type === 'handshake') identify?.();
          if (!several) return;
          if (event.type === 'handshake' || event.type === 'connect') route.up = true;
          else if (event.type === 'disconnect') this.lost(route, 'connection dropped or heartbeat unanswered');
        },
        this.log,
      );
    }
    socket.connect(endpoint);
    route.loop = this.receive(route);
    // Before any request, so that the broker knows the key when the first one comes; after connect(),
    // since a send queued before it never went out in our tests (zeromq 6.8).
    identify?.();
    return route;
  }

  /** The socket's one reading loop: hands each reply to the call its tag names; anything else is ignored. */
  private async receive(route: BrokerRoute): Promise<void> {
    const { socket } = route;
    try {
      for await (const frames of socket) {
        let reply;
        try {
          reply = parseClientReply(frames);
        } catch {
          continue; // not for us: ignore, as the Guide's client does
        }
        if (reply.tag?.length !== 4) continue;
        const call = this.calls.get(reply.tag.readUInt32BE(0));
        if (!call?.serviceFrame.equals(frames[3]!)) continue;
        if (reply.final) {
          route.replies++;
          this.calls.delete(call.tag);
          call.route.calls.delete(call);
        }
        call.deliver({ final: reply.final, body: reply.body });
      }
    } catch (err) {
      if (this.closing) return;
      this.log.error({ err }, 'client receive loop failed');
      const error = new ZerveError('INTERNAL', 'the client socket failed', { cause: err });
      for (const call of this.calls.values()) call.fail(error);
      this.calls.clear();
    }
  }
}

/**
 * One request's replies as they arrive: a short FIFO the stream reads from, a timer for the next
 * reply (restarted by each reply) and the abort listener. Bounded: a PARTIAL arriving while more than
 * {@link MAX_BUFFERED_REPLIES} wait unread fails the call instead of growing the buffer.
 */
class PendingCall {
  private readonly buffered: ReplyChunk[] = [];
  /** Whether any reply (a PARTIAL) arrived: a call with one is sent again only when resumable, or its caller would see it twice. */
  private answered = false;
  private waiter?: { resolve: (chunk: ReplyChunk) => void; reject: (err: unknown) => void };
  private error?: unknown;
  private readonly timer: NodeJS.Timeout;
  private readonly onAbort?: () => void;

  constructor(
    readonly tag: number,
    readonly serviceFrame: Buffer,
    timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
    private readonly idempotent: boolean,
    readonly route: BrokerRoute,
    private readonly resumable: boolean,
  ) {
    this.timer = setTimeout(() => this.fail(new TimeoutSignal()), timeoutMs);
    if (signal) {
      this.onAbort = () => this.fail(canceled(signal));
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** Whether it may be sent again through another broker. */
  get resendable(): boolean {
    return this.idempotent && (!this.answered || this.resumable);
  }

  deliver(chunk: ReplyChunk): void {
    if (this.error !== undefined) return;
    this.answered = true;
    if (chunk.final) clearTimeout(this.timer);
    else this.timer.refresh();
    if (this.waiter) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve(chunk);
    } else if (this.buffered.length >= MAX_BUFFERED_REPLIES) {
      this.fail(new ZerveError('OVERLOADED', `more than ${MAX_BUFFERED_REPLIES} replies were not read`));
    } else {
      this.buffered.push(chunk);
    }
  }

  /** Fails the call: the reader gets `err` once the replies before it are read. */
  fail(err: unknown): void {
    if (this.error !== undefined) return;
    this.error = err;
    clearTimeout(this.timer);
    if (this.waiter) {
      const { reject } = this.waiter;
      this.waiter = undefined;
      reject(err);
    }
  }

  next(): Promise<ReplyChunk> {
    const chunk = this.buffered.shift();
    if (chunk) return Promise.resolve(chunk);
    if (this.error !== undefined) return Promise.reject(this.error);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  dispose(): void {
    clearTimeout(this.timer);
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
  }
}

const MAX_BUFFERED_REPLIES = 1024;

class TimeoutSignal extends Error {}

/** The broker holding a call went away and the call may be sent again through another. */
class BrokerLostSignal extends Error {}

/** The client's connection to one broker. */
interface BrokerRoute {
  endpoint: string;
  socket: zmq.Dealer;
  sends: SendQueue;
  /** Connected (several brokers), or always (one broker: requests wait for it as before). */
  up: boolean;
  /** The calls sent through it still waiting for their FINAL reply. */
  calls: Set<PendingCall>;
  /** FINAL replies that came through it. */
  replies: number;
  loop?: Promise<void>;
}

function canceled(signal: AbortSignal): ZerveError {
  return new ZerveError('CANCELED', 'request canceled', { cause: signal.reason });
}
