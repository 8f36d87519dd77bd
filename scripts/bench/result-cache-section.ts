/**
 * The result cache in the benchmark: the same image again and again (every request a hit), a new
 * variant of it every time (every request a miss: hash, lookup and store on top of the work), and the
 * cache skipped (`cache: false`, as the other inference rows run), on running inference workers.
 */
import type { ZerveClient } from '../../shared/client.ts';
import { runLoad, type LoadOptions, type LoadResult } from './load-runner.ts';
import { uniqueImage } from './unique-image.ts';

export type CacheMode = 'hit' | 'miss' | 'off';

export interface CacheRow extends LoadResult {
  image: string;
  mode: CacheMode;
  /** Answers that said `cached: true` (with several workers, each misses an image once). */
  cachedAnswers: number;
  /** images/s over the `off` row of the same image. */
  ratioToOff?: number;
}

export const CACHE_MODES: Record<CacheMode, string> = {
  off: 'cache skipped (cache: false)',
  miss: 'every request a miss (a new variant of the image each time)',
  hit: 'every request a hit (the same bytes each time)',
};

export async function benchResultCache(options: {
  client: ZerveClient;
  model: string;
  images: Map<string, Buffer>;
  /** ImageNet class every answer must have. */
  expected: number;
  load: LoadOptions;
  progress: (message: string) => void;
}): Promise<CacheRow[]> {
  const { client, model, expected, load, progress } = options;
  const rows: CacheRow[] = [];
  let variant = 0;
  for (const [image, bytes] of options.images) {
    let cachedAnswers = 0;
    const classify = async (mode: CacheMode) => {
      const body = mode === 'miss' ? uniqueImage(bytes, ++variant) : bytes;
      const reply = await client.classify(model, body, mode === 'off' ? { topk: 1, cache: false } : { topk: 1 });
      if (reply.predictions[0]?.index !== expected) throw new Error(`${image}: classified as ${reply.predictions[0]?.index}`);
      if (reply.cached) cachedAnswers++;
      if (reply.cached && mode !== 'hit') throw new Error(`${image}: a ${mode} request was answered from the cache`);
    };
    for (const mode of ['off', 'miss', 'hit'] as const) {
      progress(`result cache, ${image}: ${CACHE_MODES[mode]}, concurrency ${load.concurrency}`);
      cachedAnswers = 0;
      const result = await runLoad(() => classify(mode), load);
      rows.push({ image, mode, cachedAnswers, ...result });
    }
    const off = rows.find((r) => r.image === image && r.mode === 'off')!.perSecond;
    for (const row of rows) if (row.image === image) row.ratioToOff = row.perSecond / off;
  }
  return rows;
}
