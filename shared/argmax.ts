/** Index of the largest of `values[from .. to)`, counted from `from`; the first one on a tie. */
export function argmax(values: ArrayLike<number>, from = 0, to = values.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (values[i]! > values[best]!) best = i;
  return best - from;
}
