import type { WorkerConnectionOptions } from '../../shared/config.ts';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import { WorkerConnection } from '../worker-connection.ts';

/**
 * A worker whose `echo` service answers with the request body: measures the broker's own cost in
 * `npm run bench`, and serves as a known-good peer in tests. Header `{"partials":N}` first sends N
 * PARTIAL replies.
 */
export function createEchoWorker(options: Partial<WorkerConnectionOptions> = {}, service = ECHO_SERVICE): WorkerConnection {
  return new WorkerConnection(
    [service],
    async (body, ctx) => {
      const partials = partialCount(body[0]);
      for (let i = 0; i < partials; i++) ctx.partial([Buffer.from(JSON.stringify({ partial: i + 1, of: partials }))]);
      return body;
    },
    { kind: 'echo', ...options },
  );
}

function partialCount(frame: Buffer | undefined): number {
  if (!frame || frame[0] !== 0x7b) return 0;
  try {
    const n = (JSON.parse(frame.toString()) as { partials?: unknown }).partials;
    return typeof n === 'number' && Number.isInteger(n) && n > 0 ? Math.min(n, 1000) : 0;
  } catch {
    return 0;
  }
}
