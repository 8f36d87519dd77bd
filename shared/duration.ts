import { ZerveError } from './errors.ts';

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** Parses `90d`, `12h`, `30m`, `45s`, `2w` into milliseconds; anything else is BAD_REQUEST. */
export function parseDurationMs(text: string): number {
  const match = /^(\d+)([smhdw])$/.exec(text.trim());
  const amount = Number(match?.[1]);
  if (!match || !(amount > 0)) {
    throw new ZerveError('BAD_REQUEST', `not a duration: ${JSON.stringify(text)} (use e.g. 90d, 12h, 30m)`);
  }
  return amount * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}
