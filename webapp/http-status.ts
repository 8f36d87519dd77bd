import type { ErrorCode } from '../shared/errors.ts';

/** HTTP status of each error code; 503 answers also carry `Retry-After`. */
export const HTTP_STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_IMAGE: 400,
  IMAGE_TOO_LARGE: 413,
  PAYLOAD_TOO_LARGE: 413,
  BAD_DATASET: 400,
  UNKNOWN_DATASET: 404,
  UNKNOWN_MODEL: 404,
  UNKNOWN_SERVICE: 404,
  NOT_FOUND: 404,
  UNKNOWN_JOB: 404,
  UNKNOWN_RUN: 404,
  NO_WORKERS: 503,
  OVERLOADED: 503,
  STORE_UNAVAILABLE: 503,
  TIMEOUT: 504,
  WORKER_LOST: 502,
  BAD_TRANSFER: 502,
  NOT_ADMITTED: 502,
  BROKER_LOST: 502,
  CANCELED: 409,
  BAD_CONFIG: 500,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  UNKNOWN_USER: 404,
  UNKNOWN_TOKEN: 404,
  ALREADY_EXISTS: 409,
  TOO_MANY_ATTEMPTS: 429,
  INTERNAL: 500,
};

/**
 * Seconds for `Retry-After`: the broker's hint when it gave one (an OVERLOADED answer carries
 * `details.retryAfterMs`, computed from how fast the service's queue drains), else `fallbackSeconds`.
 */
export function retryAfterSeconds(error: { details?: Record<string, unknown> }, fallbackSeconds: number): number {
  const hint = error.details?.retryAfterMs;
  return typeof hint === 'number' && Number.isFinite(hint) && hint > 0 ? Math.ceil(hint / 1000) : fallbackSeconds;
}
