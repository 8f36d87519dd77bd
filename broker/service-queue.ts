import type { PendingRequest } from './pending-request.ts';

/** Span over which a queue's drain rate is measured. */
const RATE_BUCKET_MS = 250;
const RATE_BUCKETS = 8;

/** FIFO of one client's requests: an array with a moving head, compacted now and then. */
class RequestFifo {
  private items: PendingRequest[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  peek(): PendingRequest | undefined {
    return this.items[this.head];
  }

  push(request: PendingRequest): void {
    this.items.push(request);
  }

  unshift(request: PendingRequest): void {
    if (this.head > 0) this.items[--this.head] = request;
    else this.items.unshift(request);
  }

  shift(): PendingRequest | undefined {
    if (this.head >= this.items.length) return undefined;
    const request = this.items[this.head]!;
    this.items[this.head++] = undefined as unknown as PendingRequest;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return request;
  }

  /** Removes and returns every request whose deadline is at or before `now`. */
  takeExpired(now: number, into: PendingRequest[]): void {
    let expired = 0;
    for (let i = this.head; i < this.items.length; i++) if (this.items[i]!.deadline <= now) expired++;
    if (expired === 0) return;
    const kept: PendingRequest[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const request = this.items[i]!;
      (request.deadline <= now ? into : kept).push(request);
    }
    this.items = kept;
    this.head = 0;
  }
}

/**
 * Requests of one service waiting for a worker with free capacity, bounded by its owner in count and
 * bytes. Fair between clients: each client has its own FIFO and dispatch takes one request from each
 * client in turn, so one client pipelining 100,000 requests delays another client's single request by
 * one dispatch, not by 100,000. Also measures how fast it drains, for OVERLOADED's retry hint.
 */
export class ServiceQueue {
  /** Clients with waiting requests; Map order is the round-robin order (the next client is first). */
  private readonly clients = new Map<string, RequestFifo>();
  private count = 0;
  private queuedBytes = 0;
  private readonly dispatched = new Array<number>(RATE_BUCKETS).fill(0);
  private bucketStart = 0;
  private bucket = 0;

  constructor(readonly service: string) {}

  get length(): number {
    return this.count;
  }

  /** Body bytes of the waiting requests. */
  get bytes(): number {
    return this.queuedBytes;
  }

  /** The request dispatch would take next. */
  peek(): PendingRequest | undefined {
    for (const fifo of this.clients.values()) return fifo.peek();
    return undefined;
  }

  push(request: PendingRequest): void {
    let fifo = this.clients.get(request.clientKey);
    if (!fifo) this.clients.set(request.clientKey, (fifo = new RequestFifo()));
    fifo.push(request);
    this.count++;
    this.queuedBytes += request.bytes;
  }

  /** Puts a request back at the front of its client's FIFO: it is older than what that client queued after it. */
  unshift(request: PendingRequest): void {
    let fifo = this.clients.get(request.clientKey);
    if (!fifo) this.clients.set(request.clientKey, (fifo = new RequestFifo()));
    fifo.unshift(request);
    this.count++;
    this.queuedBytes += request.bytes;
  }

  /** Takes the next client's oldest request and moves that client to the back of the round. */
  shift(now: number): PendingRequest | undefined {
    for (const [client, fifo] of this.clients) {
      const request = fifo.shift()!;
      this.clients.delete(client);
      if (fifo.length > 0) this.clients.set(client, fifo);
      this.count--;
      this.queuedBytes -= request.bytes;
      this.countDispatch(now);
      return request;
    }
    return undefined;
  }

  /** Removes and returns every request whose deadline is at or before `now`. */
  takeExpired(now: number): PendingRequest[] {
    const expired: PendingRequest[] = [];
    for (const [client, fifo] of this.clients) {
      fifo.takeExpired(now, expired);
      if (fifo.length === 0) this.clients.delete(client);
    }
    for (const request of expired) {
      this.count--;
      this.queuedBytes -= request.bytes;
    }
    return expired;
  }

  /**
   * Milliseconds until what is queued now would have been dispatched at the rate of the last two
   * seconds; `ceilingMs` when nothing was dispatched in that time.
   */
  drainMs(now: number, ceilingMs: number): number {
    this.countDispatch(now, 0);
    const total = this.dispatched.reduce((sum, n) => sum + n, 0);
    if (total === 0) return ceilingMs;
    const perMs = total / (RATE_BUCKET_MS * RATE_BUCKETS);
    return Math.min(ceilingMs, Math.ceil(this.count / perMs));
  }

  private countDispatch(now: number, n = 1): void {
    if (now - this.bucketStart >= RATE_BUCKET_MS) {
      const steps = Math.min(RATE_BUCKETS, Math.floor((now - this.bucketStart) / RATE_BUCKET_MS));
      for (let i = 0; i < steps; i++) {
        this.bucket = (this.bucket + 1) % RATE_BUCKETS;
        this.dispatched[this.bucket] = 0;
      }
      this.bucketStart = now - ((now - this.bucketStart) % RATE_BUCKET_MS);
    }
    this.dispatched[this.bucket]! += n;
  }
}
