import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileBase, loadModel, prepareBase, splitBase } from '../src/index.js';
import { suggestBatchSize } from '../src/model/batch-size.js';
import type { CompiledBase } from '../src/model/compile/index.js';
import { savedModelBytes } from '../src/model/compile/graph.js';
import { buildPlan } from '../src/model/compile/plan.js';
import { randomizeBatchNorm, residualToyModel } from './helpers/models.js';
import { expectNoTensorLeak, expectTensorsClose } from './helpers/tensors.js';

/** Parity bound between the compiled and the plain base (float32 reassociation of folded BN). */
const TOL = 1e-4;
const native = (): boolean => tf.getBackend() === 'tensorflow';
/** Graph mode where the backend allows it (native), and always the op-by-op mode. */
const MODES = [true, false] as const;

/** The compiled base predicts what the model predicts, within TOL. */
function expectParity(model: tf.LayersModel, compiled: CompiledBase, x: tf.Tensor4D): void {
  tf.tidy(() => expectTensorsClose(compiled.predict(x), model.predict(x) as tf.Tensor, TOL));
}

/** SHA-256 of every weight's bytes, in order: equal digests = bit-identical weights. */
function weightBytes(model: tf.LayersModel): string {
  const h = createHash('sha256');
  for (const w of model.weights) {
    const d = w.read().dataSync() as Float32Array;
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

const apply = (layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor => layer.apply(x) as tf.SymbolicTensor;

/**
 * Every layer kind the plan translates, with the folds it must and must not do: conv+bias → BN →
 * Activation('relu'), ZeroPadding2D → valid conv, depthwise ×2 → BN → ReLU(6), a conv whose output
 * feeds a BN *and* a skip (no fold), BN → pool, concat, GAP, flatten → dense → BN → softmax.
 */
function zooModel(): tf.LayersModel {
  const init = (k: number): ReturnType<typeof tf.initializers.glorotUniform> => tf.initializers.glorotUniform({ seed: 40 + k });
  const input = tf.input({ shape: [12, 12, 3], name: 'img' });
  let x = apply(tf.layers.zeroPadding2d({ padding: [[0, 1], [1, 0]], name: 'pad' }), input);
  x = apply(tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'valid', useBias: true, biasInitializer: 'glorotUniform', kernelInitializer: init(1), name: 'c1' }), x);
  x = apply(tf.layers.batchNormalization({ name: 'c1_bn' }), x);
  x = apply(tf.layers.activation({ activation: 'relu', name: 'c1_act' }), x);
  let d = apply(tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', useBias: false, depthwiseInitializer: init(2), name: 'dw' }), x);
  d = apply(tf.layers.batchNormalization({ name: 'dw_bn' }), d);
  d = apply(tf.layers.reLU({ maxValue: 6, name: 'dw_relu6' }), d);
  // c2's output is read by its BN and by the add: folding would change the skip, so it must not fold.
  const c2 = apply(tf.layers.conv2d({ filters: 12, kernelSize: 1, useBias: false, kernelInitializer: init(3), name: 'c2' }), d);
  const c2bn = apply(tf.layers.batchNormalization({ name: 'c2_bn' }), c2);
  x = apply(tf.layers.add({ name: 'skip_add' }), [c2, c2bn]);
  const p1 = apply(tf.layers.maxPooling2d({ poolSize: 2, name: 'maxpool' }), x);
  const p2 = apply(tf.layers.averagePooling2d({ poolSize: 2, padding: 'same', name: 'avgpool' }), x);
  x = apply(tf.layers.concatenate({ name: 'concat' }), [p1, p2]);
  const g = apply(tf.layers.globalAveragePooling2d({ name: 'gap' }), x);
  x = apply(tf.layers.flatten({ name: 'flat' }), x);
  x = apply(tf.layers.dense({ units: 8, kernelInitializer: init(4), name: 'fc' }), x);
  x = apply(tf.layers.batchNormalization({ name: 'fc_bn' }), x);
  x = apply(tf.layers.activation({ activation: 'tanh', name: 'fc_tanh' }), x);
  x = apply(tf.layers.concatenate({ name: 'merge' }), [x, g]);
  x = apply(tf.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: init(5), name: 'out' }), x);
  return tf.model({ inputs: input, outputs: x, name: 'zoo' });
}

