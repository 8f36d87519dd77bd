/**
 * Classification metrics from labels and predictions: accuracy, confusion matrix, per-class and
 * macro precision/recall/F1 (a class never predicted has precision 0; never present, recall 0),
 * and log loss from probabilities.
 */
import { argmax } from '../../shared/argmax.ts';
export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationReport {
  accuracy: number;
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  perClass: ClassMetrics[];
  /** confusion[actual][predicted]. */
  confusion: number[][];
  /** Mean negative log-probability of the true class, when probabilities were given. */
  logLoss?: number;
}

/** Top-1 index per row of a row-major [rows, classes] matrix. */
export function argmaxRows(values: ArrayLike<number>, rows: number, classes: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) out[r] = argmax(values, r * classes, (r + 1) * classes);
  return out;
}

export function accuracy(actual: ArrayLike<number>, predicted: ArrayLike<number>): number {
  if (actual.length === 0) return 0;
  let correct = 0;
  for (let i = 0; i < actual.length; i++) if (actual[i] === predicted[i]) correct++;
  return correct / actual.length;
}

export function confusionMatrix(actual: ArrayLike<number>, predicted: ArrayLike<number>, classes: number): number[][] {
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < actual.length; i++) m[actual[i]][predicted[i]]++;
  return m;
}

/** The smallest probability a log loss takes the log of (a class given 0 costs -ln 1e-15, not infinity). */
export const MIN_PROBABILITY = 1e-15;

/** Mean cross-entropy; `proba` is row-major [rows, classes], clipped at MIN_PROBABILITY. */
export function logLoss(actual: ArrayLike<number>, proba: ArrayLike<number>, classes: number): number {
  if (actual.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < actual.length; i++) sum -= Math.log(Math.max(proba[i * classes + actual[i]], MIN_PROBABILITY));
  return sum / actual.length;
}

export function classificationReport(
  actual: ArrayLike<number>,
  predicted: ArrayLike<number>,
  classes: number,
  proba?: ArrayLike<number>,
): ClassificationReport {
  const confusion = confusionMatrix(actual, predicted, classes);
  const perClass: ClassMetrics[] = [];
  for (let c = 0; c < classes; c++) {
    const tp = confusion[c][c];
    let predictedAs = 0;
    let support = 0;
    for (let k = 0; k < classes; k++) {
      predictedAs += confusion[k][c];
      support += confusion[c][k];
    }
    const precision = predictedAs === 0 ? 0 : tp / predictedAs;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    perClass.push({ precision, recall, f1, support });
  }
  const mean = (key: keyof ClassMetrics): number => perClass.reduce((s, m) => s + m[key], 0) / Math.max(classes, 1);
  const report: ClassificationReport = {
    accuracy: accuracy(actual, predicted),
    macroPrecision: mean('precision'),
    macroRecall: mean('recall'),
    macroF1: mean('f1'),
    perClass,
    confusion,
  };
  if (proba) report.logLoss = logLoss(actual, proba, classes);
  return report;
}
