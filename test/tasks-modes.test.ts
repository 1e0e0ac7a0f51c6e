import * as tf from '@tensorflow/tfjs';
import { frozenBnToy } from './helpers/bn-toy.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockBatchNorm } from '../src/index.js';
import { compareMultiLabelModes, compareRegressionModes, multiLabelModesOf, regressionModesOf } from '../src/train/task-modes.js';
import { toyImages } from './helpers/data.js';
import { expectNoTensorLeak } from './helpers/tensors.js';

describe('the stated rules, on outputs built by hand', () => {
  it('multilabel: accuracy at the majority rate with AUC 1 is flagged; a good label and a good imbalanced label are not', () => {
    // 10 samples, 3 labels. Label "shifted": half positive; inference probabilities all in [0.6, 0.9] but
    // perfectly ranked → every answer "yes" → accuracy 0.5 = majority, AUC 1, best threshold 1.0.
    const n = 10;
    const targets: number[] = [];
    const training: number[] = [];
    const inference: number[] = [];
    for (let i = 0; i < n; i++) {
      const shifted = i < 5 ? 1 : 0;
      const good = i % 2;
      const rare = i === 0 ? 1 : 0; // 1 of 10 positive
      targets.push(shifted, good, rare);
      training.push(shifted ? 0.9 : 0.1, good ? 0.8 : 0.2, rare ? 0.7 : 0.1);
      inference.push(shifted ? 0.85 + i * 0.01 : 0.6 + i * 0.01, good ? 0.8 : 0.2, rare ? 0.7 : i === 1 ? 0.55 : 0.1);
    }
    const m = multiLabelModesOf(training, inference, targets, ['shifted', 'good', 'rare']);
    expect(m.flagged).toEqual(['shifted']);
    const [shifted, good, rare] = m.perLabel;
    expect(shifted).toMatchObject({ majorityRate: 0.5, training: { accuracy: 1, auc: 1 }, inference: { accuracy: 0.5, auc: 1 }, bestThresholdAccuracy: 1, accuracyGap: 0.5, flagged: true });
    expect(good).toMatchObject({ inference: { accuracy: 1, auc: 1 }, flagged: false });
    // rare: majority 0.9, inference accuracy 0.9 (one false positive at 0.55), AUC 1, best threshold 1.0 →
    // within 0.1 of the majority and AUC ≥ 0.9, but the best threshold is only 0.1 better: not flagged.
    expect(rare).toMatchObject({ majorityRate: 0.9, inference: { accuracy: 0.9, auc: 1 }, bestThresholdAccuracy: 1, flagged: false });
    expect(m.maxAccuracyGap).toBe(0.5);
    expect(m.rule).toContain('within 0.1 of the majority rate while its inference AUC is ≥ 0.9');
    // The same outputs in both modes: no mode gap, nothing flagged (a poorly thresholded head is not the BN trap).
    expect(multiLabelModesOf(inference, inference, targets, ['shifted', 'good', 'rare']).flagged).toEqual([]);
  });

  it('regress: a shifted inference output is flagged by MSE, a reordered one by Spearman, agreement by neither', () => {
    const y = [1, 2, 3, 4, 5];
    const same = regressionModesOf(y, y.map((v) => v + 0.01), y, ['t']);
    expect(same.flagged).toBe(false);
    expect(same.spearmanGap).toBe(0);
    const shifted = regressionModesOf(y, y.map((v) => v + 3), y, ['t']);
    // training MSE 0, inference MSE 9 > 0.1 × variance 2: flagged, Spearman unchanged.
    expect(shifted).toMatchObject({ training: { mse: 0, spearman: 1 }, inference: { mse: 9, spearman: 1 }, mseGap: 9, spearmanGap: 0, flagged: true });
    const reordered = regressionModesOf([1.1, 2.1, 2.9, 4.1, 4.9], [1, 2, 3, 4, 5].reverse(), y, ['t']);
    expect(reordered.spearmanGap).toBe(2);
    expect(reordered.flagged).toBe(true);
  });
});

// The toy frozen-BN transfer model of compare-modes.test.ts, with a regression or multi-label output:
// BN moving statistics from "other data", fitted naively with stock tfjs.
const SIZE = 8;
const N = 96;

const bnModel = (units: number, activation: 'linear' | 'sigmoid'): tf.Sequential => frozenBnToy(SIZE, units, activation, activation === 'linear' ? 'meanSquaredError' : 'binaryCrossentropy');

const fitOptions = { epochs: 15, batchSize: 32, shuffle: false, verbose: 0 } as const;

describe('the detectors find the frozen-BN gap of a naive fit, and none once BN is locked', () => {
  let x: tf.Tensor4D;
  let onehot: tf.Tensor2D;
  let value: tf.Tensor2D;
  beforeAll(() => {
    ({ x, y: onehot } = toyImages(N, 7, { size: SIZE, classes: 3 }));
    // Regression target: the class index (0, 1, 2) — which channel is brighter.
    value = tf.tidy(() => onehot.argMax(-1).toFloat().reshape([N, 1]) as tf.Tensor2D);
  });
  afterAll(() => tf.dispose([x, onehot, value]));

  it('regress: MSE and Spearman in both modes; naive gap flagged, locked model agrees', async () => {
    const targets = Array.from(value.dataSync());
    const naive = bnModel(1, 'linear');
    await naive.fit(x, value, fitOptions);
    const modes = await compareRegressionModes(naive, x, targets, ['class'], { batchSize: 32 });
    expect(modes.flagged).toBe(true);
    // The target's variance is 2/3: a gap above 0.1 × 2/3 is flagged; measured 0.198 here.
    expect(modes.mseGap).toBeGreaterThan(0.1);
    expect(modes.inference.mse).toBeGreaterThan(modes.training.mse);
    const locked = bnModel(1, 'linear');
    lockBatchNorm(locked);
    await locked.fit(x, value, fitOptions);
    const ok = await expectNoTensorLeak(() => compareRegressionModes(locked, x, targets, ['class'], { batchSize: 32 }));
    expect(ok.flagged).toBe(false);
    expect(Math.abs(ok.mseGap)).toBeLessThan(1e-5);
    expect(ok.spearmanGap ?? 0).toBeCloseTo(0, 6);
    naive.dispose();
    locked.dispose();
  });

  it('multilabel: per-label accuracy and AUC in both modes; naive gap, locked model none', async () => {
    const targets = Array.from(onehot.dataSync());
    const labels = ['red', 'green', 'blue'];
    const naive = bnModel(3, 'sigmoid');
    await naive.fit(x, onehot, fitOptions);
    const modes = await compareMultiLabelModes(naive, x, targets, labels, undefined, { batchSize: 32 });
    expect(modes.perLabel.map((l) => l.label)).toEqual(labels);
    expect(modes.maxAccuracyGap).toBeGreaterThan(0.2);
    for (const l of modes.perLabel) expect(l.majorityRate).toBeCloseTo(2 / 3, 6);
    const locked = bnModel(3, 'sigmoid');
    lockBatchNorm(locked);
    await locked.fit(x, onehot, fitOptions);
    const ok = await compareMultiLabelModes(locked, x, targets, labels, undefined, { batchSize: 32 });
    expect(ok.flagged).toEqual([]);
    for (const l of ok.perLabel) expect(l.accuracyGap).toBe(0);
    naive.dispose();
    locked.dispose();
  });
});
