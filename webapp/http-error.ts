import type { ErrorRequestHandler } from 'express';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { HTTP_STATUS_OF, retryAfterSeconds } from './http-status.ts';

/** Wraps anything thrown while handling a request: errors from express itself keep their 4xx meaning. */
export function toZerveError(err: unknown): ZerveError {
  if (err instanceof ZerveError) return err;
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
    return new ZerveError(code, err instanceof Error ? err.message : String(err), { cause: err });
  }
  return ZerveError.from(err);
}

/**
 * The last express error handler of a group of routes: logs (INTERNAL as an error, the rest at
 * debug), answers the catalog's status with `body(error)`, and `Retry-After` with a 503 (the broker's
 * drain-rate hint when the error carries one, else `fallbackRetryAfterSeconds`).
 */
export function httpErrorHandler(log: Logger, fallbackRetryAfterSeconds: number, body: (error: ZerveError) => unknown): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const error = toZerveError(err);
    if (error.code === 'INTERNAL') log.error({ err, method: req.method, url: req.originalUrl }, 'request failed');
    else log.debug({ code: error.code, method: req.method, url: req.originalUrl }, 'request refused');
    if (res.headersSent) {
      res.end();
      return;
    }
    const status = HTTP_STATUS_OF[error.code];
    if (status === 503) res.set('Retry-After', String(retryAfterSeconds(error, fallbackRetryAfterSeconds)));
    res.status(status).json(body(error));
  };
}
