import * as tf from '@tensorflow/tfjs';
import { rng } from '../random.js';
import type { Task } from '../data/types.js';
import type { Batch } from './batches.js';
import { perSampleTaskLoss, type RegressionLoss, taskScore } from './losses.js';
import { dropInput } from './head-stages.js';
import { type SoftmaxDense, softmaxBatchScores, softmaxDenseOf, softmaxTargets } from './softmax-dense.js';

export const OPTIMIZERS = ['adam', 'sgd', 'rmsprop', 'adagrad'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

export function makeOptimizer(name: OptimizerName, learningRate: number): tf.Optimizer {
  switch (name) {
    case 'adam':
      return tf.train.adam(learningRate);
    case 'sgd':
      return tf.train.sgd(learningRate);
    case 'rmsprop':
      return tf.train.rmsprop(learningRate);
    case 'adagrad':
      return tf.train.adagrad(learningRate);
  }
}

/**
 * Changes the step size of an optimizer made by `makeOptimizer` (for learning-rate schedules).
 * SGD caches `-learningRate` as a tensor and has a setter; the others read the field on every step.
 */
export function setLearningRate(optimizer: tf.Optimizer, learningRate: number): void {
  // Not `instanceof tf.SGDOptimizer`: tfjs's optimizers answer `instanceof` by duck typing, so Adam passes it.
  const o = optimizer as unknown as { learningRate: number; setLearningRate?: (lr: number) => void };
  if (typeof o.setLearningRate === 'function') o.setLearningRate(learningRate);
  else o.learningRate = learningRate;
}

/** How the loss is formed, beyond the cross-entropy itself. */
export interface LossOptions {
  /** Per-class loss weights. */
  classWeights?: readonly number[] | undefined;
  /** L2 penalty `weightDecay · Σ w²` over every trainable kernel (Keras `l2` convention; biases and BN are not decayed). @default 0 */
  weightDecay?: number | undefined;
  /** Targets become `(1 − ε) · onehot + ε / k` (Keras convention). @default 0 */
  labelSmoothing?: number | undefined;
  /**
   * What the head predicts: `classify` trains categorical cross-entropy on `Batch.labels`; `multilabel`
   * (per-label binary cross-entropy) and `regress` train on `Batch.targets` (see `losses.ts`).
   * `classWeights` and `labelSmoothing` apply to `classify` only. @default 'classify'
   */
  task?: Task | undefined;
  /** Regress only. @default 'mse' */
  regressionLoss?: RegressionLoss | undefined;
  /** Multilabel only: a positive target's weight per label. @default 1 */
  positiveWeights?: readonly number[] | undefined;
}

/**
 * Runs `fn` with `Math.random` replaced by a seeded stream. tfjs draws an unseeded dropout mask from
 * `Math.random` (a seeded dropout layer would reuse one mask on every step), so this is what makes
 * dropout heads train to the same weights for the same seed. `fn` is synchronous: nothing else runs meanwhile.
 */
export function withSeededRandom<T>(seed: number, fn: () => T): T {
  const saved = Math.random;
  Math.random = rng(seed);
  try {
    return fn();
  } finally {
    Math.random = saved;
  }
}

/**
 * One gradient step on a batch, the head in training mode (its own dropout and BN behave as
 * under `fit`). Loss: categorical cross-entropy on the softmax output, optionally class-weighted,
 * label-smoothed and L2-penalised; multilabel and regress heads train their task's loss instead
 * (`losses.ts`). Returns the batch loss (loss plus penalty, as Keras reports it) and how many samples
 * the training-mode output got right (for multilabel and regress, the summed `taskScore`).
 */
export function trainStep(head: tf.LayersModel, optimizer: tf.Optimizer, batch: Batch, k: number, loss: LossOptions = {}, randomSeed?: number): { loss: number; correct: number } {
  if (randomSeed !== undefined) return withSeededRandom(randomSeed, () => trainStep(head, optimizer, batch, k, loss));
  const task = loss.task ?? 'classify';
  const dense = task === 'classify' ? softmaxDenseOf(head) : undefined;
  if (dense) return closedFormStep(dense, optimizer, batch, k, loss);
  const n = batch.labels.length;
  const vars = head.trainableWeights.map((w) => w.read() as tf.Variable);
  const kernels = head.trainableWeights.filter((w) => /kernel$/.test(w.originalName)).map((w) => w.read());
  const { classWeights, weightDecay = 0, labelSmoothing = 0 } = loss;
  if (task !== 'classify') {
    if (batch.targets === undefined) throw new TypeError(`trainStep: a ${task} batch needs targets`);
    const targetOptions = { task, regressionLoss: loss.regressionLoss, positiveWeights: loss.positiveWeights };
    return tf.tidy(() => {
      const x = tf.tensor(batch.x, [n, ...(head.inputs[0]!.shape.slice(1) as number[])]);
      const y = tf.tensor2d(batch.targets!, [n, k]);
      let predicted: tf.Tensor | undefined;
      const cost = optimizer.minimize(
        () => {
          const p = head.apply(x, { training: true }) as tf.Tensor;
          predicted = tf.keep(p);
          let total: tf.Scalar = tf.mean(perSampleTaskLoss(p, y, targetOptions));
          if (weightDecay > 0 && kernels.length > 0) total = tf.add(total, tf.mul(weightDecay, tf.addN(kernels.map((w) => tf.sum(tf.square(w))))));
          return total;
        },
        true,
        vars,
      )!;
      const correct = taskScore(predicted!, y, task);
      predicted!.dispose();
      return { loss: cost.dataSync()[0]!, correct };
    });
  }
  return tf.tidy(() => {
    const x = tf.tensor(batch.x, [n, ...(head.inputs[0]!.shape.slice(1) as number[])]);
    const labels = tf.tensor1d(batch.labels, 'int32');
    const onehot = tf.oneHot(labels, k).toFloat();
    const y = labelSmoothing > 0 ? tf.add(tf.mul(onehot, 1 - labelSmoothing), labelSmoothing / k) : onehot;
    let predicted: tf.Tensor | undefined;
    const cost = optimizer.minimize(
      () => {
        const p = head.apply(x, { training: true }) as tf.Tensor;
        predicted = tf.keep(p.argMax(-1));
        const perSample = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1));
        let total: tf.Scalar = classWeights ? tf.div(tf.sum(tf.mul(perSample, tf.gather(tf.tensor1d([...classWeights]), labels))), n) : tf.mean(perSample);
        if (weightDecay > 0 && kernels.length > 0) total = tf.add(total, tf.mul(weightDecay, tf.addN(kernels.map((w) => tf.sum(tf.square(w))))));
        return total;
      },
      true,
      vars,
    )!;
    const correct = tf.sum(tf.equal(predicted!, labels).toInt()).dataSync()[0]!;
    predicted!.dispose();
    return { loss: cost.dataSync()[0]!, correct };
  });
}

