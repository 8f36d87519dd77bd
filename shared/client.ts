import { performance } from 'node:perf_hooks';
import * as zmq from 'zeromq';
import { DEFAULT_CLIENT_OPTIONS, type ClientOptions } from './config.ts';
import { clientCurveSocketOptions } from './curve-socket-options.ts';
import { ZerveError } from './errors.ts';
import {
  decodeReply,
  encodeHeader,
  type ClassifyReply,
  type RequestHeader,
  type ServiceInfo,
  type WorkerInfo,
} from './messages.ts';
import {
  MMI_SERVICE,
  MMI_SERVICES,
  MMI_WORKERS,
  ProtocolError,
  classifyService,
  encodeClientRequest,
  parseClientReply,
} from './protocol.ts';

export interface RequestOptions {
  /** Time to wait for the next reply (a PARTIAL restarts it). @defaultValue the client's timeoutMs */
  timeoutMs?: number;
  /** Retries on a fresh socket after a timeout. @defaultValue the client's retries */
  retries?: number;
  /** Aborts the request: the socket is dropped and the call rejects with CANCELED. */
  signal?: AbortSignal;
}

export interface ReplyChunk {
  final: boolean;
  body: Buffer[];
}

/**
 * A Majordomo (MDP/0.2) client. Each request in flight has a DEALER socket of its own from a pool, so
 * replies never need matching; a request that times out closes its socket and retries on a fresh one
 * (the Guide's Lazy Pirate), so a late reply can never be taken for another request's.
 *
 * @example
 * const client = new ZerveClient({ broker: 'tcp://127.0.0.1:5555' });
 * const reply = await client.classify('squeezenet', await readFile('kitten.png'), { topk: 3 });
 * await client.close();
 */
export class ZerveClient {
  readonly options: ClientOptions;
  private readonly idle: zmq.Dealer[] = [];
  private readonly sockets = new Set<zmq.Dealer>();
  private readonly waiters: Array<{ resolve: (s: zmq.Dealer) => void; reject: (e: unknown) => void }> = [];
  private closed = false;
  private readonly curve: ReturnType<typeof clientCurveSocketOptions>;

  constructor(options: Partial<ClientOptions> = {}) {
    this.options = { ...DEFAULT_CLIENT_OPTIONS, ...options };
    if (!(this.options.maxSockets >= 1 && this.options.timeoutMs > 0 && this.options.retries >= 0)) {
      throw new ZerveError('BAD_REQUEST', 'maxSockets and timeoutMs must be positive, retries not negative');
    }
    this.curve = clientCurveSocketOptions(this.options);
  }

  /** Sends a request and resolves with the FINAL reply's body frames. */
  async request(service: string, body: Buffer[], options: RequestOptions = {}): Promise<Buffer[]> {
    for await (const chunk of this.stream(service, body, options)) {
      if (chunk.final) return chunk.body;
    }
    throw new ZerveError('INTERNAL', 'reply stream ended without a FINAL');
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
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    const retries = options.retries ?? this.options.retries;
    const { signal } = options;
    const message = encodeClientRequest(service, body);
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw canceled(signal);
      const socket = await this.acquire();
      let healthy = false;
      const onAbort = () => socket.close();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await socket.send(message);
        let deadline = performance.now() + timeoutMs;
        for (;;) {
          const remaining = Math.ceil(deadline - performance.now());
          if (remaining <= 0) throw new TimeoutSignal();
          socket.receiveTimeout = remaining;
          let reply;
          try {
            reply = parseClientReply(await socket.receive());
          } catch (err) {
            if (err instanceof ProtocolError) continue; // not for us: ignore, as the Guide's client does
            throw err;
          }
          if (reply.service !== service) continue;
          if (reply.final) {
            // Before the yield: a consumer that stops at the FINAL (as `request` does) ends this
            // generator at the yield, and the socket must still go back to the pool, not be replaced.
            healthy = true;
            yield { final: true, body: reply.body };
            return;
          }
          yield { final: false, body: reply.body };
          deadline = performance.now() + timeoutMs;
        }
      } catch (err) {
        if (signal?.aborted) throw canceled(signal);
        if (this.closed) throw new ZerveError('CANCELED', 'client closed');
        const timedOut = err instanceof TimeoutSignal || (err as { code?: string }).code === 'EAGAIN';
        if (!timedOut) throw ZerveError.from(err);
        if (attempt >= retries) {
          throw new ZerveError('TIMEOUT', `no reply from ${service} within ${timeoutMs} ms (${attempt + 1} attempt(s))`);
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
        this.release(socket, healthy);
      }
    }
  }

  /** Closes every socket; requests in flight reject with CANCELED. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new ZerveError('CANCELED', 'client closed'));
    for (const socket of this.sockets) socket.close();
    this.sockets.clear();
    this.idle.length = 0;
  }

  private acquire(): Promise<zmq.Dealer> {
    if (this.closed) return Promise.reject(new ZerveError('CANCELED', 'client closed'));
    const socket = this.idle.pop();
    if (socket) return Promise.resolve(socket);
    if (this.sockets.size < this.options.maxSockets) return Promise.resolve(this.open());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private open(): zmq.Dealer {
    const socket = new zmq.Dealer({ linger: 0, ...this.curve });
    socket.connect(this.options.broker);
    this.sockets.add(socket);
    return socket;
  }

  /** Returns a socket to the pool, or replaces it when its last request did not end cleanly. */
  private release(socket: zmq.Dealer, healthy: boolean): void {
    if (!healthy || this.closed) {
      socket.close();
      this.sockets.delete(socket);
      if (this.closed) return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(healthy ? socket : this.open());
    else if (healthy) this.idle.push(socket);
  }
}

class TimeoutSignal extends Error {}

function canceled(signal: AbortSignal): ZerveError {
  return new ZerveError('CANCELED', 'request canceled', { cause: signal.reason });
}
