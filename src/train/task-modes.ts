import type * as tf from '@tensorflow/tfjs';
import { type CompareModesOptions, modeOutputs } from './compare-modes.js';
import { rocAuc } from './metrics.js';
import { DEFAULT_THRESHOLD, regressionMetrics } from './task-metrics.js';

/**
 * The BatchNorm-gap detectors of the regression and multi-label tasks (the classification one is
 * `compareModes`): the same model run in training mode (batched like `fit`) and in inference mode on
 * the same data, scored with the task's metrics. The post splitfit starts from names the signs: for
 * regression, MSE and Spearman's correlation disagree between the modes; for binary and multi-label
 * outputs, accuracy near the majority rate while the AUC is near 1 — the ranking survived, the
 * probabilities' scale did not.
 */

/**
 * A regression model's gap is flagged when the inference MSE exceeds the training-mode MSE by more than
 * this fraction of the targets' variance (R² lower by more than 0.1: scale-free, and sound when the
 * training-mode MSE is near 0)…
 */
export const MSE_GAP_LIMIT = 0.1;
/** …or the training-mode Spearman correlation exceeds the inference one by more than this. */
export const SPEARMAN_GAP_LIMIT = 0.1;
/** A label is flagged when its inference accuracy is within this of the majority rate… */
export const MAJORITY_MARGIN = 0.1;
/** …while its inference AUC is at least this… */
export const AUC_FLOOR = 0.9;
/** …and some other threshold would be right more often than the one used by more than this (so a good, imbalanced label is not flagged)… */
export const THRESHOLD_MARGIN = 0.1;
/** …and training mode is right more often than inference mode by more than this (the pattern comes from the modes, not a poorly calibrated head). */
export const MODE_MARGIN = 0.1;

export const REGRESSION_RULE = `flagged when the inference MSE exceeds the training-mode MSE by more than ${MSE_GAP_LIMIT}× the targets' variance (R² lower by more than ${MSE_GAP_LIMIT}), or the training-mode Spearman exceeds the inference one by more than ${SPEARMAN_GAP_LIMIT}`;
export const MULTILABEL_RULE =
  `a label is flagged when its inference accuracy is within ${MAJORITY_MARGIN} of the majority rate while its inference AUC is ≥ ${AUC_FLOOR} ` +
  `and the best threshold would be right more than ${THRESHOLD_MARGIN} more often, and training mode is right more than ${MODE_MARGIN} more often than inference mode ` +
  '(probabilities out of scale, ranking intact)';

export interface RegressionModeMetrics {
  /** Mean over targets, in the targets' units squared. */
  mse: number;
  /** Mean over targets; absent when a side is constant. */
  spearman?: number;
}

export interface RegressionModes {
  training: RegressionModeMetrics;
  inference: RegressionModeMetrics;
  /** `inference.mse − training.mse`: positive when inference is worse. */
  mseGap: number;
  /** `training.spearman − inference.spearman`, when both are defined. */
  spearmanGap?: number;
  flagged: boolean;
  rule: string;
}

export interface LabelModes {
  label: string;
  /** The accuracy of always answering the more common answer for this label on the data. */
  majorityRate: number;
  training: { accuracy: number; auc?: number };
  inference: { accuracy: number; auc?: number };
  /** Inference mode: the accuracy at the best single threshold (what the ranking would allow). */
  bestThresholdAccuracy: number;
  /** `training.accuracy − inference.accuracy`. */
  accuracyGap: number;
  /** The stated rule holds for this label. */
  flagged: boolean;
}

export interface MultiLabelModes {
  perLabel: LabelModes[];
  /** The largest per-label accuracy gap. */
  maxAccuracyGap: number;
  /** Labels the rule flags. */
  flagged: string[];
  rule: string;
}

/** MSE and Spearman in both modes of a regression model; `targets` row-major [n × k] in the model's output units. */
export async function compareRegressionModes(model: tf.LayersModel, x: tf.Tensor, targets: ArrayLike<number>, names: readonly string[], options: CompareModesOptions = {}): Promise<RegressionModes> {
  const out = await modeOutputs(model, x, options);
  return regressionModesOf(out.training, out.inference, targets, names);
}

