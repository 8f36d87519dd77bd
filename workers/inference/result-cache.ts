import { webcrypto } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { ZerveError } from '../../shared/errors.ts';
import type { Prediction } from '../../shared/messages.ts';

/** What identifies one classification: the same image bytes on the same model files with the same topk. */
export interface ResultKey {
  model: string;
  version: string;
  /** The version's files as last seen on disk (size and mtime): a version rewritten in place is another. */
  stamp: string;
  topk: number;
  image: Buffer;
}

/** Hit and miss counts since the worker started, and what the cache holds now. */
export interface ResultCacheStats {
  cacheHits: number;
  cacheMisses: number;
  cacheEntries: number;
  cacheBytes: number;
  cacheMaxBytes: number;
}

/** Per entry on top of its key and predictions: the LRU's node, the map slot, the array. */
const ENTRY_OVERHEAD_BYTES = 200;

/**
 * The inference worker's cache of answers: identical image bytes (by SHA-256), model, version and
 * topk give the stored predictions without decoding or inference. An LRU bounded by bytes, so it is
 * safe to leave on; a version's entries go when its session is unloaded (a new latest version, a
 * removed folder), and the file stamp in the key keeps a version rewritten in place from ever
 * matching its old answers.
 */
export class ResultCache {
  private readonly entries: LRUCache<string, Prediction[]> | undefined;
  private hits = 0;
  private misses = 0;

  /** @param maxBytes bound of keys plus predictions held; 0 turns the cache off */
  constructor(readonly maxBytes: number) {
    if (!(Number.isInteger(maxBytes) && maxBytes >= 0)) {
      throw new ZerveError('BAD_CONFIG', `resultCacheBytes must be an integer >= 0, got ${maxBytes}`);
    }
    if (maxBytes > 0) {
      this.entries = new LRUCache<string, Prediction[]>({
        maxSize: maxBytes,
        sizeCalculation: (predictions, key) => key.length + ENTRY_OVERHEAD_BYTES + predictions.reduce((n, p) => n + p.label.length * 2 + 40, 0),
      });
    }
  }

  get enabled(): boolean {
    return this.entries !== undefined;
  }

  /** The key of one classification; hashing runs in libuv's pool (WebCrypto), off the event loop. */
  async key(key: ResultKey): Promise<string> {
    const digest = Buffer.from(await webcrypto.subtle.digest('SHA-256', key.image)).toString('base64');
    return `${key.model}\u0000${key.version}\u0000${key.stamp}\u0000${key.topk}\u0000${digest}`;
  }

  /** The stored predictions, counted as a hit, or undefined, counted as a miss. */
  get(key: string): Prediction[] | undefined {
    const predictions = this.entries?.get(key);
    if (predictions) this.hits++;
    else this.misses++;
    return predictions;
  }

  set(key: string, predictions: Prediction[]): void {
    this.entries?.set(key, predictions);
  }

  /** Forgets every entry of one model version (its session is gone). */
  dropVersion(model: string, version: string): void {
    if (!this.entries) return;
    const prefix = `${model}\u0000${version}\u0000`;
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.entries.delete(key);
  }

  stats(): ResultCacheStats {
    return {
      cacheHits: this.hits,
      cacheMisses: this.misses,
      cacheEntries: this.entries?.size ?? 0,
      cacheBytes: this.entries?.calculatedSize ?? 0,
      cacheMaxBytes: this.maxBytes,
    };
  }
}
