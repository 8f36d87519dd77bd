import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { ZerveError } from '../shared/errors.ts';

export interface AuthFailureLimiterOptions {
  /** Failed authentications a key (an address, a token id) may have per window before it is refused. @defaultValue 20 */
  maxAuthFailures: number;
  /** The window, in milliseconds (whole seconds). @defaultValue 60000 */
  authFailureWindowMs: number;
}

/**
 * Counts failed authentications per address and per token id (rate-limiter-flexible, in this
 * process's memory), and refuses a key past its limit with TOO_MANY_ATTEMPTS until its window ends:
 * guessing a token's secret costs a window per `maxAuthFailures` tries.
 */
export class AuthFailureLimiter {
  private readonly limiter: RateLimiterMemory;
  private readonly max: number;

  constructor(options: AuthFailureLimiterOptions) {
    if (!(Number.isInteger(options.maxAuthFailures) && options.maxAuthFailures > 0)) {
      throw new ZerveError('BAD_CONFIG', `maxAuthFailures must be a positive integer, got ${options.maxAuthFailures}`);
    }
    if (!(options.authFailureWindowMs >= 1000)) {
      throw new ZerveError('BAD_CONFIG', `authFailureWindowMs must be at least 1000, got ${options.authFailureWindowMs}`);
    }
    this.max = options.maxAuthFailures;
    this.limiter = new RateLimiterMemory({ points: this.max, duration: Math.ceil(options.authFailureWindowMs / 1000) });
  }

  /** TOO_MANY_ATTEMPTS (with `details.retryAfterMs`) when any of `keys` has used up its failures. */
  async check(keys: string[]): Promise<void> {
    for (const key of keys) {
      const state = await this.limiter.get(key);
      if (state && state.consumedPoints >= this.max) {
        throw new ZerveError('TOO_MANY_ATTEMPTS', `too many failed authentications for ${key}; retry later`, {
          details: { retryAfterMs: state.msBeforeNext },
        });
      }
    }
  }

  /** Counts one failure against each of `keys`. */
  async fail(keys: string[]): Promise<void> {
    await Promise.all(
      keys.map((key) =>
        this.limiter.consume(key).catch((err: unknown) => {
          if (!(err instanceof RateLimiterRes)) throw err; // a RateLimiterRes: the key is over its limit already
        }),
      ),
    );
  }
}
