import { performance } from 'node:perf_hooks';

/**
 * Tells this process's own pause (a blocked event loop, a long GC, a stopped process) from a peer's
 * silence, on a timer meant to tick every `intervalMs`. After a pause, timers run before I/O, so the
 * peers' heartbeats of that time are still unread in the socket: their silence proves nothing.
 */
export class PauseDetector {
  private last = performance.now();

  constructor(private readonly intervalMs: number) {}

  /** Call on each tick: how long the process was paused (ms) when this tick came over two intervals late, else 0. */
  tick(now: number): number {
    const sinceLast = now - this.last;
    this.last = now;
    return sinceLast > 2 * this.intervalMs ? sinceLast : 0;
  }
}