describe('compileBase on a residual toy model', () => {
  const model = residualToyModel();
  randomizeBatchNorm(model);
  const x = tf.randomUniform([4, 16, 16, 3], 0, 1, 'float32', 3) as tf.Tensor4D;

  it.each(MODES)('matches predict within 1e-4 and folds every BN and ReLU (graph %s)', (graph) => {
    const c = compileBase(model, { graph });
    try {
      expect(c.mode).toBe(graph && native() ? 'graph' : 'ops');
      expect(c.fallbacks).toEqual([]);
      expect(c.folded).toEqual({ batchNorm: 3, activation: 3, padding: 0 });
      expectParity(model, c, x);
    } finally {
      c.dispose();
    }
  });

  it('leaves the model weights bit-identical and leaks no tensors', () => {
    const before = weightBytes(model);
    expectNoTensorLeak(() => {
      for (const graph of MODES) {
        const c = compileBase(model, { graph });
        tf.dispose(c.predict(x));
        tf.dispose(c.predict(x));
        c.dispose();
        c.dispose(); // idempotent
      }
    });
    expect(weightBytes(model)).toEqual(before);
  });

  it('refuses non-finite weights (a fused ReLU could turn NaN features into zeros), and prepareBase then runs the plain base', async () => {
    const broken = residualToyModel();
    const [kernel, bias] = broken.getLayer('stem').getWeights();
    const k = kernel!.dataSync().slice();
    k[0] = Number.NaN;
    broken.getLayer('stem').setWeights([tf.tensor(k, kernel!.shape), bias!]);
    expect(() => compileBase(broken)).toThrow(expect.objectContaining({ code: 'SPLITFIT_NUMERIC', message: expect.stringContaining('"stem"') }));
    const p = await prepareBase({ model: broken, boundary: 'pool' });
    const features = tf.tidy(() => p.run(x).dataSync() as Float32Array);
    expect(features.some(Number.isNaN)).toBe(true); // what `predict` gives, so extraction reports it
    broken.dispose();
  });

  it('rejects a batch of the wrong shape without leaving graph mode', () => {
    const c = compileBase(model);
    const wrong = tf.zeros([2, 8, 8, 3]) as tf.Tensor4D;
    expect(() => c.predict(wrong)).toThrow(/expected a batch \[n, 16, 16, 3\], got \[2, 8, 8, 3\]/);
    expect(c.mode).toBe(native() ? 'graph' : 'ops');
    expectParity(model, c, x);
    wrong.dispose();
    c.dispose();
  });

  it('refuses to run after dispose', () => {
    const c = compileBase(model);
    c.dispose();
    expect(() => c.predict(x)).toThrow(/disposed/);
  });

  it('runs op by op on the pure-JS backend too', async () => {
    const active = tf.getBackend();
    await tf.setBackend('cpu');
    try {
      const xc = tf.randomUniform([2, 16, 16, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      const c = compileBase(model);
      expect(c.mode).toBe('ops');
      expectParity(model, c, xc);
      c.dispose();
      xc.dispose();
    } finally {
      await tf.setBackend(active);
    }
  });
});

describe('compileBase on a model using every translated layer kind', () => {
  const model = zooModel();
  randomizeBatchNorm(model, 11);
  const x = tf.randomUniform([3, 12, 12, 3], -1, 1, 'float32', 9) as tf.Tensor4D;

  it('folds only where the BN or activation is the sole consumer', () => {
    const plan = buildPlan(model);
    expect(plan.fallbacks).toEqual([]);
    // c1+c1_bn+c1_act, dw+dw_bn+dw_relu6, fc+fc_bn (tanh is not a fused activation); c2 feeds two layers.
    expect(plan.folded).toEqual({ batchNorm: 3, activation: 2, padding: 1 });
    const byLayer = (name: string): string[] | undefined => plan.nodes.find((n) => n.layers.includes(name))?.layers;
    expect(byLayer('c1')).toEqual(['pad', 'c1', 'c1_bn', 'c1_act']);
    expect(byLayer('dw')).toEqual(['dw', 'dw_bn', 'dw_relu6']);
    expect(byLayer('c2')).toEqual(['c2']);
    expect(byLayer('c2_bn')).toEqual(['c2_bn']);
  });

  it.each(MODES)('matches predict within 1e-4 (graph %s)', (graph) => {
    const c = compileBase(model, { graph });
    try {
      expectParity(model, c, x);
    } finally {
      c.dispose();
    }
  });
});

describe('compileBase fallbacks', () => {
  // LayerNormalization has no translation: it must run as a layer, in the middle of folded convs.
  const input = tf.input({ shape: [10, 10, 3] });
  let y = apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), name: 'a' }), input);
  y = apply(tf.layers.batchNormalization({ name: 'a_bn' }), y);
  y = apply(tf.layers.layerNormalization({ name: 'ln' }), y);
  y = apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }), name: 'b' }), y);
  y = apply(tf.layers.globalMaxPooling2d({ name: 'gmp' }), y);
  const model = tf.model({ inputs: input, outputs: y });
  randomizeBatchNorm(model, 5);
  const x = tf.randomUniform([2, 10, 10, 3], 0, 1, 'float32', 4) as tf.Tensor4D;

  it('runs an unsupported layer through layer.apply, lists it, and keeps parity', () => {
    expectNoTensorLeak(() => {
      const c = compileBase(model);
      expect(c.fallbacks).toEqual([{ layer: 'ln', className: 'LayerNormalization' }]);
      expect(c.mode).toBe('ops'); // a JS layer cannot run inside the TF graph
      expect(c.folded.batchNorm).toBe(1);
      expectParity(model, c, x);
      c.dispose();
    });
  });
});

