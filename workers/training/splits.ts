/**
 * Train/validation/test splits over row indices, stratified by label and seeded: a holdout,
 * k folds, and the dataset's explicit test set when it has one.
 */
import { ZerveError } from '../../shared/errors.ts';
import { Rng } from '../../shared/rng.ts';

export interface Holdout {
  train: number[];
  test: number[];
}

function byLabel(labels: ArrayLike<number>, rows: number[]): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  for (const row of rows) {
    const label = labels[row];
    let group = groups.get(label);
    if (!group) groups.set(label, (group = []));
    group.push(row);
  }
  return new Map([...groups.entries()].sort((a, b) => a[0] - b[0]));
}

/**
 * Stratified holdout: about `testFraction` of each class goes to `test` (rounded, and at least
 * one when the class has two or more rows), the rest to `train`; both sorted ascending.
 */
export function stratifiedHoldout(labels: ArrayLike<number>, testFraction: number, seed: number, rows?: number[]): Holdout {
  if (!(testFraction > 0 && testFraction < 1)) throw new ZerveError('BAD_REQUEST', 'testFraction must be in (0, 1)');
  const rng = new Rng(seed);
  const train: number[] = [];
  const test: number[] = [];
  const all = rows ?? Array.from({ length: labels.length }, (_, i) => i);
  for (const group of byLabel(labels, all).values()) {
    rng.shuffle(group);
    const n = group.length < 2 ? 0 : Math.min(group.length - 1, Math.max(1, Math.round(group.length * testFraction)));
    test.push(...group.slice(0, n));
    train.push(...group.slice(n));
  }
  return { train: train.sort((a, b) => a - b), test: test.sort((a, b) => a - b) };
}

/** Stratified k-fold: fold i is the `test` of split i; each row is tested exactly once. */
export function stratifiedKFold(labels: ArrayLike<number>, folds: number, seed: number, rows?: number[]): Holdout[] {
  if (!Number.isInteger(folds) || folds < 2) throw new ZerveError('BAD_REQUEST', 'folds must be an integer >= 2');
  const rng = new Rng(seed);
  const all = rows ?? Array.from({ length: labels.length }, (_, i) => i);
  const assigned: number[][] = Array.from({ length: folds }, () => []);
  let offset = 0;
  for (const group of byLabel(labels, all).values()) {
    rng.shuffle(group);
    // Deal rows round-robin, continuing where the previous class stopped, to balance fold sizes.
    group.forEach((row, i) => assigned[(offset + i) % folds].push(row));
    offset = (offset + group.length) % folds;
  }
  return assigned.map((testRows, i) => {
    const train = assigned.flatMap((rowsOfFold, j) => (j === i ? [] : rowsOfFold));
    return { train: train.sort((a, b) => a - b), test: [...testRows].sort((a, b) => a - b) };
  });
}

/** The explicit test set of a dataset (rows whose split is `test`) and the rest. */
export function explicitTestSplit(splits: ArrayLike<string>): Holdout {
  const train: number[] = [];
  const test: number[] = [];
  for (let i = 0; i < splits.length; i++) (splits[i] === 'test' ? test : train).push(i);
  if (test.length === 0) throw new ZerveError('BAD_REQUEST', 'the dataset has no explicit test set');
  return { train, test };
}
