/**
 * A frozen base rebuilt as stock tfjs layers with no training-time behaviour: every
 * BatchNormalization folded into the preceding Conv2D/DepthwiseConv2D/Dense (the compiled base's
 * plan computes the folded weights), the ones that cannot fold (after a merge, after an
 * activation) as a per-channel affine map in a 1×1 DepthwiseConv2D, and Dropout-like layers
 * removed. `training: true` and `training: false` give the same output, so a user's further
 * `fit` on the exported model cannot fall into the frozen-BN trap.
 */
import * as tf from '@tensorflow/tfjs';
import { batchNormScaleShift, buildPlan, type PlanNode, type PlanWeight } from './compile/plan.js';

type Layer = tf.layers.Layer;
type Sym = tf.SymbolicTensor;

export interface ExportBaseOptions {
  /**
   * Fold BatchNormalization and drop training-only layers. `false` returns the base's own
   * layers unchanged (BN still normalises with batch statistics under `training: true`).
   * @default true
   */
  fold?: boolean;
  /** Name of the returned model. @default 'splitfit_base' */
  name?: string;
  /** Layer names the new helper layers must not take (e.g. the head's, when stitching). @default [] */
  avoidNames?: readonly string[];
  /**
   * Fold BN into the preceding conv/dense kernels. `false` turns every BN into its fixed per-channel
   * affine map instead (kernels keep the source's values): what per-tensor uint8 weights need, since a
   * folded kernel scales each channel differently. @default true
   */
  intoKernels?: boolean;
}

export interface ExportedBase {
  model: tf.LayersModel;
  /** BN layers folded into a conv/dense, and BN layers turned into a 1×1 depthwise affine map. */
  folded: { intoConv: number; asAffine: number };
  /** Training-only layers (Dropout, GaussianNoise…) dropped because they are the identity at inference. */
  dropped: string[];
  /** Layers copied as they are (the plan could not express them). A BN is never among them unless it normalises over the batch axis. */
  copied: { layer: string; className: string }[];
}

const TRAINING_ONLY = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout']);

/**
 * Exports `base` (single input, single output, as `splitBase` returns it) for stitching or
 * deployment. With `fold` (the default) the result is a new model whose `predict` equals
 * `base.predict` within float32 rounding of the folded weights (≤ 1e-4 relative on the
 * conformance models) and whose output does not depend on `training`.
 */
