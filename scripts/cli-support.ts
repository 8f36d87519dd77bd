import { InvalidArgumentError } from 'commander';
import { ZerveError } from '../shared/errors.ts';

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
