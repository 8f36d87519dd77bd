/**
 * Estimates a quantile from per-bucket counts the way Prometheus's `histogram_quantile` does: find
 * the bucket holding the rank and interpolate linearly inside it. A rank in the +Inf bucket answers
 * the highest finite bound, since nothing is known above it.
 * @param boundsS upper bounds of the buckets in seconds, ascending (+Inf implied after the last)
 * @param counts per-bucket counts (not cumulative), one more than `boundsS`
 * @returns milliseconds, or null when the counts are all zero
 */
export function histogramQuantileMs(boundsS: readonly number[], counts: readonly number[], q: number): number | null {
  let total = 0;
  for (const c of counts) total += c;
  if (!(total > 0)) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const inBucket = counts[i]!;
    if (inBucket > 0 && below + inBucket >= rank) {
      if (i >= boundsS.length) return boundsS[boundsS.length - 1]! * 1000;
      const lower = i === 0 ? 0 : boundsS[i - 1]!;
      const upper = boundsS[i]!;
      return (lower + (upper - lower) * ((rank - below) / inBucket)) * 1000;
    }
    below += inBucket;
  }
  return boundsS[boundsS.length - 1]! * 1000;
}
