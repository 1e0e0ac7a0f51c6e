/**
 * The closed-form step of a softmax Dense head (issue #13 timing): it moves the weights as the
 * tape's gradient of the same loss does (label smoothing, class weights, weight decay, a Dropout
 * layer's seeded mask), reports the same loss and count, leaks nothing, and applies only to the
 * heads it is right for. Where the tape's clip zeroes the gradient (p < 1e-7 on the true class),
 * the closed form still learns: the unclipped gradient, as Keras trains a softmax output.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { rng } from '../src/random.js';
import { softmaxDenseOf } from '../src/train/softmax-dense.js';
import { makeOptimizer, type LossOptions, trainStep, withSeededRandom } from '../src/train/step.js';
import { expectNoTensorLeak, expectTensorsClose } from './helpers/tensors.js';

const D = 6;
const K = 3;
const N = 12;

/** Input → [Flatten] → [Dropout] → Dense(K, activation), with seeded weights. */
function headOf(o: { activation?: string; dropout?: number; flatten?: boolean; hidden?: boolean; regularized?: boolean } = {}): tf.LayersModel {
  const input = tf.input({ shape: o.flatten ? [1, 2, D / 2] : [D] });
  let h: tf.SymbolicTensor = input;
  if (o.flatten) h = tf.layers.flatten().apply(h) as tf.SymbolicTensor;
  if (o.hidden) h = tf.layers.dense({ units: 4, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(h) as tf.SymbolicTensor;
  if (o.dropout !== undefined) h = tf.layers.dropout({ rate: o.dropout, seed: 5 }).apply(h) as tf.SymbolicTensor;
  const dense = tf.layers.dense({
    units: K,
    activation: (o.activation ?? 'softmax') as 'softmax',
    kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }),
    biasInitializer: tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: 3 }),
    ...(o.regularized ? { kernelRegularizer: tf.regularizers.l2({ l2: 0.01 }) } : {}),
  });
  return tf.model({ inputs: input, outputs: dense.apply(h) as tf.SymbolicTensor });
}

function batchOf(seed: number): { x: Float32Array; labels: number[]; views: number[] } {
  const r = rng(seed);
  return { x: Float32Array.from({ length: N * D }, () => r() * 4 - 2), labels: Array.from({ length: N }, (_, i) => (i * 7) % K), views: new Array<number>(N).fill(0) };
}

/** The tape's loss of the batch (trainStep's formula before the closed form), its gradients, and the training-mode output's correct count. */
function tapeStep(head: tf.LayersModel, batch: ReturnType<typeof batchOf>, loss: LossOptions, seed: number): { loss: number; correct: number; grads: tf.Tensor[] } {
  const { classWeights, weightDecay = 0, labelSmoothing = 0 } = loss;
  return withSeededRandom(seed, () =>
    tf.tidy(() => {
      const x = tf.tensor(batch.x, [N, ...(head.inputs[0]!.shape.slice(1) as number[])]);
      const labels = tf.tensor1d(batch.labels, 'int32');
      const y = tf.add(tf.mul(tf.oneHot(labels, K).toFloat(), 1 - labelSmoothing), labelSmoothing / K);
      const vars = head.trainableWeights.map((w) => w.read() as tf.Variable);
      let correct = 0;
      const { value, grads } = tf.variableGrads(() => {
        const p = head.apply(x, { training: true }) as tf.Tensor;
        correct = tf.sum(tf.equal(tf.argMax(p, -1), labels).toInt()).dataSync()[0]!;
        const perSample = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1));
        const data = classWeights ? tf.div(tf.sum(tf.mul(perSample, tf.gather(tf.tensor1d([...classWeights]), labels))), N) : tf.mean(perSample);
        return tf.add(data, tf.mul(weightDecay, tf.sum(tf.square(vars[0]!)))) as tf.Scalar;
      }, vars);
      return { loss: value.dataSync()[0]!, correct, grads: vars.map((v) => tf.keep(grads[v.name]!)) };
    }),
  );
}

describe('the closed-form step of a softmax Dense head (train/softmax-dense.ts)', () => {
  const cases: [string, Parameters<typeof headOf>[0], LossOptions][] = [
    ['plain', {}, {}],
    ['label smoothing, class weights and weight decay', {}, { labelSmoothing: 0.1, classWeights: [1, 2.5, 0.5], weightDecay: 0.01 }],
    ['a leading Flatten', { flatten: true }, { weightDecay: 1e-3 }],
    ['a Dropout layer before the Dense one (its seeded mask)', { dropout: 0.4 }, { labelSmoothing: 0.2 }],
  ];
  for (const [name, shape, loss] of cases) {
    it(`moves the weights as the tape's gradient does, with the same loss and count: ${name}`, () => {
      const head = headOf(shape);
      expect(softmaxDenseOf(head)).toBeDefined();
      const batch = batchOf(7);
      const tape = tapeStep(head, batch, loss, 11);
      const before = head.trainableWeights.map((w) => w.read().clone());
      // SGD with step 1: the weights move by exactly minus the gradient the step used.
      const optimizer = makeOptimizer('sgd', 1);
      const r = expectNoTensorLeak(() => trainStep(head, optimizer, batch, K, loss, 11));
      optimizer.dispose();
      expect(r.loss).toBeCloseTo(tape.loss, 6);
      expect(r.correct).toBe(tape.correct);
      head.trainableWeights.forEach((w, i) => {
        const moved = tf.sub(before[i]!, w.read());
        expectTensorsClose(moved, tape.grads[i]!, 1e-6);
        moved.dispose();
      });
      tf.dispose([...before, ...tape.grads]);
    });
  }

  it('takes only the heads it is right for: one softmax Dense layer after an optional Flatten and Dropout', () => {
    expect(softmaxDenseOf(headOf({ flatten: true, dropout: 0.2 }))).toBeDefined();
    expect(softmaxDenseOf(headOf({ hidden: true }))).toBeUndefined();
    expect(softmaxDenseOf(headOf({ activation: 'sigmoid' }))).toBeUndefined();
    expect(softmaxDenseOf(headOf({ regularized: true }))).toBeUndefined();
    // A Sequential model lists no input layer: it takes the tape (buildHead makes functional heads).
    expect(softmaxDenseOf(tf.sequential({ layers: [tf.layers.dense({ inputShape: [D], units: K, activation: 'softmax' })] }))).toBeUndefined();
  });

  it('still learns from a sample whose true class has p < 1e-7, where the clip zeroes the tape’s gradient', () => {
    const head = headOf();
    // Logits far apart: sample 0 (label 0) gets p ≈ e^-40 on its class.
    head.layers.at(-1)!.setWeights([tf.tensor2d([[-20, 20, 0], ...Array.from({ length: D - 1 }, () => [0, 0, 0])]), tf.zeros([K])]);
    const batch = { x: Float32Array.from({ length: D }, (_, j) => (j === 0 ? 1 : 0)), labels: [0], views: [0] };
    const optimizer = makeOptimizer('sgd', 0.1);
    const before = head.getWeights()[0]!.arraySync() as number[][];
    trainStep(head, optimizer, batch, K);
    const after = head.getWeights()[0]!.arraySync() as number[][];
    optimizer.dispose();
    // The closed form's gradient on the true class's logit is p − 1 ≈ −1: its kernel entry rises by lr · 1.
    expect(after[0]![0]! - before[0]![0]!).toBeCloseTo(0.1, 5);
    expect(after[0]![1]! - before[0]![1]!).toBeCloseTo(-0.1, 5);
  });
});
