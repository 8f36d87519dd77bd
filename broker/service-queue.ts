import type { PendingRequest } from './pending-request.ts';

/** Per-service FIFO of requests waiting for a worker with free capacity; bounded by its owner. */
export class ServiceQueue {
  private items: PendingRequest[] = [];
  private head = 0;

  constructor(readonly service: string) {}

  get length(): number {
    return this.items.length - this.head;
  }

  peek(): PendingRequest | undefined {
    return this.items[this.head];
  }

  push(request: PendingRequest): void {
    this.items.push(request);
  }

  /** Puts a request back at the front: it is older than everything queued after it. */
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
  takeExpired(now: number): PendingRequest[] {
    const expired: PendingRequest[] = [];
    const kept: PendingRequest[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const request = this.items[i]!;
      (request.deadline <= now ? expired : kept).push(request);
    }
    if (expired.length > 0) {
      this.items = kept;
      this.head = 0;
    }
    return expired;
  }
}
