import * as tf from '@tensorflow/tfjs';
import type { Batch } from './batches.js';

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
 * One gradient step on a batch, the head in training mode (its own dropout and BN behave as
 * under `fit`). Loss: categorical cross-entropy on the softmax output, optionally class-weighted.
 * Returns the batch loss and how many samples the training-mode output got right.
 */
export function trainStep(
  head: tf.LayersModel,
  optimizer: tf.Optimizer,
  batch: Batch,
  k: number,
  classWeights: readonly number[] | undefined,
): { loss: number; correct: number } {
  const n = batch.labels.length;
  const vars = head.trainableWeights.map((w) => w.read() as tf.Variable);
  return tf.tidy(() => {
    const x = tf.tensor(batch.x, [n, ...(head.inputs[0]!.shape.slice(1) as number[])]);
    const labels = tf.tensor1d(batch.labels, 'int32');
    const y = tf.oneHot(labels, k).toFloat();
    let predicted: tf.Tensor | undefined;
    const cost = optimizer.minimize(
      () => {
        const p = head.apply(x, { training: true }) as tf.Tensor;
        predicted = tf.keep(p.argMax(-1));
        const perSample = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1));
        if (!classWeights) return tf.mean(perSample) as tf.Scalar;
        const w = tf.gather(tf.tensor1d([...classWeights]), labels);
        return tf.div(tf.sum(tf.mul(perSample, w)), n) as tf.Scalar;
      },
      true,
      vars,
    )!;
    const correct = tf.sum(tf.equal(predicted!, labels).toInt()).dataSync()[0]!;
    predicted!.dispose();
    return { loss: cost.dataSync()[0]!, correct };
  });
}
