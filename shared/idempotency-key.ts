/**
 * Idempotency keys: a key the client chooses for a request that must not run twice (`jobs.submit`,
 * so also training), carried as `JobSubmitRequest.key`. A resend with the same key answers the first
 * request's ticket, so a client may resend it through another broker after a lost reply. Over HTTP
 * the key is the `Idempotency-Key` header of the POST routes.
 */
import { ZerveError } from './errors.ts';

/** The HTTP header that carries the key. */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** Longest key, as the jobs service takes it (shared/jobs.ts `JobSubmitRequest.key`). */
export const MAX_IDEMPOTENCY_KEY_CHARS = 128;

/** The key of an `Idempotency-Key` header, undefined without one; BAD_REQUEST when it is empty, too long or not printable ASCII. */
export function parseIdempotencyKey(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[\x21-\x7e]+$/.test(value) || value.length > MAX_IDEMPOTENCY_KEY_CHARS) {
    throw new ZerveError('BAD_REQUEST', `${IDEMPOTENCY_KEY_HEADER} must be 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces`);
  }
  return value;
}
