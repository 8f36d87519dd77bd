import { ZerveError } from '../shared/errors.ts';

/** Wraps anything thrown while handling a request: errors from express itself keep their 4xx meaning. */
export function toZerveError(err: unknown): ZerveError {
  if (err instanceof ZerveError) return err;
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = status === 413 ? 'IMAGE_TOO_LARGE' : 'BAD_REQUEST';
    return new ZerveError(code, err instanceof Error ? err.message : String(err), { cause: err });
  }
  return ZerveError.from(err);
}
