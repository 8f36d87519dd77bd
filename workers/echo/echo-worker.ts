import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkerConnectionOptions } from '../../shared/config.ts';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import { WorkerConnection } from '../../shared/worker-connection.ts';

/**
 * A worker whose `echo` service answers with the request body: measures the broker's own cost in
 * `npm run bench`, and serves as a known-good peer in tests. A JSON first frame may ask for
 * `{"partials":N}` PARTIAL replies first and `{"delayMs":M}` of simulated work.
 */
export function createEchoWorker(options: Partial<WorkerConnectionOptions> = {}, service = ECHO_SERVICE): WorkerConnection {
  return new WorkerConnection(
    [service],
    async (body, ctx) => {
      const { partials, delayMs } = echoHeader(body[0]);
      for (let i = 0; i < partials; i++) ctx.partial([Buffer.from(JSON.stringify({ partial: i + 1, of: partials }))]);
      if (delayMs > 0) await sleep(delayMs, undefined, { signal: ctx.signal });
      return body;
    },
    { kind: 'echo', ...options, idempotent: () => true },
  );
}

function echoHeader(frame: Buffer | undefined): { partials: number; delayMs: number } {
  if (!frame || frame[0] !== 0x7b) return { partials: 0, delayMs: 0 };
  try {
    const header = JSON.parse(frame.toString()) as { partials?: unknown; delayMs?: unknown };
    return { partials: bounded(header.partials, 1000), delayMs: bounded(header.delayMs, 60_000) };
  } catch {
    return { partials: 0, delayMs: 0 };
  }
}

function bounded(value: unknown, max: number): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? Math.min(value, max) : 0;
}
