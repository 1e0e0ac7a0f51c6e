// exportBase: the frozen base as stock layers with no training-time behaviour.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { exportBase, splitBase } from '../src/index.js';
import { expectNoTensorLeak, expectTensorsClose } from './helpers/tensors.js';

type Sym = tf.SymbolicTensor;
const ap = (layer: tf.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;

/** A base with a layer the plan cannot express (UpSampling2D), a BN after it, and a name a helper would want. */
function modelWithFallback(): tf.LayersModel {
  const input = tf.input({ shape: [4, 4, 2], name: 'image' });
  let x = ap(tf.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), name: 'conv' }), input);
  x = ap(tf.layers.upSampling2d({ size: [2, 2], name: 'up' }), x);
  x = ap(tf.layers.batchNormalization({ name: 'bn', scale: false }), x);
  x = ap(tf.layers.reLU({ name: 'bn_1' }), x);
  return tf.model({ inputs: input, outputs: x });
}

describe('exportBase', () => {
  it('copies layers the plan cannot express, turns the BN after them into a 1×1 depthwise affine map, and avoids taken names', () => {
    const model = modelWithFallback();
    const bn = model.getLayer('bn');
    bn.setWeights([tf.tensor1d([0.5, -1, 2]), tf.tensor1d([1, 2, 3]), tf.tensor1d([0.5, 0.25, 4])]);
    const { base } = splitBase(model, 'bn_1');
    const exported = exportBase(base);
    expect(exported.copied).toEqual([{ layer: 'up', className: 'UpSampling2D' }]);
    expect(exported.folded).toEqual({ intoConv: 0, asAffine: 1 });
    const names = exported.model.layers.map((l) => `${l.getClassName()}:${l.name}`);
    expect(names).toEqual(['InputLayer:image', 'Conv2D:conv', 'UpSampling2D:up', 'DepthwiseConv2D:bn', 'Activation:bn_1']);
    const x = tf.randomNormal([2, 4, 4, 2], 0, 1, 'float32', 4);
    expectTensorsClose(exported.model.predict(x) as tf.Tensor, base.predict(x) as tf.Tensor, 1e-5);
    expect(exported.model.trainable).toBe(false);
  });

  it('drops Dropout and names it; fold: false returns the base itself; options are validated', () => {
    const input = tf.input({ shape: [6] });
    const d = ap(tf.layers.dense({ units: 4, name: 'fc' }), input);
    const out = ap(tf.layers.dropout({ rate: 0.5, name: 'drop' }), ap(tf.layers.batchNormalization({ name: 'fc_bn' }), d));
    const base = tf.model({ inputs: input, outputs: out });
    const exported = exportBase(base);
    expect(exported.dropped).toEqual(['drop']);
    expect(exported.folded).toEqual({ intoConv: 1, asAffine: 0 });
    expect(exported.model.layers.map((l) => l.getClassName())).toEqual(['InputLayer', 'Dense']);
    const x = tf.randomNormal([3, 6], 0, 1, 'float32', 5);
    expectTensorsClose(exported.model.apply(x, { training: true }) as tf.Tensor, base.predict(x) as tf.Tensor, 1e-5);
    expect(exportBase(base, { fold: false }).model).toBe(base);
    expect(() => exportBase(base, { fold: 1 as unknown as boolean })).toThrow(/`fold` must be a boolean, received number/);
  });

  it('turns a shared BN (called twice, so a fallback of the plan) into one affine map per call, not a copied BN', () => {
    const input = tf.input({ shape: [3, 3, 2], name: 'image' });
    const shared = tf.layers.batchNormalization({ name: 'shared_bn', center: false });
    const a = ap(shared, ap(tf.layers.conv2d({ filters: 2, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }), name: 'c1' }), input));
    const b = ap(shared, ap(tf.layers.conv2d({ filters: 2, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }), name: 'c2' }), input));
    const base = tf.model({ inputs: input, outputs: ap(tf.layers.add({ name: 'sum' }), [a, b]) });
    shared.setWeights([tf.tensor1d([1.5, -0.5]), tf.tensor1d([0.2, -0.3]), tf.tensor1d([0.4, 2])]);
    const exported = exportBase(base);
    expect(exported.copied).toEqual([]);
    expect(exported.folded).toEqual({ intoConv: 0, asAffine: 2 });
    expect(exported.model.layers.filter((l) => l.getClassName() === 'BatchNormalization')).toEqual([]);
    const x = tf.randomNormal([2, 3, 3, 2], 0, 1, 'float32', 6);
    expectTensorsClose(exported.model.apply(x, { training: true }) as tf.Tensor, base.predict(x) as tf.Tensor, 1e-5);
  });

  it('leaks no tensors (weights are handed to the new layers and the staging copies disposed)', () => {
    const model = modelWithFallback();
    const { base } = splitBase(model, 'bn_1');
    exportBase(base).model.dispose();
    expectNoTensorLeak(() => exportBase(base).model.dispose());
  });
});
