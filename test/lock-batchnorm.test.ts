import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { batchNormLayers, lockBatchNorm, movingStatsEqual, snapshotMovingStats, unlockBatchNorm } from '../src/index.js';
import { isBatchNormLocked } from '../src/model/lock-batchnorm.js';
import { toyImages } from './helpers/data.js';
import { expectNoTensorLeak, expectTensorsClose, maxAbsDiff } from './helpers/tensors.js';

// Toy transfer-learning setup: a frozen "pretrained" base (conv → BN) whose BN moving
// statistics (mean 1, variance 0.1) are far from the statistics of our data (conv outputs
// have mean ≈ 0, variance ≈ 0.1–0.3), and a trainable softmax head.

const SIZE = 8;
const CLASSES = 3;

const init = (seed: number) => tf.initializers.glorotUniform({ seed });

/** Pretend-pretrained BN: moving statistics far from the data's batch statistics. */
function setMovingStats(bn: tf.layers.Layer, mean: number, variance: number): void {
  const [gamma, beta] = bn.getWeights();
  const filled = [tf.fill([4], mean), tf.fill([4], variance)];
  bn.setWeights([gamma!, beta!, ...filled]);
  tf.dispose(filled);
}

/** conv → BN → relu → GAP → [dense → BN(trainable) → relu] → dense softmax; base frozen. */
function toyModel(opts: { headBatchNorm?: boolean } = {}): tf.Sequential {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(1), name: 'conv', trainable: false }),
      tf.layers.batchNormalization({ name: 'bn', trainable: false }),
      tf.layers.activation({ activation: 'relu', name: 'relu' }),
      tf.layers.globalAveragePooling2d({ name: 'gap' }),
    ],
  });
  if (opts.headBatchNorm) {
    model.add(tf.layers.dense({ units: 4, kernelInitializer: init(3), name: 'fc' }));
    model.add(tf.layers.batchNormalization({ name: 'head_bn' }));
    model.add(tf.layers.activation({ activation: 'relu', name: 'head_relu' }));
  }
  model.add(tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(2), name: 'out' }));
  setMovingStats(model.getLayer('bn'), 1, 0.1);
  model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

/** The same base as a nested model frozen at container level (`base.trainable = false`). */
function nestedModel(): tf.LayersModel {
  const base = tf.sequential({
    name: 'base',
    layers: [
      tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(1), name: 'base_conv' }),
      tf.layers.batchNormalization({ name: 'base_bn' }),
      tf.layers.activation({ activation: 'relu', name: 'base_relu' }),
    ],
  });
  setMovingStats(base.getLayer('base_bn'), 1, 0.1);
  base.trainable = false;
  const input = tf.input({ shape: [SIZE, SIZE, 3] });
  const features = base.apply(input) as tf.SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling2d({ name: 'nested_gap' }).apply(features) as tf.SymbolicTensor;
  const output = tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(2), name: 'nested_out' }).apply(pooled) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: output });
  model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy' });
  return model;
}

function bitsOf(t: tf.Tensor): Uint32Array {
  return new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer);
}

const fitOptions = { epochs: 2, batchSize: 32, shuffle: false, verbose: 0 } as const;

