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
