/**
 * One chunk of a pulled transfer (datasets, models): the receiver asks for the next piece only after
 * writing the last, so memory stays bounded by one chunk on both ends and the receiver sets the pace.
 * A chunk lost with its holder (WORKER_LOST) is asked again, and the broker routes the retry to any
 * other holder of the same content, so the transfer goes on from where it was.
 */
import type { ZerveClient } from './client.ts';
import { ZerveError } from './errors.ts';

export interface ChunkRequestOptions {
  /** Wait for the chunk; also its broker deadline. */
  timeoutMs: number;
  /** Times a chunk lost with its holder (WORKER_LOST) is asked again. */
  retries: number;
  /** Called before each retry, for logs. */
  onRetry?: (attempt: number) => void;
}

/** Sends one chunk request and resolves with the reply's frames; WORKER_LOST is retried up to `retries` times. */
export async function requestChunk(client: ZerveClient, service: string, body: Buffer[], options: ChunkRequestOptions): Promise<Buffer[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.request(service, body, { timeoutMs: options.timeoutMs });
    } catch (err) {
      const error = ZerveError.from(err);
      if (error.code !== 'WORKER_LOST' || attempt >= options.retries) throw error;
      options.onRetry?.(attempt + 1);
    }
  }
}
