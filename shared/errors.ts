/**
 * The one catalog of error codes. The same codes travel on the wire (`{"error":{code,message}}`),
 * in HTTP bodies and in logs; the README's error table is checked against it in a test. Each code has
 * one meaning, since clients branch on codes.
 */
export const ERROR_CODES = {
  BAD_REQUEST: 'The request is malformed: a frame is missing, or the header is not valid JSON or msgpack.',
  BAD_CONFIG: 'A start-up option, config file or key file is invalid; the component refuses to start.',
  BAD_IMAGE: 'The image bytes could not be decoded.',
  IMAGE_TOO_LARGE: 'The image exceeds the byte or pixel limit.',
  PAYLOAD_TOO_LARGE: 'A request body other than an image exceeds its byte limit (a job body, a JSON body, a dataset upload).',
  BAD_DATASET: 'The dataset is unusable: a corrupt or unsafe archive, too large, or fewer than two non-empty classes.',
  UNKNOWN_DATASET: 'No such dataset.',
  BAD_TRANSFER: 'A model file arrived corrupt or truncated (SHA-256 or size mismatch); nothing was installed.',
  UNKNOWN_MODEL: 'No such model or model version.',
  UNKNOWN_SERVICE: 'No such service.',
  NOT_FOUND: 'No such HTTP route (web app, /v2, metrics server) or sample image.',
  UNKNOWN_JOB: 'No such job.',
  UNKNOWN_RUN: 'No such training run or experiment.',
  NO_WORKERS: 'No worker offered the service before the deadline.',
  OVERLOADED: 'The queue is full; retry later.',
  TIMEOUT: 'The deadline passed before a reply.',
  WORKER_LOST: 'The worker handling the request died.',
  CANCELED: 'The request was canceled.',
  BROKER_LOST: 'The broker holding the request went away, and the request is not safe to send twice (it has no idempotency key).',
  NOT_ADMITTED: "The broker refused this process's CURVE key: it is not in the broker's allowlist.",
  UNAUTHENTICATED: 'No valid credentials: the bearer token or session is missing, unknown, expired or revoked.',
  FORBIDDEN: 'The credentials are valid but lack the scope or ownership this action needs.',
  UNKNOWN_USER: 'No such user.',
  UNKNOWN_TOKEN: 'No such API token.',
  ALREADY_EXISTS: 'Something of that name already exists (a user).',
  TOO_MANY_ATTEMPTS: 'Too many failed authentications from this address or for this token; retry after Retry-After seconds.',
  STORE_UNAVAILABLE: 'The store (PostgreSQL) cannot be reached; retry later.',
  INTERNAL: 'An unexpected internal error.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Wire form of an error reply body. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** Base error of every Zerve component; `code` is stable, `message` is for humans. */
export class ZerveError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ERROR_CODES[code], options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ZerveError';
    this.code = code;
    if (options?.details) this.details = options.details;
  }

  toJSON(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.details) error.details = this.details;
    return { error };
  }

  /** Wraps anything thrown into a ZerveError, keeping it as `cause` (unknown errors become INTERNAL). */
  static from(err: unknown): ZerveError {
    if (err instanceof ZerveError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new ZerveError('INTERNAL', message, { cause: err });
  }

  /** Rebuilds an error received on the wire. */
  static fromBody(body: ErrorBody): ZerveError {
    const code = isErrorCode(body.error.code) ? body.error.code : 'INTERNAL';
    return new ZerveError(code, body.error.message, body.error.details ? { details: body.error.details } : undefined);
  }
}

export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false;
  const error = (value as { error: unknown }).error;
  return typeof error === 'object' && error !== null && 'code' in error && 'message' in error;
}
