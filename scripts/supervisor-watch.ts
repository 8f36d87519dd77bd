/**
 * The child's half of `zerve up`'s process lifetime: a supervised child (ProcessSupervisor sets
 * `ZERVE_SUPERVISED=1` and gives it a stdin pipe) stops when that pipe closes. The kernel closes it
 * however the supervisor dies, SIGKILL included, so no worker outlives `zerve up` as an orphan. A
 * `zerve worker ...` started by hand is not supervised and outlives broker restarts as before.
 */
import { DEFAULT_WORKER_CONNECTION_OPTIONS, resolveOptions } from '../shared/config.ts';

export const SUPERVISED_ENV = 'ZERVE_SUPERVISED';

/**
 * When supervised, calls `stop` once the supervisor is gone, and exits regardless after half a
 * liveness period more, so a stuck graceful stop still ends within one liveness period.
 */
export function watchSupervisor(stop: (reason: string) => void): void {
  if (process.env[SUPERVISED_ENV] !== '1') return;
  const { heartbeatIntervalMs, heartbeatLiveness } = resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, {});
  let gone = false;
  const onGone = () => {
    if (gone) return;
    gone = true;
    setTimeout(() => process.exit(1), (heartbeatIntervalMs * heartbeatLiveness) / 2).unref();
    stop('supervisor gone');
  };
  process.stdin.on('end', onGone);
  process.stdin.on('close', onGone);
  process.stdin.on('error', onGone);
  process.stdin.resume(); // nothing is ever written; reading is how the end is seen
}