describe('compileBase on the real mobilenet_v2', () => {
  let mobilenet: tf.LayersModel;
  let x: tf.Tensor4D;
  beforeAll(async () => {
    mobilenet = await loadModel('mobilenet_v2');
    x = tf.randomUniform([2, 224, 224, 3], 0, 1, 'float32', 21) as tf.Tensor4D;
  });
  afterAll(() => {
    x.dispose();
    mobilenet.dispose();
  });

  it.each([
    ['out_relu', 52, 35],
    ['block_12_add', 39, 26],
  ] as const)('matches predict within 1e-4 at %s, folding all its BN layers', (cut, bn, act) => {
    const { base } = splitBase(mobilenet, cut);
    for (const graph of MODES) {
      const c = compileBase(base, { graph });
      try {
        expect(c.fallbacks).toEqual([]);
        expect(c.folded).toEqual({ batchNorm: bn, activation: act, padding: 1 });
        expectParity(base, c, x);
      } finally {
        c.dispose();
      }
    }
  });

  it('writes a SavedModel holding every folded weight once', () => {
    const { base } = splitBase(mobilenet, 'out_relu');
    const plan = buildPlan(base);
    const weightBytes = plan.nodes.reduce((n, node) => {
      const s = node.step;
      if (s.op === 'conv2d' || s.op === 'depthwiseConv2d') return n + 4 * (s.kernel.data.length + (s.bias?.data.length ?? 0));
      return n;
    }, 0);
    const bytes = savedModelBytes(plan, [224, 224, 3]).length;
    expect(bytes).toBeGreaterThan(weightBytes);
    expect(bytes).toBeLessThan(weightBytes * 1.02);
  });

  it('suggests a cache-sized extraction batch: 4 for MobileNetV2 at 224×224, 64 for a tiny model', async () => {
    expect(suggestBatchSize(splitBase(mobilenet, 'out_relu').base)).toBe(4);
    expect(suggestBatchSize(residualToyModel())).toBe(64);
    expect((await prepareBase({ model: mobilenet, boundary: 'block_12_add' })).batchSize).toBe(4);
  });

  it('prepareBase: compiled and plain runs give the same fingerprint and features', async () => {
    const compiled = await prepareBase({ model: mobilenet, boundary: 'out_relu' });
    const plain = await prepareBase({ model: mobilenet, boundary: 'out_relu', compiled: false });
    expect(compiled.fingerprint).toBe(plain.fingerprint);
    const before = weightBytes(mobilenet);
    tf.tidy(() => expectTensorsClose(compiled.run(x), plain.run(x), TOL));
    expect(weightBytes(mobilenet)).toEqual(before);
    // The fingerprint is computed from the plain base, so running compiled cannot change it.
    expect((await prepareBase({ model: mobilenet, boundary: 'out_relu' })).fingerprint).toBe(plain.fingerprint);
  });
});
