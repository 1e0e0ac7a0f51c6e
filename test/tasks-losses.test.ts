import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { buildHead } from '../src/index.js';
import { foldTargetScale } from '../src/model/target-scale.js';
import { HUBER_DELTA, perSampleTaskLoss, taskScore } from '../src/train/losses.js';
import { makeOptimizer, trainStep } from '../src/train/step.js';
import { residualToyModel } from './helpers/models.js';
import { expectNoTensorLeak } from './helpers/tensors.js';

const loss = (p: number[][], y: number[][], o: Parameters<typeof perSampleTaskLoss>[2]): number[] =>
  tf.tidy(() => Array.from(perSampleTaskLoss(tf.tensor2d(p), tf.tensor2d(y), o).dataSync()));

describe('task losses by hand', () => {
  it('mse, mae, huber (δ = 1): mean over the outputs of each sample', () => {
    // errors: sample 0 → [0.5, −2], sample 1 → [0, 3]
    const p = [[1.5, 0], [2, 5]];
    const y = [[1, 2], [2, 2]];
    expect(loss(p, y, { task: 'regress', regressionLoss: 'mse' })).toEqual([(0.25 + 4) / 2, 9 / 2]);
    expect(loss(p, y, { task: 'regress', regressionLoss: 'mae' })).toEqual([(0.5 + 2) / 2, 3 / 2]);
    // huber: ½e² for |e| ≤ 1, else |e| − ½ → [0.125, 1.5] and [0, 2.5]
    expect(HUBER_DELTA).toBe(1);
    expect(loss(p, y, { task: 'regress', regressionLoss: 'huber' })).toEqual([(0.125 + 1.5) / 2, 2.5 / 2]);
  });

  it('multilabel BCE per label, positives weighted', () => {
    const [plain] = loss([[0.8, 0.4]], [[1, 0]], { task: 'multilabel' });
    expect(plain).toBeCloseTo(-(Math.log(0.8) + Math.log(0.6)) / 2, 6);
    const [weighted] = loss([[0.8, 0.4]], [[1, 0]], { task: 'multilabel', positiveWeights: [3, 5] });
    // Only the positive target's term is weighted (label 1 is negative here: its weight 5 does not apply).
    expect(weighted).toBeCloseTo(-(3 * Math.log(0.8) + Math.log(0.6)) / 2, 6);
  });

  it('the epoch score: per-label accuracy at 0.5, or 1 − squared error', () => {
    // multilabel: sample 0 both right, sample 1 one of two right (0.5 counts as predicted) → 1 + 0.5
    const s = tf.tidy(() => taskScore(tf.tensor2d([[0.9, 0.1], [0.5, 0.7]]), tf.tensor2d([[1, 0], [0, 1]]), 'multilabel'));
    expect(s).toBeCloseTo(1.5, 6);
    const r = tf.tidy(() => taskScore(tf.tensor2d([[0.5], [-1]]), tf.tensor2d([[0], [-1]]), 'regress'));
    expect(r).toBeCloseTo(1 - 0.25 + 1, 6);
  });
});

describe('trainStep on multilabel and regress batches', () => {
  for (const task of ['regress', 'multilabel'] as const) {
    it(`${task}: reports the loss at the pre-step weights, moves the weights, leaks no tensor`, async () => {
      const head = await buildHead(residualToyModel(), 'block2_add', [4], { spec: task === 'regress' ? 'dense:N:linear' : 'dense:N:sigmoid', numClasses: 2, seed: 1, task });
      const optimizer = makeOptimizer('sgd', 0.1);
      const x = new Float32Array([0.5, -1, 2, 0.25, 1, 1, -0.5, 0, 0.1, 0.2, 0.3, 0.4]);
      const targets = task === 'regress' ? new Float32Array([1, -1, 0.5, 2, -0.3, 0]) : new Float32Array([1, 0, 0, 1, 1, 1]);
      const batch = { x, labels: [0, 0, 0], views: [0, 0, 0], targets };
      const options = { task, regressionLoss: 'huber' as const, positiveWeights: [2, 1] };
      const expected = tf.tidy(() => {
        const p = head.predict(tf.tensor2d(x, [3, 4])) as tf.Tensor;
        return tf.mean(perSampleTaskLoss(p, tf.tensor2d(targets, [3, 2]), options)).dataSync()[0]!;
      });
      trainStep(head, optimizer, batch, 2, options); // warm-up: an optimizer's state is created on its first step
      const before = head.getWeights().map((w) => Array.from(w.dataSync()));
      const r = expectNoTensorLeak(() => trainStep(head, optimizer, batch, 2, options));
      expect(Number.isFinite(r.loss)).toBe(true);
      // The score sums per-sample scores of at most 1: label accuracy in [0, 1], or 1 − squared error ≤ 1.
      expect(r.correct).toBeLessThanOrEqual(3);
      if (task === 'multilabel') expect(r.correct).toBeGreaterThanOrEqual(0);
      expect(head.getWeights().map((w) => Array.from(w.dataSync()))).not.toEqual(before);
      // A fresh head (same seed) reports exactly the hand-computed loss on its first step.
      const fresh = await buildHead(residualToyModel(), 'block2_add', [4], { spec: task === 'regress' ? 'dense:N:linear' : 'dense:N:sigmoid', numClasses: 2, seed: 1, task });
      expect(trainStep(fresh, makeOptimizer('sgd', 0.1), batch, 2, options).loss).toBeCloseTo(expected, 5);
      expect(() => trainStep(fresh, optimizer, { ...batch, targets: undefined as never }, 2, options)).toThrow(TypeError);
    });
  }

  it('foldTargetScale leaks no tensor', async () => {
    const head = await buildHead(residualToyModel(), 'block2_add', [4], { spec: 'dense:N:linear', numClasses: 1, seed: 1, task: 'regress' });
    expectNoTensorLeak(() => foldTargetScale(head, { mean: [3], std: [2] }));
  });
});
