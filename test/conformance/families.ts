/**
 * Small models, one per architecture family the pipeline must handle, each with every
 * BatchNormalization variant the family uses in practice: `scale: false` (Keras InceptionV3),
 * `center: false`, BN before and after the activation, BN after a merge (cannot fold), BN over
 * a non-last axis and over rank-2/3 tensors. Every BN gets random non-trivial statistics.
 */
import * as tf from '@tensorflow/tfjs';
import { rng } from '../../src/random.js';

export const SIZE = 8;
export const CLASSES = 3;

export interface Family {
  name: string;
  /** A fresh model (new layer instances, same weights for the same call). */
  build(): tf.LayersModel;
  /** Freeze boundary inside the model (a graph cut). */
  boundary: string;
  /** Layer an `original:` head runs up to (multi-branch blocks lie between boundary and it). */
  upTo: string;
  /** BN layers of the base that the compiled plan folds into a conv/dense. */
  foldedIntoConv: number;
  /** BN layers of the base that stay a per-channel affine map (after a merge, an activation, a non-last axis…). */
  affine: number;
  /** Layers the compiled base runs as layers. */
  fallbacks: string[];
}

type Sym = tf.SymbolicTensor;
type Init = ReturnType<typeof tf.initializers.glorotUniform>;
type ConvExtra = Partial<Parameters<typeof tf.layers.conv2d>[0]>;
const ap = (layer: tf.layers.Layer, x: Sym | Sym[]): Sym => layer.apply(x) as Sym;

/** Deterministic builders: every initialiser is seeded from the layer's position. */
function builder(seed: number): {
  conv: (x: Sym, filters: number, k: number, name: string, extra?: ConvExtra) => Sym;
  bn: (x: Sym, name: string, extra?: { scale?: boolean; center?: boolean; axis?: number }) => Sym;
  init: () => Init;
} {
  let k = seed * 1000;
  const init = (): Init => tf.initializers.glorotUniform({ seed: k++ });
  return {
    init,
    conv: (x, filters, size, name, extra = {}) =>
      ap(tf.layers.conv2d({ filters, kernelSize: size, padding: 'same', kernelInitializer: init(), biasInitializer: init(), name, ...extra }), x),
    bn: (x, name, extra = {}) => ap(tf.layers.batchNormalization({ name, ...extra }), x),
  };
}

const relu = (x: Sym, name: string): Sym => ap(tf.layers.reLU({ name }), x);

/**
 * Random, non-trivial BN weights: γ ≈ 1 ± 0.3 (sign kept), β, μ ≈ N(0, 0.5), σ² ∈ [0.3, 3], so
 * inference BN is far from the identity and from batch statistics. Weights are matched by name
 * (gamma/beta are absent for `scale`/`center` false).
 */
export function randomizeAllBatchNorm(model: tf.LayersModel, seed: number): void {
  const r = rng(seed);
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const values = layer.weights.map((w) => {
      const shape = w.shape.map((d) => d ?? 1);
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      const kind = w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
      for (let i = 0; i < n; i++) {
        data[i] = kind === 'gamma' ? 1 + 0.3 * normal() : kind === 'moving_variance' ? 0.3 + 2.7 * r() : 0.5 * normal();
      }
      return tf.tensor(data, shape);
    });
    layer.setWeights(values);
    tf.dispose(values);
  }
}

function finish(input: Sym, output: Sym, name: string, seed: number): tf.LayersModel {
  const model = tf.model({ inputs: input, outputs: output, name });
  randomizeAllBatchNorm(model, seed);
  return model;
}

function classifier(x: Sym, init: () => Init): Sym {
  const g = ap(tf.layers.globalAveragePooling2d({ name: 'gap' }), x);
  return ap(tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(), name: 'out' }), g);
}

