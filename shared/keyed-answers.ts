import { LRUCache } from 'lru-cache';
import { ZerveError } from './errors.ts';

export interface KeyedAnswersOptions {
  /** Most keys remembered; the least recently used goes first. @defaultValue 10000 */
  maxKeys: number;
  /** How long an answer is kept after its request finished. @defaultValue 86400000 (one day) */
  ttlMs: number;
}

export const DEFAULT_KEYED_ANSWERS_OPTIONS: KeyedAnswersOptions = { maxKeys: 10_000, ttlMs: 24 * 60 * 60 * 1000 };

/**
 * The answers of requests that carry an idempotency key (shared/idempotency-key.ts), so a resend
 * with the same key gets the first answer instead of running again. A resend that comes while the
 * first request still runs waits for it. A request that failed leaves no answer: the same key then
 * runs again. Bounded in keys and time (an LRU with a TTL), so a key resent after `ttlMs`, or after
 * `maxKeys` newer keys, runs again.
 *
 * @example
 * const answers = new KeyedAnswers<Buffer[]>();
 * const reply = await answers.run(key, () => importDataset(bytes));
 */
export class KeyedAnswers<T extends object> {
  readonly options: KeyedAnswersOptions;
  readonly #answers: LRUCache<string, Promise<T>>;

  constructor(options: Partial<KeyedAnswersOptions> = {}) {
    this.options = { ...DEFAULT_KEYED_ANSWERS_OPTIONS, ...options };
    const { maxKeys, ttlMs } = this.options;
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) throw new ZerveError('BAD_CONFIG', `maxKeys must be an integer >= 1, got ${maxKeys}`);
    if (!(Number.isInteger(ttlMs) && ttlMs >= 1)) throw new ZerveError('BAD_CONFIG', `ttlMs must be an integer >= 1, got ${ttlMs}`);
    this.#answers = new LRUCache<string, Promise<T>>({ max: maxKeys, ttl: ttlMs });
  }

  /** Keys remembered now (finished or running). */
  get size(): number {
    return this.#answers.size;
  }

  /** Runs `work` unless `key` has an answer or a request running; without a key, always runs it. */
  run(key: string | undefined, work: () => Promise<T>): Promise<T> {
    if (key === undefined) return work();
    const known = this.#answers.get(key);
    if (known) return known;
    const answer = work();
    this.#answers.set(key, answer);
    // A failed request leaves no answer behind; the TTL counts from the end of a successful one.
    void answer.then(
      () => {
        if (this.#answers.get(key) === answer) this.#answers.set(key, answer);
      },
      () => {
        if (this.#answers.peek(key) === answer) this.#answers.delete(key);
      },
    );
    return answer;
  }
}
