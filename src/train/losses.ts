import * as tf from '@tensorflow/tfjs';
import type { Task } from '../data/types.js';

/**
 * The losses of the regression and multi-label heads (classification keeps its cross-entropy in
 * `step.ts`). Targets come as [n × k] tensors: standardised values (regress, see `target-scale.ts`)
 * or 0/1 per label (multilabel).
 */
export const REGRESSION_LOSSES = ['mse', 'mae', 'huber'] as const;
export type RegressionLoss = (typeof REGRESSION_LOSSES)[number];

/**
 * Huber's δ, in standardised target units (the head trains on (y − μ)/σ): errors under one standard
 * deviation are squared, larger ones count linearly, so a few wild targets do not dominate.
 */
export const HUBER_DELTA = 1;

/** How a non-classification head's loss is formed. */
export interface TaskLossOptions {
  task: Exclude<Task, 'classify'>;
  /** Regress only. @default 'mse' */
  regressionLoss?: RegressionLoss | undefined;
  /** Multilabel only: the weight of a positive target per label (`neg / pos` on the training data balances them). @default 1 for every label */
  positiveWeights?: readonly number[] | undefined;
}

const EPS = 1e-7;

/** Per-sample loss [n]: the mean over the k outputs of the task's loss. */
export function perSampleTaskLoss(predicted: tf.Tensor, targets: tf.Tensor, o: TaskLossOptions): tf.Tensor1D {
  return tf.tidy(() => {
    if (o.task === 'multilabel') {
      const p = tf.clipByValue(predicted, EPS, 1 - EPS);
      const positive = o.positiveWeights ? tf.mul(targets, tf.tensor1d([...o.positiveWeights])) : targets;
      const bce = tf.neg(tf.add(tf.mul(positive, tf.log(p)), tf.mul(tf.sub(1, targets), tf.log(tf.sub(1, p)))));
      return tf.mean(bce, -1) as tf.Tensor1D;
    }
    const e = tf.sub(predicted, targets);
    const loss = o.regressionLoss ?? 'mse';
    if (loss === 'mse') return tf.mean(tf.square(e), -1) as tf.Tensor1D;
    const a = tf.abs(e);
    if (loss === 'mae') return tf.mean(a, -1) as tf.Tensor1D;
    const quadratic = tf.minimum(a, HUBER_DELTA);
    return tf.mean(tf.add(tf.mul(0.5, tf.square(quadratic)), tf.mul(HUBER_DELTA, tf.sub(a, quadratic))), -1) as tf.Tensor1D;
  });
}

/**
 * The epoch score of a batch, summed over its samples (the loop divides by n): multilabel, the
 * fraction of a sample's label decisions at 0.5 that are right; regress, 1 − its mean squared error in
 * standardised units, so that over the training data the epoch's score is R² (the targets have unit
 * variance there). Higher is better in every task, like accuracy.
 */
export function taskScore(predicted: tf.Tensor, targets: tf.Tensor, task: Exclude<Task, 'classify'>): number {
  return tf.tidy(() => {
    const perSample =
      task === 'multilabel' ? tf.mean(tf.equal(tf.greaterEqual(predicted, 0.5), tf.equal(targets, 1)).toFloat(), -1) : tf.sub(1, tf.mean(tf.square(tf.sub(predicted, targets)), -1));
    return tf.sum(perSample).dataSync()[0]!;
  });
}

/**
 * Per-label positive weights `neg / pos` from 0/1 targets [n × k]: a rare label's positives then weigh
 * as much in the loss as its negatives. A label with no positive (or no negative) gets weight 1.
 */
export function positiveWeightsOf(targets: ArrayLike<number>, k: number): number[] {
  const pos = new Array<number>(k).fill(0);
  const n = targets.length / k;
  for (let i = 0; i < targets.length; i++) if (targets[i] === 1) pos[i % k]!++;
  return pos.map((p) => (p === 0 || p === n ? 1 : (n - p) / p));
}
