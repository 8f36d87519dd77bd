import assert from 'node:assert/strict';
import { ZerveError, type ErrorCode } from '../../shared/errors.ts';

/** The code of the ZerveError `promise` rejects with; fails the test if it resolves. */
export async function errorCode(promise: Promise<unknown>): Promise<ErrorCode> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ZerveError) return err.code;
    throw err;
  }
  assert.fail('expected an error reply');
}

/** Awaits `promise`, asserts it rejects with a ZerveError of `code`, and returns that error. */
export async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<ZerveError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ZerveError, `expected a ZerveError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

/** A predicate for `assert.throws` / `assert.rejects`: a ZerveError of `code`. */
export function hasCode(code: ErrorCode): (err: unknown) => boolean {
  return (err: unknown) => err instanceof ZerveError && err.code === code;
}
