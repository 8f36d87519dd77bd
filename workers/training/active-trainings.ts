import { ZerveError } from '../../shared/errors.ts';

/**
 * The experiments and runs this worker trains now, by id: each has its own abort controller, aborted
 * by `train.cancel.<worker>` or when the connection's own signal aborts (the worker closes).
 */
export class ActiveTrainings {
  private readonly active = new Map<string, AbortController>();
  /** Removes the listener `track` put on the connection's signal, which outlives every request. */
  private readonly detach = new Map<string, () => void>();

  /** An abort controller for `id`, aborted too when `outer` (the connection's signal) aborts. */
  track(id: string, outer: AbortSignal): AbortController {
    const controller = new AbortController();
    const onAbort = () => controller.abort(outer.reason);
    outer.addEventListener('abort', onAbort, { once: true });
    this.active.set(id, controller);
    this.detach.set(id, () => outer.removeEventListener('abort', onAbort));
    return controller;
  }

  /** Ends what `track` started; once per tracked request, in its `finally`. */
  untrack(id: string): void {
    this.active.delete(id);
    this.detach.get(id)?.();
    this.detach.delete(id);
  }

  /** Cancels `id`; whether it was training here. */
  cancel(id: string): boolean {
    const controller = this.active.get(id);
    controller?.abort(new ZerveError('CANCELED', 'the training was canceled'));
    return controller !== undefined;
  }
}

/**
 * The error a training aborted by `signal` answers: WORKER_LOST when this worker is closing (so
 * the jobs service, or the orchestrator of a `train.run`, sends it to another worker), else
 * CANCELED.
 */
export function abortError(signal: AbortSignal, cause: unknown): ZerveError {
  return stopping(signal) ? (signal.reason as ZerveError) : new ZerveError('CANCELED', 'the training was canceled', { cause });
}

/** Whether `signal` was aborted because the worker is closing (WorkerConnection's drain timeout). */
export function stopping(signal: AbortSignal): boolean {
  return signal.reason instanceof ZerveError && signal.reason.code === 'WORKER_LOST';
}