/** ResNet-style: BN before the activation, `scale: false`, `center: false`, BN after an Add, BN after a ReLU-activated conv. */
const residual: Family = {
  name: 'residual',
  boundary: 'b1_out',
  upTo: 'out',
  foldedIntoConv: 3,
  affine: 1,
  fallbacks: [],
  build() {
    const { conv, bn, init } = builder(1);
    const input = tf.input({ shape: [SIZE, SIZE, 3], name: 'image' });
    let x = relu(bn(conv(input, 8, 3, 'stem', { useBias: false }), 'stem_bn', { scale: false }), 'stem_relu');
    let y = relu(bn(conv(x, 8, 3, 'b1_c1'), 'b1_bn1'), 'b1_relu1');
    y = bn(conv(y, 8, 3, 'b1_c2'), 'b1_bn2', { center: false });
    x = ap(tf.layers.add({ name: 'b1_add' }), [x, y]);
    x = relu(bn(x, 'b1_add_bn'), 'b1_out');
    // Head side: conv with its own ReLU, then BN after the activation; a second residual add.
    y = bn(conv(x, 8, 3, 'b2_c1', { activation: 'relu' }), 'b2_bn_post', { scale: false });
    x = relu(ap(tf.layers.add({ name: 'b2_add' }), [x, y]), 'b2_out');
    return finish(input, classifier(x, init), 'residual', 11);
  },
};

/** InceptionV3-style: every BN `scale: false`, parallel branches, avg/max pooling `same`, concat, BN after the concat, pooling `valid`. */
const inception: Family = {
  name: 'inception',
  boundary: 'mixed0_pool',
  upTo: 'out',
  foldedIntoConv: 5,
  affine: 0,
  fallbacks: [],
  build() {
    const { conv, bn } = builder(2);
    const b = builder(20);
    const unit = (x: Sym, filters: number, k: number, name: string, extra: ConvExtra = {}): Sym =>
      relu(bn(conv(x, filters, k, name, { useBias: false, ...extra }), `${name}_bn`, { scale: false }), `${name}_relu`);
    const input = tf.input({ shape: [SIZE, SIZE, 3], name: 'image' });
    const stem = unit(input, 8, 3, 'stem', { padding: 'valid' }); // 6×6
    const b1 = unit(stem, 4, 1, 'm0_b1');
    const b2 = unit(unit(stem, 4, 1, 'm0_b2a'), 4, 3, 'm0_b2b');
    const b3 = unit(ap(tf.layers.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'm0_avg' }), stem), 4, 1, 'm0_b3');
    const b4 = ap(tf.layers.maxPooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'm0_max' }), stem);
    let x = ap(tf.layers.concatenate({ name: 'mixed0' }), [b1, b2, b3, b4]);
    x = ap(tf.layers.maxPooling2d({ poolSize: 2, padding: 'valid', name: 'mixed0_pool' }), x); // 3×3×20
    const c1 = unit(x, 4, 1, 'm1_b1');
    const c2 = unit(x, 4, 3, 'm1_b2');
    x = ap(tf.layers.concatenate({ name: 'mixed1' }), [c1, c2]);
    x = bn(x, 'mixed1_bn', { scale: false });
    return finish(input, classifier(x, b.init), 'inception', 12);
  },
};

/** DenseNet-style: pre-activation BN → ReLU → conv, where every BN reads a concat (no fold), transitions with `valid` avg pooling. */
const densenet: Family = {
  name: 'densenet',
  boundary: 'tr_pool',
  upTo: 'out',
  foldedIntoConv: 0,
  affine: 3,
  fallbacks: [],
  build() {
    const { conv, bn, init } = builder(3);
    const input = tf.input({ shape: [SIZE, SIZE, 3], name: 'image' });
    let x = conv(input, 6, 3, 'stem');
    const layer = (x0: Sym, i: number): Sym => {
      const y = conv(relu(bn(x0, `d${i}_bn`), `d${i}_relu`), 4, 3, `d${i}_conv`, { useBias: false });
      return ap(tf.layers.concatenate({ name: `d${i}_concat` }), [x0, y]);
    };
    x = layer(x, 1);
    x = layer(x, 2);
    x = conv(relu(bn(x, 'tr_bn'), 'tr_relu'), 8, 1, 'tr_conv');
    x = ap(tf.layers.averagePooling2d({ poolSize: 2, padding: 'valid', name: 'tr_pool' }), x); // 4×4×8
    x = layer(x, 3);
    x = relu(bn(x, 'final_bn', { center: false }), 'final_relu');
    return finish(input, classifier(x, init), 'densenet', 13);
  },
};

