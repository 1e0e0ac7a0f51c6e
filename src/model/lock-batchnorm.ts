/**
 * Lock frozen BatchNormalization layers into inference mode.
 *
 * TF.js 4.22 (`tfjs-layers/dist/layers/normalization.js`) ignores `trainable` in
 * `BatchNormalization.call`: under `training: true` (every `fit`, `trainOnBatch`)
 * a frozen BN layer normalises with the mini-batch statistics and overwrites its
 * moving mean and variance. `lockBatchNorm` gives frozen BN layers the Keras 3
 * behaviour: inference mode, statistics untouched.
 */
import * as tf from '@tensorflow/tfjs';
import { ensureBatchNormCompat } from './bn-compat.js';

type Layer = tf.layers.Layer;
type CallFn = Layer['call'];
type CallKwargs = Parameters<CallFn>[1];

const BATCH_NORM = 'BatchNormalization';

interface LockState {
  /** Decides, on every call, whether the layer runs in inference mode. */
  isFrozen: () => boolean;
  /** The `call` that was in place before locking (usually the prototype's). */
  inner: CallFn;
  /** Whether `call` was an own property before locking, so unlocking can restore it exactly. */
  hadOwnCall: boolean;
}

/** Lock state per layer instance; a WeakMap so a disposed model is not kept alive. */
const locks = new WeakMap<Layer, LockState>();

interface BatchNormEntry {
  layer: Layer;
  /** Containers (outermost first, starting at the model passed in) that hold `layer`. */
  ancestors: Layer[];
}

/** True for a `tf.layers.batchNormalization` layer, including ones loaded from a Keras model. */
export function isBatchNorm(layer: Layer): boolean {
  return layer.getClassName() === BATCH_NORM;
}

/** Nested models (functional or sequential) expose their own `layers`. */
function childLayers(layer: Layer): Layer[] | undefined {
  const layers = (layer as unknown as { layers?: unknown }).layers;
  return Array.isArray(layers) ? (layers as Layer[]) : undefined;
}

function collectBatchNorm(model: tf.LayersModel): BatchNormEntry[] {
  if (model == null || childLayers(model) === undefined) {
    throw new TypeError(`Expected a tf.LayersModel, received ${model === null ? 'null' : typeof model}.`);
  }
  const seen = new Set<Layer>();
  const found: BatchNormEntry[] = [];
  const walk = (container: Layer, ancestors: Layer[]): void => {
    for (const layer of childLayers(container) ?? []) {
      // A layer shared by two containers is visited once (first path wins).
      if (seen.has(layer)) continue;
      seen.add(layer);
      if (isBatchNorm(layer)) found.push({ layer, ancestors });
      else if (childLayers(layer) !== undefined) walk(layer, [...ancestors, layer]);
    }
  };
  walk(model, [model]);
  return found;
}

/**
 * The BatchNormalization layers of `model`, depth-first in layer order, with nested models
 * flattened (each layer once, even when shared).
 */
export function batchNormLayers(model: tf.LayersModel): Layer[] {
  return collectBatchNorm(model).map((e) => e.layer);
}

/**
 * Frozen means the layer or any container holding it has `trainable === false`. tfjs's
 * `Container.trainable = false` only flips its sub-layers' weights, not their `trainable`
 * flag, so a BN inside a frozen nested model still reports `trainable: true`.
 */
function frozenPredicate(entry: BatchNormEntry): () => boolean {
  const { layer, ancestors } = entry;
  return () => !layer.trainable || ancestors.some((a) => !a.trainable);
}

/**
 * Lock one BN layer with an explicit predicate. Used by `lockBatchNorm` and by code that
 * rebuilds a locked model (e.g. `compareModes` on its copy). Locking twice only replaces
 * the predicate.
 * @internal
 */
export function lockBatchNormLayer(layer: Layer, isFrozen: () => boolean): void {
  if (!isBatchNorm(layer)) {
    throw new TypeError(`lockBatchNormLayer expects a BatchNormalization layer, received ${layer.getClassName()} \`${layer.name}\`.`);
  }
  const existing = locks.get(layer);
  if (existing) {
    existing.isFrozen = isFrozen;
    return;
  }
  // First, so the wrapper's inner call is one that runs scale:false / center:false layers under
  // a gradient (tfjs 4.22 crashes there, see bn-compat.ts); unlocking keeps it.
  ensureBatchNormCompat(layer);
  const hadOwnCall = Object.prototype.hasOwnProperty.call(layer, 'call');
  const state: LockState = { isFrozen, inner: layer.call, hadOwnCall };
  locks.set(layer, state);
  // Why an instance wrapper: every execution path (`apply`, the functional executor used by
  // fit/trainOnBatch/evaluate/predict, nested models' `call`) ends in `layer.call(inputs,
  // kwargs)`, so overriding `call` on this one instance is the smallest change that makes
  // `training` honour `trainable`. Patching `BatchNormalization.prototype` would change
  // every model in the process; a subclass would need the model rebuilt. The decision is
  // taken per call, so setting `trainable = true` later restores normal BN behaviour.
  layer.call = function lockedBatchNormCall(inputs, kwargs: CallKwargs) {
    const args = state.isFrozen() ? { ...kwargs, training: false } : kwargs;
    return state.inner.call(layer, inputs, args);
  };
}

