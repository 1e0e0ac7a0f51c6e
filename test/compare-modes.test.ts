import * as tf from '@tensorflow/tfjs';
import { frozenBnToy } from './helpers/bn-toy.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareModes, isSplitfitError, lockBatchNorm, movingStatsEqual, snapshotMovingStats } from '../src/index.js';
import { isBatchNormLocked } from '../src/model/lock-batchnorm.js';
import { toyImages } from './helpers/data.js';
import { expectNoTensorLeak } from './helpers/tensors.js';

// Toy transfer learning: a frozen base (conv → BN) whose BN moving statistics (mean 1,
// variance 0.1) come from "other data" (our conv outputs: mean ≈ 0, variance ≈ 0.1–0.3),
// and a softmax head. Fitted naively (stock tfjs), the head learns batch-normalised
// features; at inference BN uses its moving statistics — the gap compareModes measures.

const SIZE = 8;
const CLASSES = 3;
const N = 96;

const init = (seed: number) => tf.initializers.glorotUniform({ seed });

const bnModel = (): tf.Sequential => frozenBnToy(SIZE, CLASSES, 'softmax', 'categoricalCrossentropy', ['accuracy']);

/** Same task without BN: conv → relu → GAP → [dropout] → softmax. */
function plainModel(dropoutRate?: number): tf.Sequential {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(1), name: 'conv' }),
      tf.layers.activation({ activation: 'relu', name: 'relu' }),
      tf.layers.globalAveragePooling2d({ name: 'gap' }),
    ],
  });
  if (dropoutRate !== undefined) model.add(tf.layers.dropout({ rate: dropoutRate, name: 'drop' }));
  model.add(tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(2), name: 'out' }));
  model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

const fitOptions = { epochs: 10, batchSize: 32, shuffle: false, verbose: 0 } as const;

/** Every weight (trainable and not) as raw bits, for bit-identical comparisons. */
function weightBits(model: tf.LayersModel): Uint32Array[] {
  return model.weights.map((w) => new Uint32Array(Float32Array.from(w.read().dataSync() as Float32Array).buffer));
}

async function evaluated(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): Promise<{ loss: number; accuracy: number }> {
  const out = model.evaluate(x, y, { batchSize: 32 }) as tf.Scalar[];
  const [loss, accuracy] = await Promise.all(out.map(async (t) => (await t.data())[0]!));
  tf.dispose(out);
  return { loss: loss!, accuracy: accuracy! };
}