/** {@link trainStep} of a one-layer softmax head: the closed-form gradient, applied by the same optimizer. */
function closedFormStep(dense: SoftmaxDense, optimizer: tf.Optimizer, batch: Batch, k: number, loss: LossOptions): { loss: number; correct: number } {
  const n = batch.labels.length;
  const { classWeights, weightDecay = 0, labelSmoothing = 0 } = loss;
  const { targets, rowWeights } = softmaxTargets(batch.labels, k, [labelSmoothing], classWeights);
  return tf.tidy(() => {
    const kernel = dense.dense.kernel.read() as tf.Variable;
    const bias = dense.dense.bias?.read() as tf.Variable | undefined;
    const input = tf.tensor2d(batch.x, [n, kernel.shape[0]!]);
    // The Dropout layer's own draws from the seeded Math.random (what the head's forward would draw).
    const x = dense.dropout ? (dropInput(input, dense.dropout, undefined) as tf.Tensor2D) : input;
    const z = tf.matMul(x, kernel);
    const p = tf.softmax(bias ? tf.add(z, bias) : z);
    const g = tf.sub(tf.mul(p, tf.tensor2d(rowWeights, [n, 1])), tf.tensor2d(targets, [n, k]));
    // The penalty `weightDecay · Σ w²` of the weights the step starts from, as the tape's loss has it.
    const penalty = weightDecay > 0 ? tf.sum(tf.square(kernel)) : undefined;
    const kernelGrad = tf.matMul(x, g, true, false);
    optimizer.applyGradients({
      [kernel.name]: penalty ? tf.add(kernelGrad, tf.mul(kernel, 2 * weightDecay)) : kernelGrad,
      ...(bias ? { [bias.name]: tf.sum(g, 0) } : {}),
    });
    const scores = softmaxBatchScores(p.dataSync() as Float32Array, batch.labels, k, [labelSmoothing], classWeights);
    return { loss: scores.losses[0]! + (penalty ? weightDecay * penalty.dataSync()[0]! : 0), correct: scores.correct[0]! };
  });
}
