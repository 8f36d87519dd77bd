import { ZerveError } from './errors.ts';

/** Throws CANCELED (with the abort reason as its cause) once `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ZerveError('CANCELED', 'the request was canceled', { cause: signal.reason });
}
