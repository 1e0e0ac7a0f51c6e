import { argmaxRows, rocAuc } from './metrics.js';

/** Per-class scores of a classifier on labeled data (one-vs-rest for the AUC). */
export interface ClassMetrics {
  label: string;
  /** Of the samples predicted as this class, the fraction that are; 0 when none is predicted as it (scikit-learn's `zero_division=0`). */
  precision: number;
  /** Of the samples of this class, the fraction predicted as it; 0 when the data has none. */
  recall: number;
  /** Harmonic mean of precision and recall; 0 when both are 0. */
  f1: number;
  /** Samples of this class in the data. */
  support: number;
  /** One-vs-rest ROC AUC of this class's probability; absent when the data has no sample of it or only samples of it. */
  auc?: number;
}

/** What `evaluate` and the report say about each class, and how the errors fall. */
export interface ClassReport {
  /** `confusion[actual][predicted]` = number of samples; rows and columns in label order. */
  confusion: number[][];
  perClass: ClassMetrics[];
  /** Unweighted means over the classes. */
  macro: { precision: number; recall: number; f1: number };
}

/** Confusion matrix, per-class precision/recall/F1/support/AUC and their macro means, from softmax outputs. */
export function classReport(probs: Float32Array, actual: readonly number[], labels: readonly string[]): ClassReport {
  const k = labels.length;
  if (probs.length !== actual.length * k) throw new TypeError(`classReport: expected ${actual.length}×${k} probabilities, got ${probs.length}`);
  const predicted = argmaxRows(probs, k);
  const confusion = labels.map(() => new Array<number>(k).fill(0));
  actual.forEach((y, i) => confusion[y]![predicted[i]!]!++);
  const perClass = labels.map((label, j): ClassMetrics => {
    const tp = confusion[j]![j]!;
    const support = confusion[j]!.reduce((s, c) => s + c, 0);
    const predictedAs = confusion.reduce((s, row) => s + row[j]!, 0);
    const precision = predictedAs === 0 ? 0 : tp / predictedAs;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    const scores: number[] = [];
    for (let i = j; i < probs.length; i += k) scores.push(probs[i]!);
    const auc = rocAuc(scores, actual.map((y) => y === j));
    return { label, precision, recall, f1, support, ...(auc === undefined ? {} : { auc }) };
  });
  const mean = (f: (m: ClassMetrics) => number): number => perClass.reduce((s, m) => s + f(m), 0) / k;
  return { confusion, perClass, macro: { precision: mean((m) => m.precision), recall: mean((m) => m.recall), f1: mean((m) => m.f1) } };
}

/** A misclassified sample: its row, true and predicted class, and the probability given to each. */
export interface Misclassified {
  index: number;
  actual: number;
  predicted: number;
  /** Probability of the predicted (wrong) class. */
  confidence: number;
  /** Probability of the true class. */
  trueProbability: number;
}

/** The `limit` most confidently wrong samples, worst first (ties: lower row first, so the order is stable). */
export function worstMisclassified(probs: Float32Array, actual: readonly number[], k: number, limit: number): Misclassified[] {
  const predicted = argmaxRows(probs, k);
  const wrong: Misclassified[] = [];
  actual.forEach((y, i) => {
    const p = predicted[i]!;
    if (p !== y) wrong.push({ index: i, actual: y, predicted: p, confidence: probs[i * k + p]!, trueProbability: probs[i * k + y]! });
  });
  return wrong.sort((a, b) => b.confidence - a.confidence || a.index - b.index).slice(0, limit);
}