export function exportBase(base: tf.LayersModel, options: ExportBaseOptions = {}): ExportedBase {
  const opts: ExportBaseOptions & { fold: boolean; name: string } = { fold: true, name: 'splitfit_base', ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  if (typeof opts.fold !== 'boolean') throw new TypeError(`Option \`fold\` must be a boolean, received ${typeof opts.fold}.`);
  if (!opts.fold) return { model: base, folded: { intoConv: 0, asAffine: 0 }, dropped: [], copied: [] };
  // No padding fold: Keras layers have no explicit conv padding, so ZeroPadding2D stays a layer.
  const plan = buildPlan(base, { foldPadding: [], foldBatchNorm: opts.intoKernels !== false });
  // A new layer keeps the name of the base layer it computes (once); helpers get a suffix that
  // no base layer and no avoided name has.
  const reserved = new Set([...base.layers.map((l) => l.name), ...(opts.avoidNames ?? [])]);
  const used = new Set<string>();
  const fresh = (stem: string, own = false): string => {
    let n = stem;
    if (!(own && !used.has(n))) for (let k = 1; reserved.has(n) || used.has(n); k++) n = `${stem}_${k}`;
    used.add(n);
    return n;
  };
  const values = new Map<string, Sym>();
  const pending: [Layer, tf.Tensor[]][] = [];
  const result: Omit<ExportedBase, 'model'> = { folded: { intoConv: 0, asAffine: 0 }, dropped: [], copied: [] };
  let input: Sym | undefined;
  for (const node of plan.nodes) {
    const xs = node.inputs.map((k) => values.get(k)!);
    const y = exportNode(node, xs, base, fresh, pending, result);
    if (node.step.op === 'input') input = y;
    values.set(node.key, y);
  }
  const output = values.get(plan.output);
  if (input === undefined || output === undefined) throw new TypeError('exportBase: the plan has no input or output');
  const model = tf.model({ inputs: input, outputs: output, name: opts.name });
  try {
    for (const [layer, weights] of pending) layer.setWeights(weights);
  } finally {
    tf.dispose(pending.flatMap(([, w]) => w));
  }
  model.trainable = false;
  return { model, ...result };
}

function tensorOf(w: PlanWeight | Float64Array | Float32Array, shape?: number[]): tf.Tensor {
  if (w instanceof Float64Array || w instanceof Float32Array) return tf.tensor(Float32Array.from(w), shape ?? [w.length], 'float32');
  return tf.tensor(w.data, shape ?? w.shape, 'float32');
}

/** Applies a new layer and queues its weights (set once the model is built). */
function place(layer: Layer, x: Sym | Sym[], pending: [Layer, tf.Tensor[]][], weights?: tf.Tensor[]): Sym {
  const y = layer.apply(x) as Sym;
  if (weights) pending.push([layer, weights]);
  return y;
}

function exportNode(
  node: PlanNode,
  xs: Sym[],
  base: tf.LayersModel,
  fresh: (stem: string, own?: boolean) => string,
  pending: [Layer, tf.Tensor[]][],
  result: Omit<ExportedBase, 'model'>,
): Sym {
  const s = node.step;
  const [x] = xs as [Sym];
  // The op's own layer names the new one (a folded conv keeps the conv's name; its BN disappears).
  const name = (): string => fresh(node.layers[0]!, true);
  const countBn = (): number => node.layers.filter((l) => base.getLayer(l).getClassName() === 'BatchNormalization').length;
  switch (s.op) {
    case 'input':
      return tf.input({ shape: s.shape, name: name() });
    case 'conv2d':
    case 'depthwiseConv2d': {
      result.folded.intoConv += countBn();
      let h = x;
      let padding: 'same' | 'valid';
      if (Array.isArray(s.padding)) {
        h = place(tf.layers.zeroPadding2d({ padding: s.padding, name: fresh(`${node.layers[0]!}_pad`) }), h, pending);
        padding = 'valid';
      } else padding = s.padding;
      const [kh, kw, , last] = s.kernel.shape as [number, number, number, number];
      const common = { kernelSize: [kh, kw] as [number, number], strides: s.strides, dilationRate: s.dilations, padding, activation: s.activation, useBias: s.bias !== undefined, name: name() };
      const layer = s.op === 'conv2d' ? tf.layers.conv2d({ ...common, filters: last }) : tf.layers.depthwiseConv2d({ ...common, depthMultiplier: last });
      return place(layer, h, pending, [tensorOf(s.kernel), ...(s.bias ? [tensorOf(s.bias)] : [])]);
    }
    case 'dense': {
      result.folded.intoConv += countBn();
      const layer = tf.layers.dense({ units: s.kernel.shape[1]!, activation: s.activation, useBias: s.bias !== undefined, name: name() });
      return place(layer, x, pending, [tensorOf(s.kernel), ...(s.bias ? [tensorOf(s.bias)] : [])]);
    }
    case 'scaleShift':
      result.folded.asAffine++;
      return affine(x, s.scale, s.shift, s.broadcast, node.layers[0]!, fresh, pending);
    case 'activation':
      return place(tf.layers.activation({ activation: s.activation, name: name() }), x, pending);
    case 'pad':
      return place(tf.layers.zeroPadding2d({ padding: s.padding, name: name() }), x, pending);
    case 'add':
      return place(tf.layers.add({ name: name() }), xs, pending);
    case 'multiply':
      return place(tf.layers.multiply({ name: name() }), xs, pending);
    case 'subtract':
      // tfjs-layers has no Subtract class, so no loadable model contains one.
      throw new TypeError(`exportBase: layer \`${node.layers[0]!}\` is a Subtract, which tfjs-layers cannot build.`);
    case 'maximum':
      return place(tf.layers.maximum({ name: name() }), xs, pending);
    case 'minimum':
      return place(tf.layers.minimum({ name: name() }), xs, pending);
    case 'average':
      return place(tf.layers.average({ name: name() }), xs, pending);
    case 'concat':
      return place(tf.layers.concatenate({ axis: s.axis, name: name() }), xs, pending);
    case 'globalAvgPool':
      return place(tf.layers.globalAveragePooling2d({ name: name() }), x, pending);
    case 'globalMaxPool':
      return place(tf.layers.globalMaxPooling2d({ name: name() }), x, pending);
    case 'pool': {
      const args = { poolSize: s.size, strides: s.strides, padding: s.padding, name: name() };
      return place(s.kind === 'max' ? tf.layers.maxPooling2d(args) : tf.layers.averagePooling2d(args), x, pending);
    }
    case 'reshape':
      return place(tf.layers.reshape({ targetShape: s.shape, name: name() }), x, pending);
    case 'identity':
      // Dropout and friends: the identity at inference, so they leave the frozen base entirely.
      for (const l of node.layers) if (TRAINING_ONLY.has(base.getLayer(l).getClassName())) result.dropped.push(l);
      return x;
    case 'fallback': {
      const layer = s.layer;
      const rank = x.shape.length;
      const axis = Number((layer.getConfig() as { axis?: number }).axis ?? -1);
      const a = axis < 0 ? axis + rank : axis;
      if (layer.getClassName() === 'BatchNormalization' && xs.length === 1 && a >= 1 && a < rank) {
        // A shared BN (one plan node per call): each call still is an affine map, not a copied trap.
        const ss = batchNormScaleShift(layer);
        result.folded.asAffine++;
        const broadcast = a === rank - 1 ? undefined : Array.from({ length: rank - 1 }, (_, i) => (i === a - 1 ? ss.scale.length : 1));
        return affine(x, ss.scale, ss.shift, broadcast, layer.name, fresh, pending);
      }
      result.copied.push({ layer: layer.name, className: layer.getClassName() });
      const copy = cloneLayer(layer, name());
      return place(copy, xs.length === 1 ? x : xs, pending, layer.getWeights().map((w) => w.clone()));
    }
  }
}

/**
 * `x·scale + shift` per channel as stock layers: a 1×1 DepthwiseConv2D (kernel = scale, bias =
 * shift) over a rank-4 view of `x`, with Permute/Reshape around it when the channel axis is not
 * last or `x` is not a feature map. Every tfjs version loads these, and none has training behaviour.
 */
function affine(
  x: Sym,
  scale: Float64Array,
  shift: Float64Array,
  broadcast: number[] | undefined,
  stem: string,
  fresh: (stem: string, own?: boolean) => string,
  pending: [Layer, tf.Tensor[]][],
): Sym {
  const shape = x.shape.slice(1) as number[];
  const c = scale.length;
  // 1-based axis of the channels in the per-sample shape, as Permute counts.
  const axis = broadcast === undefined ? shape.length : broadcast.indexOf(c) + 1;
  let h = x;
  let perm: number[] | undefined;
  if (axis !== shape.length) {
    perm = [...Array.from({ length: shape.length }, (_, i) => i + 1).filter((d) => d !== axis), axis];
    h = place(tf.layers.permute({ dims: perm, name: fresh(`${stem}_to_last`) }), h, pending);
  }
  const channelsLast = h.shape.slice(1) as number[];
  const reshaped = channelsLast.length !== 3;
  if (reshaped) {
    const rest = channelsLast.slice(0, -1).reduce((a, b) => a * b, 1);
    h = place(tf.layers.reshape({ targetShape: [1, rest, c], name: fresh(`${stem}_as_map`) }), h, pending);
  }
  const dw = tf.layers.depthwiseConv2d({ kernelSize: 1, depthMultiplier: 1, useBias: true, name: fresh(stem, true) });
  h = place(dw, h, pending, [tensorOf(scale, [1, 1, c, 1]), tensorOf(shift)]);
  if (reshaped) h = place(tf.layers.reshape({ targetShape: channelsLast, name: fresh(`${stem}_back`) }), h, pending);
  if (perm) {
    const inverse = perm.map((_, i) => perm.indexOf(i + 1) + 1);
    h = place(tf.layers.permute({ dims: inverse, name: fresh(`${stem}_from_last`) }), h, pending);
  }
  return h;
}

/** A new instance of a registered layer class with `layer`'s config under a new name. */
function cloneLayer(layer: Layer, name: string): Layer {
  const className = layer.getClassName();
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (entry === undefined) {
    throw new TypeError(`exportBase: layer \`${layer.name}\` (${className}) is not a registered class; register it with tf.serialization.registerClass.`);
  }
  const [cls, fromConfig] = entry;
  return fromConfig(cls, { ...layer.getConfig(), name } as tf.serialization.ConfigDict) as unknown as Layer;
}
