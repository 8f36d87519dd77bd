/**
 * Hands freed native memory back to the OS now and then, with glibc's `malloc_trim(0)` (called through
 * koffi). Why: libzmq and Node allocate every frame with malloc; after a burst of messages (a flood of
 * fuzzed frames, a queue of large bodies drained), the freed chunks sit between live ones in glibc's
 * arenas, where `free` cannot return them, so RSS stays far above what is in use (measured: 121 MB held
 * by the arenas, 9 MB of it in use). `malloc_trim` releases the free pages inside the arenas too.
 * Elsewhere than glibc (musl, macOS) there is no such call and this does nothing.
 */
import { createRequire } from 'node:module';
import type { Logger } from '../shared/logger.ts';

type Trim = ((pad: number) => number) & { async: (pad: number, done: (err: unknown, released: number) => void) => void };

let trim: Trim | null | undefined;

/** glibc's malloc_trim, or null where the C library has none. */
function mallocTrim(log: Logger): Trim | null {
  if (trim !== undefined) return trim;
  try {
    // Loaded here, not imported: a platform without koffi's binary still runs the broker, untrimmed.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    trim = koffi.load('libc.so.6').func('int malloc_trim(size_t)') as unknown as Trim;
  } catch (err) {
    log.debug({ err }, 'no glibc malloc_trim: freed memory stays with the allocator');
    trim = null;
  }
  return trim;
}

export class MemoryTrimmer {
  private timer?: NodeJS.Timeout;
  private running = false;

  /** @param intervalMs time between trims; 0 turns trimming off */
  constructor(
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.timer || this.intervalMs <= 0) return;
    const trimNow = mallocTrim(this.log);
    if (!trimNow) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = true;
      const started = performance.now();
      const rss = process.memoryUsage.rss();
      // On a thread of koffi's pool: a trim walks every free chunk and must not stall the event loop.
      trimNow.async(0, (err) => {
        this.running = false;
        if (err) this.log.warn({ err }, 'malloc_trim failed');
        else this.log.debug({ ms: performance.now() - started, rssBefore: rss, rssAfter: process.memoryUsage.rss() }, 'memory trimmed');
      });
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer; idempotent. A trim in progress finishes on its own thread. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