describe('lockBatchNorm', () => {
  let data: { x: tf.Tensor4D; y: tf.Tensor2D };
  beforeEach(() => {
    data = toyImages(96, 7, { size: SIZE, classes: CLASSES });
  });
  afterEach(() => {
    tf.dispose([data.x, data.y]);
  });

  it('without the lock, fit overwrites the moving statistics of a frozen BN (the tfjs bug) while gamma/beta stay put', async () => {
    const model = toyModel();
    const bn = model.getLayer('bn');
    const before = snapshotMovingStats(model);
    const gammaBefore = bitsOf(bn.getWeights()[0]!);
    await model.fit(data.x, data.y, fitOptions);
    const after = snapshotMovingStats(model);
    expect(movingStatsEqual(before, after)).toBe(false);
    // 6 steps at momentum 0.99 pull the mean from 1 towards the batch means (|μ| < 0.3).
    const mean = after.get('bn')![0]!;
    for (const m of mean) expect(m).toBeLessThan(0.99);
    expect(bitsOf(bn.getWeights()[0]!)).toEqual(gammaBefore);
    model.dispose();
  });

  it('locks frozen BN: fit and trainOnBatch leave its statistics bit-identical, training mode equals predict', async () => {
    const model = toyModel();
    expect(lockBatchNorm(model)).toEqual({ locked: ['bn'] });
    expect(isBatchNormLocked(model.getLayer('bn'))).toBe(true);
    const before = snapshotMovingStats(model);
    const headBefore = bitsOf(model.getLayer('out').getWeights()[0]!);

    const history = await model.fit(data.x, data.y, fitOptions);
    await model.trainOnBatch(data.x.slice(0, 32), data.y.slice(0, 32));
    tf.dispose(model.evaluate(data.x, data.y) as tf.Scalar[]);

    expect(movingStatsEqual(before, snapshotMovingStats(model))).toBe(true);
    // The head did train.
    expect(bitsOf(model.getLayer('out').getWeights()[0]!)).not.toEqual(headBefore);
    expect(history.history['loss']).toHaveLength(2);

    const trainingMode = model.apply(data.x, { training: true }) as tf.Tensor;
    const predicted = model.predict(data.x) as tf.Tensor;
    expectTensorsClose(trainingMode, predicted, 1e-6);
    tf.dispose([trainingMode, predicted]);
    model.dispose();
  });

  it('leaves trainable BN layers alone: they still use batch statistics and update under fit', async () => {
    const model = toyModel({ headBatchNorm: true });
    expect(lockBatchNorm(model)).toEqual({ locked: ['bn'] });
    const before = snapshotMovingStats(model);
    await model.fit(data.x, data.y, fitOptions);
    const after = snapshotMovingStats(model);
    expect(movingStatsEqual(new Map([['bn', before.get('bn')!]]), new Map([['bn', after.get('bn')!]]))).toBe(true);
    expect(movingStatsEqual(new Map([['head_bn', before.get('head_bn')!]]), new Map([['head_bn', after.get('head_bn')!]]))).toBe(false);
    // Training mode still differs from inference mode because head_bn uses batch statistics.
    const trainingMode = model.apply(data.x, { training: true }) as tf.Tensor;
    const predicted = model.predict(data.x) as tf.Tensor;
    expect(maxAbsDiff(trainingMode, predicted)).toBeGreaterThan(1e-3);
    tf.dispose([trainingMode, predicted]);
    model.dispose();
  });

  it('decides per call: unfreezing a locked layer makes it normal BN again, refreezing locks it again', async () => {
    const model = toyModel();
    lockBatchNorm(model);
    const bn = model.getLayer('bn');

    bn.trainable = true;
    model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy' });
    const s0 = snapshotMovingStats(model);
    await model.fit(data.x, data.y, { ...fitOptions, epochs: 1 });
    const s1 = snapshotMovingStats(model);
    expect(movingStatsEqual(s0, s1)).toBe(false);

    bn.trainable = false;
    model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy' });
    await model.fit(data.x, data.y, { ...fitOptions, epochs: 1 });
    expect(movingStatsEqual(s1, snapshotMovingStats(model))).toBe(true);
    expect(lockBatchNorm(model).locked).toEqual(['bn']);
    model.dispose();
  });

  it('finds BN inside nested models and treats a frozen enclosing model as frozen', async () => {
    const model = nestedModel();
    expect(batchNormLayers(model).map((l) => l.name)).toEqual(['base_bn']);
    // tfjs leaves the nested layer's own flag true when the container is frozen.
    expect(batchNormLayers(model)[0]!.trainable).toBe(true);
    expect(lockBatchNorm(model)).toEqual({ locked: ['base_bn'] });

    const before = snapshotMovingStats(model);
    await model.fit(data.x, data.y, fitOptions);
    expect(movingStatsEqual(before, snapshotMovingStats(model))).toBe(true);
    const trainingMode = model.apply(data.x, { training: true }) as tf.Tensor;
    const predicted = model.predict(data.x) as tf.Tensor;
    expectTensorsClose(trainingMode, predicted, 1e-6);
    tf.dispose([trainingMode, predicted]);

    // Unfreezing the container unlocks the BN inside it.
    (model.getLayer('base') as tf.LayersModel).trainable = true;
    model.compile({ optimizer: tf.train.adam(0.1), loss: 'categoricalCrossentropy' });
    expect(lockBatchNorm(model).locked).toEqual([]);
    await model.fit(data.x, data.y, { ...fitOptions, epochs: 1 });
    expect(movingStatsEqual(before, snapshotMovingStats(model))).toBe(false);
    model.dispose();
  });

  it('unlockBatchNorm restores stock tfjs behaviour', async () => {
    const model = toyModel();
    lockBatchNorm(model);
    expect(unlockBatchNorm(model)).toEqual({ unlocked: ['bn'] });
    const bn = model.getLayer('bn');
    expect(isBatchNormLocked(bn)).toBe(false);
    expect(Object.prototype.hasOwnProperty.call(bn, 'call')).toBe(false);
    const before = snapshotMovingStats(model);
    await model.fit(data.x, data.y, { ...fitOptions, epochs: 1 });
    expect(movingStatsEqual(before, snapshotMovingStats(model))).toBe(false);
    model.dispose();
  });

  it('leaks no tensors across lock, fit and training-mode apply', async () => {
    const model = toyModel();
    // Warm-up step: Adam allocates its moment variables on the first update.
    await model.fit(data.x, data.y, { ...fitOptions, epochs: 1 });
    await expectNoTensorLeak(async () => {
      lockBatchNorm(model);
      await model.fit(data.x, data.y, { ...fitOptions, epochs: 1 });
      tf.dispose(model.apply(data.x, { training: true }) as tf.Tensor);
    });
    model.dispose();
  });
});

describe('snapshotMovingStats / movingStatsEqual', () => {
  it('copies the statistics and compares bits (sign of zero, NaN)', () => {
    const model = toyModel();
    const snap = snapshotMovingStats(model);
    expect([...snap.keys()]).toEqual(['bn']);
    expect(Array.from(snap.get('bn')![0]!)).toEqual([1, 1, 1, 1]);
    expect(snap.get('bn')![1]![0]).toBeCloseTo(0.1, 7);
    // A copy, not the backend's buffer.
    setMovingStats(model.getLayer('bn'), 2, 0.5);
    expect(Array.from(snap.get('bn')![0]!)).toEqual([1, 1, 1, 1]);

    const a = new Map([['bn', [new Float32Array([0, NaN])]]]);
    expect(movingStatsEqual(a, new Map([['bn', [new Float32Array([0, NaN])]]]))).toBe(true);
    expect(movingStatsEqual(a, new Map([['bn', [new Float32Array([-0, NaN])]]]))).toBe(false);
    expect(movingStatsEqual(a, new Map([['other', [new Float32Array([0, NaN])]]]))).toBe(false);
    model.dispose();
  });
});
