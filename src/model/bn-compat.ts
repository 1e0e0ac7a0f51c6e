/**
 * BatchNormalization that works for every configuration tfjs-layers 4.22 accepts.
 *
 * Two upstream bugs make `scale: false` / `center: false` layers (every BN of Keras'
 * InceptionV3) unusable the moment a gradient or `training: true` is involved:
 * - `BatchNormalization.call` in training mode reads `this.gamma.read()` and `this.beta.read()`
 *   unconditionally (tfjs-layers normalization.js), so it throws "reading 'read'";
 * - its inference path passes a null scale/offset to `tf.batchNorm`, whose kernel saves its
 *   inputs for the gradient (FusedBatchNorm_grad `inputsToSave: [... 'scale']`), and the engine
 *   reads `.dataId` of the missing tensor inside a gradient tape: "reading 'dataId'".
 *
 * `installBatchNormCompat` gives such layers (and only those: the others keep tfjs's own kernel
 * and numerics) an instance-level `call` written with plain differentiable ops: the same
 * arithmetic, moving statistics updated the same way under `training: true`.
 */
import * as tf from '@tensorflow/tfjs';

type Layer = tf.layers.Layer;
type CallFn = Layer['call'];

/** The private fields of tfjs's BatchNormalization the compat call reads (public in its JS). */
interface BatchNormFields {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma?: tf.LayerVariable;
  beta?: tf.LayerVariable;
  movingMean?: tf.LayerVariable;
  movingVariance?: tf.LayerVariable;
}

/** Layers whose `call` is the compat call (so installing twice is a no-op). */
const installed = new WeakSet<Layer>();

function fields(layer: Layer): BatchNormFields {
  return layer as unknown as BatchNormFields;
}

function isBatchNormLayer(layer: Layer): boolean {
  return layer.getClassName() === 'BatchNormalization';
}

/** True for a BN layer that stock tfjs 4.22 cannot train through (no gamma or no beta). */
export function needsBatchNormCompat(layer: Layer): boolean {
  if (!isBatchNormLayer(layer)) return false;
  const f = fields(layer);
  return f.scale === false || f.center === false;
}

/**
 * Inference- or training-mode BN of `x` as plain ops: `(x − μ)·rsqrt(σ² + ε)·γ + β`, γ and β
 * only where the layer has them, broadcast along `axis`. Under `training: true` μ and σ² are the
 * batch moments and the moving statistics move by `momentum`, exactly as tfjs's own layer does.
 */
export function batchNormCompatCall(layer: Layer, inputs: tf.Tensor | tf.Tensor[], kwargs: Parameters<CallFn>[1]): tf.Tensor {
  const f = fields(layer);
  const { movingMean, movingVariance } = f;
  if (!movingMean || !movingVariance) {
    throw new TypeError(`BatchNormalization layer \`${layer.name}\` is not built yet (no moving statistics).`);
  }
  return tf.tidy(() => {
    const x = Array.isArray(inputs) ? inputs[0]! : inputs;
    const training = kwargs?.['training'] === true;
    const axis = f.axis >= 0 ? f.axis : f.axis + x.rank;
    const broadcast = x.shape.map((d, i) => (i === axis ? d : 1));
    const reduction = x.shape.map((_, i) => i).filter((i) => i !== axis);
    const b = (t: tf.Tensor): tf.Tensor => tf.reshape(t, broadcast);
    let mean: tf.Tensor;
    let variance: tf.Tensor;
    if (training) {
      ({ mean, variance } = tf.moments(x, reduction));
      const decay = 1 - f.momentum;
      // Same update as tfjs: moving −= (moving − batch)·(1 − momentum).
      for (const [v, value] of [[movingMean, mean], [movingVariance, variance]] as const) {
        tf.tidy(() => {
          const old = v.read();
          v.write(tf.sub(old, tf.mul(tf.sub(old, value), decay)));
        });
      }
    } else {
      mean = movingMean.read();
      variance = movingVariance.read();
    }
    let y = tf.mul(tf.sub(x, b(mean)), b(tf.rsqrt(tf.add(variance, f.epsilon))));
    if (f.scale && f.gamma) y = tf.mul(y, b(f.gamma.read()));
    if (f.center && f.beta) y = tf.add(y, b(f.beta.read()));
    return y;
  });
}

/**
 * Gives `layer` the compat call when it needs one (see {@link needsBatchNormCompat}); a no-op
 * for any other layer and when already installed. Returns whether the layer now has it.
 */
export function ensureBatchNormCompat(layer: Layer): boolean {
  if (installed.has(layer)) return true;
  if (!needsBatchNormCompat(layer)) return false;
  installed.add(layer);
  // An own property, like lockBatchNorm's wrapper: every execution path ends in `layer.call`.
  layer.call = function batchNormCompat(inputs, kwargs) {
    return batchNormCompatCall(layer, inputs, kwargs);
  };
  return true;
}

function allLayers(model: Layer): Layer[] {
  const out: Layer[] = [];
  const seen = new Set<Layer>();
  const walk = (container: Layer): void => {
    const layers = (container as unknown as { layers?: Layer[] }).layers;
    for (const layer of layers ?? []) {
      if (seen.has(layer)) continue;
      seen.add(layer);
      out.push(layer);
      walk(layer);
    }
  };
  walk(model);
  return out;
}

/**
 * Installs the compat call on every BN layer of `model` (nested models included) that stock
 * tfjs cannot run under a gradient or `training: true`. Lives on the instances: a model rebuilt
 * from JSON needs it again. @returns names of the layers that have it.
 */
export function installBatchNormCompat(model: tf.LayersModel): string[] {
  return allLayers(model)
    .filter((l) => ensureBatchNormCompat(l))
    .map((l) => l.name);
}

/** Whether `layer` runs the compat call. */
export function hasBatchNormCompat(layer: Layer): boolean {
  return installed.has(layer);
}