describe('compareModes', () => {
  let x: tf.Tensor4D;
  let y: tf.Tensor2D;
  let naive: tf.Sequential;

  beforeAll(async () => {
    ({ x, y } = toyImages(N, 7, { size: SIZE, classes: CLASSES }));
    naive = bnModel();
    await naive.fit(x, y, fitOptions);
  });
  afterAll(() => {
    naive.dispose();
    tf.dispose([x, y]);
  });

  it('finds the BN gap of a naively fine-tuned model with a frozen BN', async () => {
    const modes = await compareModes(naive, x, y);
    // Measured on cpu and native TensorFlow: training 0.875 / loss 0.435, inference 0.333 / loss 1.004.
    expect(modes.training.accuracy).toBeGreaterThanOrEqual(0.8);
    expect(modes.inference.accuracy).toBeLessThanOrEqual(0.5);
    expect(modes.accuracyGap).toBeGreaterThan(0.3);
    expect(modes.accuracyGap).toBeCloseTo(modes.training.accuracy - modes.inference.accuracy, 12);
    expect(modes.inference.loss - modes.training.loss).toBeGreaterThan(0.3);
    // The inference pass is what model.evaluate reports.
    const ev = await evaluated(naive, x, y);
    expect(Math.abs(modes.inference.loss - ev.loss)).toBeLessThanOrEqual(1e-5);
    expect(modes.inference.accuracy).toBeCloseTo(ev.accuracy, 6);
  });

  it('changes no weight of the model (moving statistics included) and leaks no tensors', async () => {
    const bits = weightBits(naive);
    const stats = snapshotMovingStats(naive);
    await expectNoTensorLeak(async () => {
      await compareModes(naive, x, y);
      await compareModes(naive, x, y, { dropout: false, batchSize: 7 });
    });
    expect(weightBits(naive)).toEqual(bits);
    expect(movingStatsEqual(stats, snapshotMovingStats(naive))).toBe(true);
    expect(isBatchNormLocked(naive.getLayer('bn'))).toBe(false);
  });

  it('finds no gap once frozen BN is locked, also on a copy of an already drifted model', async () => {
    const locked = bnModel();
    lockBatchNorm(locked);
    await locked.fit(x, y, fitOptions);
    const modes = await compareModes(locked, x, y);
    expect(Math.abs(modes.training.loss - modes.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(modes.accuracyGap).toBe(0);
    // What fit sees is what predict delivers: measured 0.667 here vs 0.333 for the naive model.
    expect(modes.inference.accuracy).toBeGreaterThan(0.6);
    expect(modes.inference.accuracy).toBeGreaterThan((await compareModes(naive, x, y)).inference.accuracy);
    locked.dispose();

    // Locking the naive model afterwards carries over to compareModes' copy.
    const drifted = bnModel();
    await drifted.fit(x, y, fitOptions);
    lockBatchNorm(drifted);
    const after = await compareModes(drifted, x, y);
    expect(Math.abs(after.training.loss - after.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(after.accuracyGap).toBe(0);
    drifted.dispose();
  });

  it('copies nested models and their locks (dense-only base, 2-D BN, frozen at container level)', async () => {
    const build = (): tf.LayersModel => {
      const base = tf.sequential({
        name: 'base',
        layers: [
          tf.layers.dense({ inputShape: [6], units: 5, kernelInitializer: init(1), name: 'base_fc' }),
          tf.layers.batchNormalization({ name: 'base_bn' }),
          tf.layers.activation({ activation: 'relu', name: 'base_relu' }),
        ],
      });
      const bn = base.getLayer('base_bn');
      const [gamma, beta] = bn.getWeights();
      const stats = [tf.fill([5], 1), tf.fill([5], 0.1)];
      bn.setWeights([gamma!, beta!, ...stats]);
      tf.dispose(stats);
      base.trainable = false;
      const input = tf.input({ shape: [6] });
      const head = tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(2), name: 'head' });
      const model = tf.model({ inputs: input, outputs: head.apply(base.apply(input)) as tf.SymbolicTensor });
      model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy' });
      return model;
    };
    const xs = tf.randomNormal([64, 6], 0, 1, 'float32', 3);
    const ys = tf.tidy(() => tf.oneHot(tf.argMax(xs.slice([0, 0], [64, CLASSES]), 1), CLASSES));
    const fit = { epochs: 10, batchSize: 16, shuffle: false, verbose: 0 } as const;

    const naiveNested = build();
    await naiveNested.fit(xs, ys, fit);
    const stats = snapshotMovingStats(naiveNested);
    const drift = await compareModes(naiveNested, xs, ys, { batchSize: 16 });
    // Measured: training 0.719 / 0.639, inference 0.625 / 0.713.
    expect(drift.inference.loss - drift.training.loss).toBeGreaterThan(0.03);
    expect(movingStatsEqual(stats, snapshotMovingStats(naiveNested))).toBe(true);

    const lockedNested = build();
    expect(lockBatchNorm(lockedNested).locked).toEqual(['base_bn']);
    await lockedNested.fit(xs, ys, fit);
    const none = await compareModes(lockedNested, xs, ys, { batchSize: 16 });
    expect(Math.abs(none.training.loss - none.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(none.accuracyGap).toBe(0);

    tf.dispose([xs, ys]);
    naiveNested.dispose();
    lockedNested.dispose();
  });

  it('finds no gap on a model without BN or dropout', async () => {
    const model = plainModel();
    await model.fit(x, y, { ...fitOptions, epochs: 2 });
    const modes = await compareModes(model, x, y);
    expect(Math.abs(modes.training.loss - modes.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(modes.accuracyGap).toBe(0);
    model.dispose();
  });

  it('counts dropout in the gap by default; dropout: false isolates BN', async () => {
    const model = plainModel(0.5);
    await model.fit(x, y, { ...fitOptions, epochs: 2 });
    const withDropout = await compareModes(model, x, y);
    expect(Math.abs(withDropout.training.loss - withDropout.inference.loss)).toBeGreaterThan(1e-3);
    const isolated = await compareModes(model, x, y, { dropout: false });
    expect(Math.abs(isolated.training.loss - isolated.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(isolated.inference.loss).toBe(withDropout.inference.loss);
    // The original dropout layer is untouched.
    expect(Object.prototype.hasOwnProperty.call(model.getLayer('drop'), 'call')).toBe(false);
    model.dispose();
  });

  it('trainableBatchNorm: false leaves only the frozen-BN trap in the gap (a head\'s own trainable BN runs in inference mode)', async () => {
    // naive: a frozen BN (the trap); withHeadBn adds a trainable BN in the head (the user's choice).
    const withHeadBn = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(1), name: 'conv', trainable: false }),
        tf.layers.activation({ activation: 'relu', name: 'relu' }),
        tf.layers.globalAveragePooling2d({ name: 'gap' }),
        tf.layers.batchNormalization({ name: 'head_bn', scale: false }),
        tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(2), name: 'out' }),
      ],
    });
    const bn = withHeadBn.getLayer('head_bn');
    bn.setWeights([tf.fill([4], 0.3), tf.fill([4], 0.2), tf.fill([4], 0.05)]);
    const all = await compareModes(withHeadBn, x, y, { dropout: false });
    const frozenOnly = await compareModes(withHeadBn, x, y, { dropout: false, trainableBatchNorm: false });
    expect(Math.abs(all.training.loss - all.inference.loss)).toBeGreaterThan(1e-3);
    expect(Math.abs(frozenOnly.training.loss - frozenOnly.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(frozenOnly.inference.loss).toBe(all.inference.loss);
    // A frozen BN is the trap itself: the option does not hide it.
    const trap = await compareModes(naive, x, y);
    const trapFrozenOnly = await compareModes(naive, x, y, { trainableBatchNorm: false });
    expect(trapFrozenOnly.training.loss).toBeCloseTo(trap.training.loss, 6);
    expect(Math.abs(trap.training.loss - trap.inference.loss)).toBeGreaterThan(1e-3);
    await expect(compareModes(naive, x, y, { trainableBatchNorm: 0 as unknown as boolean })).rejects.toThrow(/`trainableBatchNorm` must be a boolean, received number/);
    withHeadBn.dispose();
  });

  it('uses mini-batch statistics per batchSize in training mode only', async () => {
    const small = await compareModes(naive, x, y, { batchSize: 8 });
    const whole = await compareModes(naive, x, y, { batchSize: N });
    expect(Math.abs(small.inference.loss - whole.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(small.training.loss - whole.training.loss)).toBeGreaterThan(1e-4);
  });

  it('treats a single sigmoid unit as binary classification', async () => {
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 4, kernelSize: 3, kernelInitializer: init(1), name: 'conv' }),
        tf.layers.batchNormalization({ name: 'bn' }),
        tf.layers.globalAveragePooling2d({ name: 'gap' }),
        tf.layers.dense({ units: 1, activation: 'sigmoid', kernelInitializer: init(4), name: 'out' }),
      ],
    });
    model.compile({ optimizer: tf.train.adam(0.05), loss: 'binaryCrossentropy', metrics: ['accuracy'] });
    // Class 0 vs rest, labels as a flat [n] vector.
    const labels = tf.tidy(() => tf.cast(tf.equal(tf.argMax(y, -1), 0), 'float32'));
    await model.fit(x, labels.reshape([N, 1]), { ...fitOptions, epochs: 3 });
    const modes = await compareModes(model, x, labels);
    const ev = await evaluated(model, x, labels.reshape([N, 1]));
    expect(Math.abs(modes.inference.loss - ev.loss)).toBeLessThanOrEqual(1e-5);
    expect(modes.inference.accuracy).toBeCloseTo(ev.accuracy, 6);
    expect(modes.training.loss).toBeGreaterThan(0);
    expect(modes.training.accuracy).toBeGreaterThanOrEqual(0);
    expect(modes.training.accuracy).toBeLessThanOrEqual(1);
    model.dispose();
    labels.dispose();
  });

  it('rejects bad options and data with messages that name the problem, without leaking', async () => {
    const wrongClasses = y.slice([0, 0], [N, 2]);
    const tooFew = y.slice(0, 10);
    const empty = tf.zeros([0, SIZE, SIZE, 3]);
    const emptyY = tf.zeros([0, CLASSES]);
    await expectNoTensorLeak(async () => {
      await expect(compareModes(naive, x, y, { batchSize: 0 })).rejects.toThrow(/`batchSize` must be a positive integer, received 0/);
      await expect(compareModes(naive, x, y, { dropout: 'no' as unknown as boolean })).rejects.toThrow(/`dropout` must be a boolean/);
      await expect(compareModes(naive, x, wrongClasses)).rejects.toThrow(/y must have shape \[96, 3\] \(one-hot\), received \[96,2\]/);
      await expect(compareModes(naive, x, tooFew)).rejects.toThrow(/same number of samples, received 96 and 10/);
      const err = await compareModes(naive, empty, emptyY).catch((e: unknown) => e);
      expect(isSplitfitError(err, 'SPLITFIT_DATA_EMPTY')).toBe(true);
    });
    tf.dispose([wrongClasses, tooFew, empty, emptyY]);
  });

  it('names the fix when the model cannot be copied (unregistered custom layer)', async () => {
    class Unregistered extends tf.layers.Layer {
      static readonly className = 'SplitfitTestUnregistered';
      override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
        return inputs;
      }
    }
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [4], units: 2, activation: 'softmax' }), new Unregistered({})],
    });
    const xs = tf.ones([3, 4]);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 0], 'int32'), 2);
    const err = await expectNoTensorLeak(() => compareModes(model, xs, ys).catch((e: unknown) => e));
    expect(isSplitfitError(err, 'SPLITFIT_MODEL_LOAD')).toBe(true);
    expect((err as Error).message).toMatch(/tf\.serialization\.registerClass/);
    tf.dispose([xs, ys]);
    model.dispose();
  });
});
