import { InvalidArgumentError } from 'commander';
import { ZerveClient } from '../shared/client.ts';
import { DEFAULT_CLIENT_OPTIONS, resolveOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { logger } from '../shared/logger.ts';
import { watchSupervisor } from './supervisor-watch.ts';

/** Commander parser for integer flags; a bad value is a usage error, not a crash. */
export function parseInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`not an integer: ${value}`);
  return n;
}

/** Prints an error as `zerve: CODE: message` and makes the command exit non-zero. */
export function reportError(err: unknown): void {
  const error = ZerveError.from(err);
  process.stderr.write(`zerve: ${error.code}: ${error.message}\n`);
  process.exitCode = 1;
}

const log = logger.child({ component: 'cli' });

/** Runs `close` once on SIGINT or SIGTERM (or when the supervisor goes away), then exits. */
export function onShutdown(close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    close().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  watchSupervisor(stop);
}

/** Runs `fn` with a client, closing it afterwards; errors print their code and set the exit code. */
export async function withClient(flags: Record<string, unknown>, fn: (client: ZerveClient) => Promise<void>): Promise<void> {
  const client = new ZerveClient(resolveOptions(DEFAULT_CLIENT_OPTIONS, flags));
  try {
    await fn(client);
  } catch (err) {
    reportError(err);
  } finally {
    await client.close();
  }
}
