/**
 * The practitioner's floor: multinomial logistic regression on pooled features (a "linear probe").
 * Features are standardised with the training mean and sd; the objective is mean cross-entropy +
 * (λ/2)·‖W‖², convex, minimised full-batch (Adam, fixed iterations, zero init: deterministic); λ is
 * chosen by stratified 3-fold cross-validation on the training data only.
 */
import * as tf from '@tensorflow/tfjs';
import { foldRows, stratifiedFolds } from '../src/job/folds.js';
import { type FeatureSet, subsetFeatureSet } from '../src/train/feature-set.js';

const LAMBDAS = [1e-4, 1e-3, 1e-2, 1e-1];
const ITERATIONS = 500;

interface Fit {
  w: tf.Variable;
  b: tf.Variable;
  mean: tf.Tensor;
  sd: tf.Tensor;
}

function fit(set: FeatureSet, k: number, lambda: number): Fit {
  const d = set.featureShape[0]!;
  const n = set.ids.length;
  const x0 = tf.tensor2d(set.x, [n, d]);
  const { mean, variance } = tf.moments(x0, 0);
  const sd = tf.tidy(() => tf.add(tf.sqrt(variance), 1e-6));
  const x = tf.tidy(() => tf.div(tf.sub(x0, mean), sd));
  x0.dispose();
  variance.dispose();
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(set.labels, 'int32'), k).toFloat());
  const w = tf.variable(tf.zeros([d, k]));
  const b = tf.variable(tf.zeros([k]));
  const opt = tf.train.adam(0.01);
  for (let i = 0; i < ITERATIONS; i++) {
    tf.tidy(() => {
      opt.minimize(() => tf.add(tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(x, w), b)), tf.mul(lambda / 2, tf.sum(tf.square(w)))) as tf.Scalar, false, [w, b]);
    });
  }
  opt.dispose();
  tf.dispose([x, y]);
  return { w, b, mean, sd };
}

function predict(f: Fit, set: FeatureSet): number[] {
  return tf.tidy(() => {
    const x = tf.div(tf.sub(tf.tensor2d(set.x, [set.ids.length, set.featureShape[0]!]), f.mean), f.sd);
    return Array.from(tf.argMax(tf.add(tf.matMul(x, f.w), f.b), -1).dataSync());
  });
}

function accuracy(f: Fit, set: FeatureSet): number {
  const pred = predict(f, set);
  return set.labels.filter((y, i) => pred[i] === y).length / set.labels.length;
}

const dispose = (f: Fit): void => tf.dispose([f.w, f.b, f.mean, f.sd]);

export function linearProbe(
  train: FeatureSet,
  k: number,
  seed: number,
): { lambda: number; iterations: number; accuracy(set: FeatureSet): number; predict(set: FeatureSet): number[]; dispose(): void } {
  const folds = stratifiedFolds(train.labels, 3, seed);
  const scores = LAMBDAS.map((lambda) => {
    let sum = 0;
    for (let f = 0; f < 3; f++) {
      const r = foldRows(folds, f);
      const m = fit(subsetFeatureSet(train, r.train), k, lambda);
      sum += accuracy(m, subsetFeatureSet(train, r.val));
      dispose(m);
    }
    return sum / 3;
  });
  const lambda = LAMBDAS[scores.indexOf(Math.max(...scores))]!;
  const final = fit(train, k, lambda);
  return { lambda, iterations: ITERATIONS, accuracy: (set) => accuracy(final, set), predict: (set) => predict(final, set), dispose: () => dispose(final) };
}
