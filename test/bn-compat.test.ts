// The BN compat call: the same arithmetic as tfjs's BatchNormalization, for the configurations
// tfjs-layers 4.22 cannot train through (scale: false / center: false).
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { installBatchNormCompat, lockBatchNorm, movingStatsEqual, snapshotMovingStats, unlockBatchNorm } from '../src/index.js';
import { batchNormCompatCall, ensureBatchNormCompat, hasBatchNormCompat, needsBatchNormCompat } from '../src/model/bn-compat.js';
import { expectNoTensorLeak, expectTensorsClose } from './helpers/tensors.js';

type BnArgs = { scale?: boolean; center?: boolean; axis?: number };

/** A built BN layer over `shape` (no batch) with non-trivial weights. */
function bnLayer(shape: number[], args: BnArgs, name = 'bn'): tf.layers.Layer {
  const layer = tf.layers.batchNormalization({ name, momentum: 0.9, ...args });
  layer.apply(tf.input({ shape }));
  layer.setWeights(
    layer.weights.map((w, i) => {
      const kind = w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
      const s = w.shape as number[];
      return kind === 'moving_variance' ? tf.randomUniform(s, 0.3, 3, 'float32', 10 + i) : tf.randomNormal(s, kind === 'gamma' ? 1 : 0, 0.5, 'float32', 20 + i);
    }),
  );
  return layer;
}

const CASES: { what: string; shape: number[]; args: BnArgs }[] = [
  { what: 'scale: false, rank 4', shape: [4, 4, 3], args: { scale: false } },
  { what: 'center: false, rank 4', shape: [4, 4, 3], args: { center: false } },
  { what: 'both false, rank 2', shape: [5], args: { scale: false, center: false } },
  { what: 'scale: false, rank 3', shape: [6, 5], args: { scale: false } },
  { what: 'scale: false, axis 1 of rank 4', shape: [3, 4, 2], args: { scale: false, axis: 1 } },
  { what: 'stock config, axis 2 of rank 4', shape: [3, 4, 2], args: { axis: 2 } },
];

describe('batchNormCompatCall', () => {
  it.each(CASES)('inference mode equals tfjs BN within 1e-5 ($what)', ({ shape, args }) => {
    const layer = bnLayer(shape, args);
    const x = tf.randomNormal([3, ...shape], 0, 2, 'float32', 1);
    const stock = layer.apply(x, { training: false }) as tf.Tensor;
    const compat = batchNormCompatCall(layer, x, { training: false });
    expectTensorsClose(compat, stock, 1e-5);
  });

  it('training mode equals tfjs BN (output and moving-statistics update) on a layer stock tfjs can train', () => {
    const shape = [4, 4, 3];
    const x = tf.randomNormal([5, ...shape], 1, 2, 'float32', 2);
    const a = bnLayer(shape, {}, 'a');
    const b = bnLayer(shape, {}, 'b');
    const stock = a.apply(x, { training: true }) as tf.Tensor;
    const compat = batchNormCompatCall(b, x, { training: true });
    expectTensorsClose(compat, stock, 1e-5);
    a.getWeights().forEach((w, i) => expectTensorsClose(b.getWeights()[i]!, w, 1e-6));
  });

  it('leaks no tensors in either mode (the moving-statistics update included)', () => {
    const layer = bnLayer([4, 4, 3], { scale: false });
    const x = tf.randomNormal([2, 4, 4, 3]);
    for (const training of [false, true]) {
      expectNoTensorLeak(() => batchNormCompatCall(layer, x, { training }).dispose());
    }
  });
});

describe('installBatchNormCompat', () => {
  function model(args: BnArgs): tf.LayersModel {
    const input = tf.input({ shape: [4, 4, 3] });
    const conv = tf.layers.conv2d({ filters: 3, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), name: 'conv' }).apply(input) as tf.SymbolicTensor;
    const bn = tf.layers.batchNormalization({ name: 'bn', ...args }).apply(conv) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 2, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }), name: 'out' }).apply(tf.layers.flatten().apply(bn)) as tf.SymbolicTensor;
    const m = tf.model({ inputs: input, outputs: out });
    m.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    return m;
  }
  const x = tf.randomNormal([4, 4, 4, 3], 0, 1, 'float32', 3);
  const y = tf.oneHot(tf.tensor1d([0, 1, 0, 1], 'int32'), 2).toFloat();

  it('is needed for scale:false or center:false BN only, and idempotent', () => {
    expect(needsBatchNormCompat(bnLayer([3], { scale: false }))).toBe(true);
    expect(needsBatchNormCompat(bnLayer([3], { center: false }))).toBe(true);
    expect(needsBatchNormCompat(bnLayer([3], {}))).toBe(false);
    const m = model({ scale: false });
    expect(installBatchNormCompat(m)).toEqual(['bn']);
    const call = m.getLayer('bn').call;
    expect(installBatchNormCompat(m)).toEqual(['bn']);
    expect(m.getLayer('bn').call).toBe(call);
    expect(ensureBatchNormCompat(m.getLayer('conv'))).toBe(false);
    expect(installBatchNormCompat(model({}))).toEqual([]);
  });

  it('stock tfjs 4.22 cannot fit through scale:false BN (the upstream bug); with the compat call fit trains and moves the statistics', async () => {
    const stock = model({ scale: false });
    await expect(stock.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow(/reading 'read'/);
    const fixed = model({ scale: false });
    installBatchNormCompat(fixed);
    const before = snapshotMovingStats(fixed);
    const h = await fixed.fit(x, y, { epochs: 1, verbose: 0 });
    expect(Number.isFinite(h.history['loss']![0] as number)).toBe(true);
    expect(movingStatsEqual(snapshotMovingStats(fixed), before)).toBe(false);
  });

  it('stock tfjs 4.22 cannot take a gradient through a locked (inference-mode) scale:false BN; lockBatchNorm installs the compat call and keeps it on unlock', async () => {
    const m = model({ scale: false });
    m.getLayer('bn').trainable = false;
    lockBatchNorm(m);
    expect(hasBatchNormCompat(m.getLayer('bn'))).toBe(true);
    const before = snapshotMovingStats(m);
    const h = await m.fit(x, y, { epochs: 1, verbose: 0 });
    expect(Number.isFinite(h.history['loss']![0] as number)).toBe(true);
    expect(movingStatsEqual(snapshotMovingStats(m), before)).toBe(true);
    unlockBatchNorm(m);
    expect(hasBatchNormCompat(m.getLayer('bn'))).toBe(true);
    // The upstream failure, on a fresh layer: inference-mode tf.batchNorm with a null scale inside a tape.
    const raw = model({ scale: false });
    const layer = raw.getLayer('bn');
    const stockCall = (Object.getPrototypeOf(layer) as tf.layers.Layer).call;
    layer.call = (inputs, kwargs) => stockCall.call(layer, inputs, { ...kwargs, training: false });
    await expect(raw.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow(/reading 'dataId'/);
  });
});