/**
 * Make every frozen BatchNormalization layer of `model` (nested models included) run in
 * inference mode even under `training: true`, so `fit` / `trainOnBatch` never update its
 * moving statistics and normalise with them instead of batch statistics. Trainable BN
 * layers are unaffected. All BN layers are wrapped and the frozen test runs on every call,
 * so freezing or unfreezing later (layer or enclosing model) takes effect at once.
 *
 * Limits: the lock lives on the layer instances; a model rebuilt from JSON (save/load,
 * `modelFromJSON`) is unlocked and must be locked again. Enclosing models are the ones seen
 * from `model` at lock time.
 *
 * @returns `locked`: names of the BN layers that are frozen now (so locked in effect).
 */
export function lockBatchNorm(model: tf.LayersModel): { locked: string[] } {
  const locked: string[] = [];
  for (const entry of collectBatchNorm(model)) {
    const isFrozen = frozenPredicate(entry);
    lockBatchNormLayer(entry.layer, isFrozen);
    if (isFrozen()) locked.push(entry.layer.name);
  }
  return { locked };
}

/** Undo `lockBatchNorm`: the BN layers of `model` behave as stock tfjs again. */
export function unlockBatchNorm(model: tf.LayersModel): { unlocked: string[] } {
  const unlocked: string[] = [];
  for (const layer of batchNormLayers(model)) {
    const state = locks.get(layer);
    if (!state) continue;
    if (state.hadOwnCall) layer.call = state.inner;
    else delete (layer as Partial<Pick<Layer, 'call'>>).call;
    locks.delete(layer);
    unlocked.push(layer.name);
  }
  return { unlocked };
}

/** Whether `layer` carries the `lockBatchNorm` wrapper (frozen or not). */
export function isBatchNormLocked(layer: Layer): boolean {
  return locks.has(layer);
}

/**
 * For a locked BN layer, whether it would run in inference mode right now; `undefined` when
 * the layer is not locked (stock tfjs behaviour).
 */
export function isLockedInInferenceMode(layer: Layer): boolean | undefined {
  return locks.get(layer)?.isFrozen();
}

/** `movingMean` / `movingVariance` are private in the .d.ts but are the layer's own variables. */
interface BatchNormInternals {
  movingMean?: tf.LayerVariable;
  movingVariance?: tf.LayerVariable;
}

function movingStats(layer: Layer): [tf.LayerVariable, tf.LayerVariable] {
  const { movingMean, movingVariance } = layer as unknown as BatchNormInternals;
  if (!movingMean || !movingVariance) {
    throw new TypeError(`BatchNormalization layer \`${layer.name}\` is not built yet (no moving statistics).`);
  }
  return [movingMean, movingVariance];
}

/**
 * Copies of every BN layer's `[movingMean, movingVariance]`, keyed by layer name.
 * Throws a TypeError when two different BN layers share a name (the keys would collide).
 */
export function snapshotMovingStats(model: tf.LayersModel): Map<string, Float32Array[]> {
  const out = new Map<string, Float32Array[]>();
  for (const layer of batchNormLayers(model)) {
    if (out.has(layer.name)) {
      throw new TypeError(`Two BatchNormalization layers are named \`${layer.name}\`; snapshotMovingStats keys by name, rename one.`);
    }
    // dataSync() may return the backend's own buffer: copy it.
    out.set(layer.name, movingStats(layer).map((v) => Float32Array.from(v.read().dataSync() as Float32Array)));
  }
  return out;
}

/** Bit-identical comparison of two snapshots (same names, same lengths, same bits; NaN-safe). */
export function movingStatsEqual(a: Map<string, Float32Array[]>, b: Map<string, Float32Array[]>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, arraysA] of a) {
    const arraysB = b.get(name);
    if (!arraysB || arraysA.length !== arraysB.length) return false;
    for (let i = 0; i < arraysA.length; i++) {
      if (!bitsEqual(arraysA[i]!, arraysB[i]!)) return false;
    }
  }
  return true;
}

function bitsEqual(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  const bx = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const by = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < bx.length; i++) if (bx[i] !== by[i]) return false;
  return true;
}