/** The regression detector on outputs already computed (pure). */
export function regressionModesOf(training: ArrayLike<number>, inference: ArrayLike<number>, targets: ArrayLike<number>, names: readonly string[]): RegressionModes {
  const t = regressionMetrics(training, targets, names);
  const i = regressionMetrics(inference, targets, names);
  const spearmanGap = t.spearman !== undefined && i.spearman !== undefined ? t.spearman - i.spearman : undefined;
  const flagged = i.mse - t.mse > MSE_GAP_LIMIT * variance(targets, names.length) || (spearmanGap !== undefined && spearmanGap > SPEARMAN_GAP_LIMIT);
  return {
    training: { mse: t.mse, ...(t.spearman === undefined ? {} : { spearman: t.spearman }) },
    inference: { mse: i.mse, ...(i.spearman === undefined ? {} : { spearman: i.spearman }) },
    mseGap: i.mse - t.mse,
    ...(spearmanGap === undefined ? {} : { spearmanGap }),
    flagged,
    rule: REGRESSION_RULE,
  };
}

/** Per-label accuracy (at the thresholds) and AUC in both modes of a multi-label model; `targets` 0/1 [n × k]. */
export async function compareMultiLabelModes(
  model: tf.LayersModel,
  x: tf.Tensor,
  targets: ArrayLike<number>,
  labels: readonly string[],
  thresholds?: readonly number[],
  options: CompareModesOptions = {},
): Promise<MultiLabelModes> {
  const out = await modeOutputs(model, x, options);
  return multiLabelModesOf(out.training, out.inference, targets, labels, thresholds);
}

/** The multi-label detector on outputs already computed (pure). */
export function multiLabelModesOf(training: ArrayLike<number>, inference: ArrayLike<number>, targets: ArrayLike<number>, labels: readonly string[], thresholds?: readonly number[]): MultiLabelModes {
  const k = labels.length;
  const n = targets.length / k;
  const score = (probs: ArrayLike<number>, j: number): { accuracy: number; auc?: number } => {
    const scores: number[] = [];
    const positive: boolean[] = [];
    let right = 0;
    for (let r = 0; r < n; r++) {
      const p = probs[r * k + j]!;
      const y = targets[r * k + j] === 1;
      scores.push(p);
      positive.push(y);
      if (p >= (thresholds?.[j] ?? DEFAULT_THRESHOLD) === y) right++;
    }
    const auc = rocAuc(scores, positive);
    return { accuracy: right / n, ...(auc === undefined ? {} : { auc }) };
  };
  const perLabel = labels.map((label, j): LabelModes => {
    let pos = 0;
    for (let r = 0; r < n; r++) if (targets[r * k + j] === 1) pos++;
    const majorityRate = Math.max(pos, n - pos) / n;
    const t = score(training, j);
    const i = score(inference, j);
    const best = bestThresholdAccuracy(inference, targets, k, j);
    const flagged = Math.abs(i.accuracy - majorityRate) <= MAJORITY_MARGIN && i.auc !== undefined && i.auc >= AUC_FLOOR && best - i.accuracy > THRESHOLD_MARGIN && t.accuracy - i.accuracy > MODE_MARGIN;
    return { label, majorityRate, training: t, inference: i, bestThresholdAccuracy: best, accuracyGap: t.accuracy - i.accuracy, flagged };
  });
  return { perLabel, maxAccuracyGap: Math.max(...perLabel.map((l) => l.accuracyGap)), flagged: perLabel.filter((l) => l.flagged).map((l) => l.label), rule: MULTILABEL_RULE };
}

/** The best accuracy of label j over every threshold (predicting the top m scores positive, m = 0…n, tied scores together). */
function bestThresholdAccuracy(probs: ArrayLike<number>, targets: ArrayLike<number>, k: number, j: number): number {
  const n = targets.length / k;
  const rows = Array.from({ length: n }, (_, r) => ({ p: probs[r * k + j]!, y: targets[r * k + j] === 1 })).sort((a, b) => b.p - a.p);
  const negatives = rows.filter((r) => !r.y).length;
  let best = negatives; // m = 0: everything negative
  let tp = 0;
  let fp = 0;
  for (let m = 0; m < n; m++) {
    if (rows[m]!.y) tp++;
    else fp++;
    if (m + 1 < n && rows[m + 1]!.p === rows[m]!.p) continue;
    best = Math.max(best, tp + negatives - fp);
  }
  return best / n;
}

/** The targets' variance, averaged over the k columns (the MSE of the mean predictor). */
function variance(targets: ArrayLike<number>, k: number): number {
  const n = targets.length / k;
  let total = 0;
  for (let j = 0; j < k; j++) {
    let mean = 0;
    for (let r = 0; r < n; r++) mean += targets[r * k + j]! / n;
    for (let r = 0; r < n; r++) total += (targets[r * k + j]! - mean) ** 2 / n;
  }
  return total / k;
}
