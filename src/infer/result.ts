/**
 * The answer for one image, one type per task: the same shape from the library's `predict()`,
 * `splitfit predict --json` and the browser module. Pure (the browser bundle includes this file):
 * the builders take one row of the model's outputs, in output order, and the output names.
 */

import { DEFAULT_LABEL_THRESHOLD } from '../model/metadata.js';

/** `classify`: the most probable class. */
export interface ClassificationResult {
  label: string;
  probability: number;
  /** Every class's probability, keyed by label. */
  probabilities: Record<string, number>;
}

/** `multilabel`: every label whose probability reaches its threshold (possibly none). */
export interface MultiLabelResult {
  /** The predicted labels, in the model's label order: those with probability ≥ their threshold. */
  labels: string[];
  /** Every label's own probability (sigmoid, independent: they need not sum to 1), keyed by label. */
  probabilities: Record<string, number>;
}

/** `regress`: the predicted values, in the targets' own units. */
export interface RegressionResult {
  /** The first target's value: the answer of a single-target model. */
  value: number;
  /** Every target's value, keyed by target name. */
  values: Record<string, number>;
}

export type TaskResult = ClassificationResult | MultiLabelResult | RegressionResult;

/** Builds a result from one row of probabilities in label order. */
export function classificationResult(row: ArrayLike<number>, labels: readonly string[]): ClassificationResult {
  let best = 0;
  for (let j = 1; j < labels.length; j++) if (row[j]! > row[best]!) best = j;
  return {
    label: labels[best]!,
    probability: row[best]!,
    probabilities: Object.fromEntries(labels.map((l, j) => [l, row[j]!])),
  };
}

export { DEFAULT_LABEL_THRESHOLD };

/**
 * Builds a multi-label result from one row of sigmoid probabilities in label order; label j is
 * predicted when `row[j] ≥ thresholds[j]` (0.5 for every label when no thresholds are given).
 */
export function multiLabelResult(row: ArrayLike<number>, labels: readonly string[], thresholds?: readonly number[]): MultiLabelResult {
  if (thresholds !== undefined && thresholds.length !== labels.length) throw new TypeError(`multiLabelResult: ${thresholds.length} thresholds for ${labels.length} labels`);
  return {
    labels: labels.filter((_, j) => row[j]! >= (thresholds?.[j] ?? DEFAULT_LABEL_THRESHOLD)),
    probabilities: Object.fromEntries(labels.map((l, j) => [l, row[j]!])),
  };
}

/** Builds a regression result from one row of outputs (already in the targets' units) in target order. */
export function regressionResult(row: ArrayLike<number>, targets: readonly string[]): RegressionResult {
  return { value: row[0]!, values: Object.fromEntries(targets.map((t, j) => [t, row[j]!])) };
}

/** What a result builder needs to know about the model: its task, output names and (multilabel) thresholds. */
export interface ResultSpec {
  task: 'classify' | 'multilabel' | 'regress';
  labels: readonly string[];
  thresholds?: readonly number[] | undefined;
}

/** The task's result for one row of outputs: what the browser module and `predict()` call per image. */
export function taskResult(row: ArrayLike<number>, spec: ResultSpec): TaskResult {
  switch (spec.task) {
    case 'classify':
      return classificationResult(row, spec.labels);
    case 'multilabel':
      return multiLabelResult(row, spec.labels, spec.thresholds);
    case 'regress':
      return regressionResult(row, spec.labels);
  }
}
