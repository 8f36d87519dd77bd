import type { Writable } from 'zeromq';
import type { Logger } from './logger.ts';

/**
 * Serialises every send of one socket: zeromq 6 allows one pending `send()` per socket and throws
 * EBUSY for a second one under back-pressure. Bounded: `push` answers false when full, so callers
 * turn back-pressure into OVERLOADED answers instead of unbounded buffering.
 *
 * A socket created with `sendTimeout: 0` never has a send pending (zeromq.js then sends at once, and
 * fails with EAGAIN at the peer's high-water mark instead of waiting), so its messages go straight to
 * the socket, without a queue, a pump or a readiness check per message: the broker's hot path.
 */
export class SendQueue {
  private readonly queue: Buffer[][] = [];
  private head = 0;
  private pumping = false;
  private closed = false;
  private idle?: { promise: Promise<void>; resolve: () => void };
  private readonly immediate: boolean;

  constructor(
    private readonly socket: Writable,
    private readonly log: Logger,
    /** Messages waiting before `push` refuses more. */
    readonly maxPending = 10_000,
  ) {
    this.immediate = (socket as { sendTimeout?: number }).sendTimeout === 0;
  }

  /** Messages waiting to be sent. */
  get size(): number {
    return this.queue.length - this.head;
  }

  get full(): boolean {
    return this.size >= this.maxPending;
  }

  /**
   * Queues a message. Answers false, and drops it, when the queue is full or closed.
   * @param force queue even when full (replies that settle a request already accepted)
   */
  push(message: Buffer[], force = false): boolean {
    if (this.closed || (!force && this.full)) return false;
    if (this.immediate) {
      this.socket.send(message).then(undefined, (err: unknown) => this.sendFailed(err, message));
      return true;
    }
    this.queue.push(message);
    if (!this.pumping) void this.pump();
    return true;
  }

  /** Resolves once every queued message has been handed to the socket. */
  flush(): Promise<void> {
    if (!this.pumping || this.closed) return Promise.resolve();
    if (!this.idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.idle = { promise, resolve };
    }
    return this.idle.promise;
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.head = 0;
  }

  /** Logs a message that could not be sent; true when the socket is gone. */
  private sendFailed(err: unknown, message?: Buffer[]): boolean {
    const code = (err as { code?: string }).code;
    if (this.closed || code === 'ENOTSOCK' || code === 'ETERM' || code === 'EBADF') return true;
    // EHOSTUNREACH: the peer left (mandatory routing); EAGAIN: it stopped reading past the HWM.
    this.log.warn({ code, frames: message?.length, peer: message?.[0]?.toString('hex') }, 'message dropped: peer unreachable');
    return false;
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.head < this.queue.length && !this.closed) {
        const message = this.queue[this.head]!;
        this.queue[this.head++] = undefined as unknown as Buffer[];
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
        try {
          await this.socket.send(message);
        } catch (err) {
          if (this.sendFailed(err, message)) return;
        }
      }
      this.queue.length = 0;
      this.head = 0;
    } finally {
      this.pumping = false;
      this.idle?.resolve();
      this.idle = undefined;
    }
  }
}
