/**
 * The bench's number formatters for table cells and report lines. A missing or NaN figure (no data:
 * see percentile.ts) prints as `-`, never as `NaN` or `0`.
 */
import { median } from './percentile.ts';

const missing = (n: number | undefined): n is undefined => n === undefined || Number.isNaN(n);

/** `digits` decimals: `fixed(12.345)` is `12.3`. */
export function fixed(n: number | undefined, digits = 1): string {
  return missing(n) ? '-' : n.toFixed(digits);
}

/** Rounded, with thousands separators: `thousands(12345.6)` is `12,346`. */
export function thousands(n: number | undefined): string {
  return missing(n) ? '-' : Math.round(n).toLocaleString('en-US');
}

/** `n` over `d` as `1.23x`; `-` when either is missing or `d` is 0. */
export function ratio(n: number | undefined, d: number | undefined): string {
  return missing(n) || missing(d) || d === 0 ? '-' : `${(n / d).toFixed(2)}x`;
}

/** Each round's figure, in order: `each([1.04, 2], 1)` is `1.0 2.0`. */
export function each(values: readonly number[], digits = 1, separator = ' '): string {
  return values.map((v) => fixed(v, digits)).join(separator);
}

/** Median and range of the figures that are finite: `12.0 (10.0-15.0)`; `-` when there are none. */
export function spread(all: readonly number[] | undefined, digits = 1): string {
  const values = (all ?? []).filter(Number.isFinite);
  return values.length === 0 ? '-' : `${fixed(median(values), digits)} (${fixed(Math.min(...values), digits)}-${fixed(Math.max(...values), digits)})`;
}
