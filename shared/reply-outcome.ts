import { ERROR_CODES, ZerveError, type ErrorCode } from './errors.ts';
import { encodeError } from './messages.ts';

export type ReplyOutcome = 'OK' | ErrorCode;

/** Each code's error body up to and including the code's closing quote, as `encodeError` writes it. */
const PREFIXES = (Object.keys(ERROR_CODES) as ErrorCode[]).map((code) => {
  const body = encodeError(new ZerveError(code, ''));
  const start = body.indexOf(`"${code}"`) + 1;
  return { code, prefix: body.subarray(0, start + code.length + 1), common: body.subarray(0, start) };
});
/** What every error body starts with: `{"error":{"code":"`. */
const COMMON = PREFIXES[0]!.common;

/**
 * The outcome of a final reply body: the error code when its first frame is an error body as
 * `encodeError` writes it, else OK. Compares bytes only, allocating nothing, so the broker can count
 * every reply by code without parsing it.
 */
export function replyOutcome(frame: Buffer | undefined): ReplyOutcome {
  if (!frame || frame.length <= COMMON.length || frame[0] !== 0x7b || frame.compare(COMMON, 0, COMMON.length, 0, COMMON.length) !== 0) return 'OK';
  for (const { code, prefix } of PREFIXES) {
    if (frame.length >= prefix.length && frame.compare(prefix, 0, prefix.length, 0, prefix.length) === 0) return code;
  }
  return 'INTERNAL'; // an error body with a code outside the catalog
}
