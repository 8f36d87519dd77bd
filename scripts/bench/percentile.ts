/**
 * The bench's one percentile rule. Empty data gives NaN, never 0: a row with no timed request must
 * not read as "0 ms". Callers print NaN as `-` (report-format.ts) and keep it out of medians.
 */

/**
 * Nearest-rank percentile of ascending `sorted` values, `q` in [0, 1]; NaN when there are none.
 * @example percentile([1, 2, 3, 4], 0.5) // 2
 */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * The middle value (the mean of the two middle ones for an even count) of the values that are not
 * NaN, since NaN has no place in a sort; NaN when none are left.
 */
export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