/** Squeeze-excite: GAP → Dense → BN (rank 2) → ReLU → Dense sigmoid → Reshape → Multiply; BN after a ReLU conv; Average and Maximum merges; Dropout in the base. */
const squeezeExcite: Family = {
  name: 'squeeze-excite',
  boundary: 'post_relu',
  upTo: 'out',
  foldedIntoConv: 3,
  affine: 1,
  fallbacks: [],
  build() {
    const { conv, bn, init } = builder(4);
    const input = tf.input({ shape: [SIZE, SIZE, 3], name: 'image' });
    const se = (x: Sym, c: number, p: string): Sym => {
      let s = ap(tf.layers.globalAveragePooling2d({ name: `${p}_gap` }), x);
      s = ap(tf.layers.dense({ units: 2, kernelInitializer: init(), name: `${p}_reduce` }), s);
      s = relu(bn(s, `${p}_bn`), `${p}_relu`);
      s = ap(tf.layers.dense({ units: c, activation: 'sigmoid', kernelInitializer: init(), name: `${p}_expand` }), s);
      s = ap(tf.layers.reshape({ targetShape: [1, 1, c], name: `${p}_reshape` }), s);
      return ap(tf.layers.multiply({ name: `${p}_mul` }), [x, s]);
    };
    const stem = relu(bn(conv(input, 8, 3, 'stem'), 'stem_bn'), 'stem_relu');
    const excited = se(stem, 8, 'se1');
    // BN after the activation: the conv's ReLU sits between them, so it stays an affine map.
    const proj = bn(conv(excited, 8, 1, 'proj', { activation: 'relu' }), 'proj_bn');
    let x = ap(tf.layers.average({ name: 'avg' }), [excited, proj]);
    x = ap(tf.layers.maximum({ name: 'max' }), [x, excited]);
    x = ap(tf.layers.dropout({ rate: 0.3, name: 'drop' }), x);
    x = relu(bn(conv(x, 8, 1, 'post'), 'post_bn'), 'post_relu');
    x = se(x, 8, 'se2');
    return finish(input, classifier(x, init), 'squeeze-excite', 14);
  },
};

/** MobileNet/Xception-style: SeparableConv2D and DepthwiseConv2D with BN, ReLU6, BN over axis 1, a rank-3 BN, SpatialDropout1D. */
const separable: Family = {
  name: 'separable',
  boundary: 'sep_out',
  upTo: 'out',
  foldedIntoConv: 2,
  affine: 2,
  fallbacks: [],
  build() {
    const { bn, init } = builder(5);
    const input = tf.input({ shape: [SIZE, SIZE, 3], name: 'image' });
    const sep = (x: Sym, name: string): Sym =>
      ap(tf.layers.separableConv2d({ filters: 8, kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: init(), pointwiseInitializer: init(), name }), x);
    let x = relu(bn(sep(input, 'sep1'), 'sep1_bn'), 'sep1_relu');
    let d = ap(tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthwiseInitializer: init(), name: 'dw' }), x);
    d = ap(tf.layers.reLU({ maxValue: 6, name: 'dw_relu6' }), bn(d, 'dw_bn'));
    x = ap(tf.layers.add({ name: 'dw_add' }), [x, d]);
    x = bn(x, 'rows_bn', { axis: 1 });
    x = ap(tf.layers.maxPooling2d({ poolSize: 2, padding: 'valid', name: 'pool' }), x); // 4×4×8
    x = ap(tf.layers.reshape({ targetShape: [16, 8], name: 'as_seq' }), x);
    x = ap(tf.layers.spatialDropout1d({ rate: 0.2, name: 'seq_drop' }), x);
    x = bn(x, 'seq_bn');
    x = ap(tf.layers.reshape({ targetShape: [4, 4, 8], name: 'sep_out' }), x);
    x = relu(bn(sep(x, 'sep2'), 'sep2_bn', { scale: false }), 'sep2_relu');
    return finish(input, classifier(x, init), 'separable', 15);
  },
};

export const FAMILIES: readonly Family[] = [residual, inception, densenet, squeezeExcite, separable];
