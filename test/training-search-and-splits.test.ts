import assert from 'node:assert/strict';
import { ZerveError } from '../shared/errors.ts';
import { classificationReport, logLoss } from '../workers/training/metrics.ts';
import { Rng } from '../shared/rng.ts';
import { expandSearch, gridSearch, parseSearchSpace, randomSearch } from '../shared/search-space.ts';
import { explicitTestSplit, stratifiedHoldout, stratifiedKFold } from '../workers/training/splits.ts';

describe('training search spaces, splits and metrics', () => {
  it('repeats the same numbers for the same seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const seqA = Array.from({ length: 5 }, () => [a.next(), a.normal()]);
    assert.deepEqual(seqA, Array.from({ length: 5 }, () => [b.next(), b.normal()]));
    assert.notDeepEqual(new Rng(43).next(), new Rng(42).next());
    assert.deepEqual(new Rng(1).shuffle([1, 2, 3, 4, 5, 6]).sort(), [1, 2, 3, 4, 5, 6]);
  });

  it('expands a grid into every combination', () => {
    const sets = gridSearch(parseSearchSpace(['learningRate=0.001,0.01', 'hidden=64,128x32,none']));
    assert.equal(sets.length, 6);
    assert.deepEqual(sets[0], { learningRate: 0.001, hidden: 64 });
    assert.deepEqual(sets[5], { learningRate: 0.01, hidden: 'none' });
    assert.throws(() => gridSearch(parseSearchSpace(['l2=0:1'])), (err: unknown) => err instanceof ZerveError && err.code === 'BAD_REQUEST');
  });

  it('samples ranges reproducibly, log-uniformly for the learning rate', () => {
    const space = parseSearchSpace(['learningRate=0.0001:0.1', 'batchSize=32:256', 'momentum=0.8:0.99']);
    const a = randomSearch(space, 400, 5);
    assert.deepEqual(a, randomSearch(space, 400, 5));
    assert.notDeepEqual(a, randomSearch(space, 400, 6));
    const rates = a.map((s) => s.learningRate as number);
    assert.ok(rates.every((r) => r >= 0.0001 && r <= 0.1));
    // Log-uniform: about a third of the draws in each of the three decades.
    const lowDecade = rates.filter((r) => r < 0.001).length / rates.length;
    assert.ok(lowDecade > 0.25 && lowDecade < 0.42, `share below 1e-3: ${lowDecade}`);
    assert.ok(a.every((s) => Number.isInteger(s.batchSize) && (s.batchSize as number) >= 32 && (s.batchSize as number) <= 256));
    assert.deepEqual(expandSearch(undefined, 1), [{}]);
    assert.throws(() => parseSearchSpace(['nonsense']), (err: unknown) => err instanceof ZerveError && err.code === 'BAD_REQUEST');
  });

  it('stratifies holdout and k-fold splits', () => {
    const labels = Int32Array.from({ length: 100 }, (_, i) => (i < 80 ? 0 : 1));
    const h = stratifiedHoldout(labels, 0.25, 1);
    assert.equal(h.test.length, 25);
    assert.equal(h.test.filter((r) => labels[r] === 1).length, 5);
    assert.deepEqual([...h.train, ...h.test].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual(stratifiedHoldout(labels, 0.25, 1), h);
    const folds = stratifiedKFold(labels, 5, 2);
    assert.equal(folds.length, 5);
    assert.deepEqual(folds.flatMap((f) => f.test).sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
    for (const f of folds) assert.equal(f.test.filter((r) => labels[r] === 1).length, 4);
    assert.deepEqual(explicitTestSplit(['train', 'test', 'train']), { train: [0, 2], test: [1] });
  });

  it('computes accuracy, per-class and macro scores, confusion and log loss', () => {
    const actual = [0, 0, 1, 1, 2];
    const predicted = [0, 1, 1, 1, 0];
    const report = classificationReport(actual, predicted, 3);
    assert.equal(report.accuracy, 0.6);
    assert.deepEqual(report.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]]);
    assert.deepEqual(report.perClass[1], { precision: 2 / 3, recall: 1, f1: 0.8, support: 2 });
    assert.equal(report.perClass[2].f1, 0);
    assert.ok(Math.abs(report.macroF1 - (0.5 + 0.8 + 0) / 3) < 1e-12);
    assert.ok(Math.abs(logLoss([1], [0.25, 0.75], 2) + Math.log(0.75)) < 1e-12);
  });
});
