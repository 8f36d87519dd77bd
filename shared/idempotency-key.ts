/**
 * Idempotency keys: a key the client chooses for a request that must not run twice, carried as
 * `JobSubmitRequest.key` (`jobs.submit`, so also training), as `key` in the `datasets.add` header,
 * and as a model version's `publish-key` file (model publishing). A resend with the same key gets
 * the first request's answer, so a client may resend it through another broker after a lost reply.
 * Over HTTP the key is the `Idempotency-Key` header of the POST routes.
 */
import { ZerveError } from './errors.ts';

/** The HTTP header that carries the key. */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** Longest key, as the jobs service takes it (shared/jobs.ts `JobSubmitRequest.key`). */
export const MAX_IDEMPOTENCY_KEY_CHARS = 128;

/** The key of an `Idempotency-Key` header, undefined without one; BAD_REQUEST when it is empty, too long or not printable ASCII. */
export function parseIdempotencyKey(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!isIdempotencyKey(value)) {
    throw new ZerveError('BAD_REQUEST', `${IDEMPOTENCY_KEY_HEADER} must be 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces`);
  }
  return value;
}

/** Whether `value` is a key: 1 to 128 printable ASCII characters without spaces. */
export function isIdempotencyKey(value: unknown): value is string {
  return typeof value === 'string' && /^[\x21-\x7e]+$/.test(value) && value.length <= MAX_IDEMPOTENCY_KEY_CHARS;
}
