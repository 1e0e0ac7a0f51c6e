/**
 * Training-mode vs inference-mode evaluation of one model on the same data.
 *
 * With stock TF.js a frozen BatchNormalization layer normalises with batch statistics under
 * `training: true` and with its moving statistics otherwise (see `model/lock-batchnorm.ts`).
 * A head trained on top of it learns the batch-statistics features, so the accuracy `fit`
 * reports is not the accuracy `predict` delivers. `compareModes` measures that gap.
 */
import * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';
import { installBatchNormCompat } from '../model/bn-compat.js';
import { isBatchNorm, isLockedInInferenceMode, lockBatchNormLayer } from '../model/lock-batchnorm.js';

type Layer = tf.layers.Layer;

export interface CompareModesOptions {
  /**
   * Samples per forward pass. In training mode BN uses the statistics of each batch, so
   * this matters: use the batch size the model is fitted with. Batches are taken in order,
   * without shuffling; the last one may be smaller.
   * @default 32
   */
  batchSize?: number;
  /**
   * Keep dropout (and the other training-only noise layers: SpatialDropout1D, AlphaDropout,
   * GaussianDropout, GaussianNoise) active in the training-mode pass, as `fit` does. Then the
   * gap measures BN **and** dropout. `false` runs those layers as identity in both passes,
   * so the gap isolates BatchNormalization.
   * @default true
   */
  dropout?: boolean;
  /**
   * Run trainable BatchNormalization layers (a head's own `bn`, an unfrozen `original:` block)
   * with batch statistics in the training-mode pass, as `fit` does. `false` runs them in
   * inference mode in both passes, so together with `dropout: false` the gap is the frozen-BN
   * trap alone: the part of the model the user did not choose to train.
   * @default true
   */
  trainableBatchNorm?: boolean;
}

export interface ModeMetrics {
  /** Mean cross-entropy (categorical for softmax outputs, binary for one sigmoid unit). */
  loss: number;
  /** Fraction of samples classified correctly (argmax, or `> 0.5` for one unit). */
  accuracy: number;
}

export interface CompareModesResult {
  /** Forward pass with `training: true`, batched like `fit`. */
  training: ModeMetrics;
  /** Forward pass with `training: false`, as `predict` / `evaluate`. */
  inference: ModeMetrics;
  /** `training.accuracy - inference.accuracy`; positive when inference is worse. */
  accuracyGap: number;
}

const DEFAULTS: Required<CompareModesOptions> = { batchSize: 32, dropout: true, trainableBatchNorm: true };

/** Layers whose output is random under `training: true` and the identity otherwise. */
const NOISE_LAYERS = new Set(['Dropout', 'SpatialDropout1D', 'AlphaDropout', 'GaussianDropout', 'GaussianNoise']);

export function validateCompareModesOptions(options: CompareModesOptions = {}): Required<CompareModesOptions> {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`compareModes options must be an object, received ${options === null ? 'null' : typeof options}.`);
  }
  const opts = { ...DEFAULTS, ...stripUndefined(options) };
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new TypeError(`Option \`batchSize\` must be a positive integer, received ${String(opts.batchSize)}.`);
  }
  if (typeof opts.dropout !== 'boolean') {
    throw new TypeError(`Option \`dropout\` must be a boolean, received ${typeof opts.dropout}.`);
  }
  if (typeof opts.trainableBatchNorm !== 'boolean') {
    throw new TypeError(`Option \`trainableBatchNorm\` must be a boolean, received ${typeof opts.trainableBatchNorm}.`);
  }
  return opts;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Evaluate `model` on `(x, y)` once in training mode and once in inference mode and report
 * both, plus the accuracy gap. `y` is one-hot `[n, classes]` for a softmax output, or
 * `[n]` / `[n, 1]` in {0, 1} for a single sigmoid unit. Losses match `model.evaluate` with
 * `categoricalCrossentropy` / `binaryCrossentropy`.
 *
 * The gap is the BN train/inference discrepancy plus, unless `dropout: false`, dropout noise.
 *
 * Nothing about `model` changes: both passes run on a copy (see `copyModel`). Layers locked
 * with `lockBatchNorm` stay locked on the copy.
 */
export async function compareModes(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
  options: CompareModesOptions = {},
): Promise<CompareModesResult> {
  const opts = validateCompareModesOptions(options);
  const { binary } = validateData(model, x, y);
  const copy = await copyModel(model);
  try {
    if (!opts.dropout) silenceNoiseLayers(copy);
    if (!opts.trainableBatchNorm) freezeTrainableBatchNorm(copy);
    // Inference first: the training-mode pass moves the copy's unlocked BN statistics.
    const inference = await runMode(copy, x, y, false, opts.batchSize, binary);
    const training = await runMode(copy, x, y, true, opts.batchSize, binary);
    return { training, inference, accuracyGap: training.accuracy - inference.accuracy };
  } finally {
    copy.dispose();
  }
}

/**
 * The raw outputs of `model` on `x` in training mode (batched like `fit`) and in inference mode, on a
 * copy as {@link compareModes} runs it: what the regression and multi-label detectors
 * (`task-modes.ts`) score with their own metrics. Row-major [n × k].
 */
export async function modeOutputs(model: tf.LayersModel, x: tf.Tensor, options: CompareModesOptions = {}): Promise<{ training: Float32Array; inference: Float32Array; k: number }> {
  const opts = validateCompareModesOptions(options);
  const n = x.shape[0]!;
  if (n === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', 'compareModes received no samples (x has 0 rows); pass at least one sample.');
  const copy = await copyModel(model);
  try {
    if (!opts.dropout) silenceNoiseLayers(copy);
    if (!opts.trainableBatchNorm) freezeTrainableBatchNorm(copy);
    const run = async (training: boolean): Promise<Float32Array> => {
      const parts: Float32Array[] = [];
      for (let start = 0; start < n; start += opts.batchSize) {
        const size = Math.min(opts.batchSize, n - start);
        const out = tf.tidy(() => copy.apply(x.slice(start, size), { training }) as tf.Tensor);
        parts.push((await out.data()) as Float32Array);
        out.dispose();
      }
      const all = new Float32Array(parts.reduce((t, p) => t + p.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      return all;
    };
    // Inference first: the training-mode pass moves the copy's unlocked BN statistics.
    const inference = await run(false);
    const training = await run(true);
    return { training, inference, k: inference.length / n };
  } finally {
    copy.dispose();
  }
}

function validateData(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): { binary: boolean } {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new TypeError(
      `compareModes needs a model with one input and one output, received ${model.inputs.length} input(s) and ${model.outputs.length} output(s).`,
    );
  }
  const outShape = model.outputs[0]!.shape;
  if (outShape.length !== 2 || outShape[1] == null) {
    throw new TypeError(`compareModes needs a classifier output of shape [batch, classes], the model outputs ${JSON.stringify(outShape)}.`);
  }
  const units = outShape[1];
  const n = x.shape[0];
  if (n === undefined || x.rank !== model.inputs[0]!.shape.length) {
    throw new TypeError(`x must have shape ${JSON.stringify(model.inputs[0]!.shape)}, received ${JSON.stringify(x.shape)}.`);
  }
  if (y.shape[0] !== n) {
    throw new TypeError(`x and y must hold the same number of samples, received ${n} and ${String(y.shape[0])}.`);
  }
  if (n === 0) {
    throw new SplitfitError('SPLITFIT_DATA_EMPTY', 'compareModes received no samples (x has 0 rows); pass at least one labelled sample.');
  }
  const binary = units === 1;
  const yOk = binary ? y.size === n && y.rank <= 2 : y.rank === 2 && y.shape[1] === units;
  if (!yOk) {
    const want = binary ? `[${n}] or [${n}, 1] (0/1 labels for one sigmoid unit)` : `[${n}, ${units}] (one-hot)`;
    throw new TypeError(`y must have shape ${want}, received ${JSON.stringify(y.shape)}.`);
  }
  return { binary };
}

/** Layers in depth-first order, nested models included (containers and their contents). */
function flattenLayers(model: Layer): Layer[] {
  const out: Layer[] = [];
  const walk = (container: Layer): void => {
    const layers = (container as unknown as { layers?: Layer[] }).layers;
    for (const layer of layers ?? []) {
      out.push(layer);
      walk(layer);
    }
  };
  walk(model);
  return out;
}

/** Own weights of a leaf layer in creation order; `weights` reorders with the trainable flags. */
function ownWeights(layer: Layer): tf.LayerVariable[] {
  const l = layer as unknown as { _trainableWeights?: tf.LayerVariable[]; _nonTrainableWeights?: tf.LayerVariable[] };
  return [...(l._trainableWeights ?? []), ...(l._nonTrainableWeights ?? [])];
}

function lastSegment(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/**
 * A private copy of `model` for the two passes.
 *
 * Why a copy rather than snapshot-and-restore: the training-mode pass writes the BN moving
 * statistics, and restoring them through `setWeights` re-applies weight constraints (so
 * "restored" weights need not be bit-identical), while any await between passes would let
 * other code see the drifted model. The copy is rebuilt from `model.toJSON()` and its
 * variables are assigned the original's tensors: tfjs shares the buffers (reference counted),
 * so the copy costs only the buffers the training pass replaces. Instance-level state is not
 * serialised, so BN locks are carried over with the decision the original makes now.
 */
async function copyModel(model: tf.LayersModel): Promise<tf.LayersModel> {
  let copy: tf.LayersModel;
  // A failed rebuild leaves the variables of the layers built so far registered and
  // unreachable. modelFromJSON deserialises synchronously before its first await, so the
  // variables that appear during the call itself are exactly the copy's.
  const registered = () => tf.engine().registeredVariables;
  const before = new Set(Object.keys(registered()));
  let created: tf.Variable[] = [];
  try {
    const topology = model.toJSON(null, false) as tf.io.ModelJSON['modelTopology'];
    const pending = tf.models.modelFromJSON({ modelTopology: topology } as tf.io.ModelJSON);
    created = Object.entries(registered()).filter(([name]) => !before.has(name)).map(([, v]) => v);
    copy = await pending;
  } catch (err) {
    for (const v of created) if (!v.isDisposed) v.dispose();
    const reason = err instanceof Error ? err.message : String(err);
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `compareModes works on a copy rebuilt from model.toJSON(), and rebuilding \`${model.name}\` failed: ${reason}. ` +
        'Register custom layers with tf.serialization.registerClass.',
      { cause: err },
    );
  }
  try {
    // Before the locks (which wrap it): tfjs 4.22's training-mode BN reads gamma/beta unconditionally.
    installBatchNormCompat(copy);
    const src = flattenLayers(model);
    const dst = flattenLayers(copy);
    if (src.length !== dst.length) {
      throw new TypeError(`Copy of \`${model.name}\` has ${dst.length} layers, the model has ${src.length}.`);
    }
    src.forEach((s, i) => {
      const d = dst[i]!;
      if (s.name !== d.name || s.getClassName() !== d.getClassName()) {
        throw new TypeError(`Copy of \`${model.name}\` differs at layer ${i}: \`${d.name}\` (${d.getClassName()}) vs \`${s.name}\` (${s.getClassName()}).`);
      }
      if ((s as unknown as { layers?: unknown }).layers === undefined) copyWeights(s, d);
      if (isBatchNorm(s)) {
        const lockedNow = isLockedInInferenceMode(s);
        if (lockedNow !== undefined) lockBatchNormLayer(d, () => lockedNow);
      }
    });
    return copy;
  } catch (err) {
    copy.dispose();
    throw err;
  }
}

function copyWeights(src: Layer, dst: Layer): void {
  const ws = ownWeights(src);
  const wd = ownWeights(dst);
  if (ws.length !== wd.length) {
    throw new TypeError(`Layer \`${src.name}\`: copy has ${wd.length} weights, original ${ws.length}.`);
  }
  ws.forEach((s, i) => {
    const d = wd[i]!;
    const sv = s.read();
    // LayerVariable.read() returns its tf.Variable itself (typed as Tensor).
    const dv = d.read() as tf.Variable;
    if (lastSegment(s.originalName) !== lastSegment(d.originalName) || !tf.util.arraysEqual(sv.shape, dv.shape) || sv.dtype !== dv.dtype) {
      throw new TypeError(`Layer \`${src.name}\`: weight ${s.originalName} ${JSON.stringify(sv.shape)} does not match copy ${d.originalName} ${JSON.stringify(dv.shape)}.`);
    }
    // Variable.assign shares the buffer and skips the layer's weight constraint (LayerVariable.write applies it).
    dv.assign(sv);
  });
}

function silenceNoiseLayers(model: tf.LayersModel): void {
  for (const layer of flattenLayers(model)) {
    if (!NOISE_LAYERS.has(layer.getClassName())) continue;
    const inner = layer.call;
    // Only the private copy is touched: identity in both passes.
    layer.call = (inputs, kwargs) => inner.call(layer, inputs, { ...kwargs, training: false });
  }
}

/** Locks, on the private copy, the BN layers that are trainable (layer and every container holding it) in inference mode. */
function freezeTrainableBatchNorm(model: tf.LayersModel): void {
  const walk = (container: Layer, frozen: boolean): void => {
    for (const layer of (container as unknown as { layers?: Layer[] }).layers ?? []) {
      if (isBatchNorm(layer) && !frozen && layer.trainable) lockBatchNormLayer(layer, () => true);
      walk(layer, frozen || !layer.trainable);
    }
  };
  walk(model, !model.trainable);
}

async function runMode(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
  training: boolean,
  batchSize: number,
  binary: boolean,
): Promise<ModeMetrics> {
  const n = x.shape[0]!;
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < n; start += batchSize) {
    const size = Math.min(batchSize, n - start);
    const sums = tf.tidy(() => {
      const xb = x.slice(start, size);
      let yb = tf.cast(y.slice(start, size), 'float32');
      const out = model.apply(xb, { training }) as tf.Tensor;
      if (binary) yb = yb.reshape([size, 1]);
      const losses = binary ? tf.metrics.binaryCrossentropy(yb, out) : tf.metrics.categoricalCrossentropy(yb, out);
      const hits = binary ? tf.metrics.binaryAccuracy(yb, out) : tf.metrics.categoricalAccuracy(yb, out);
      return tf.stack([losses.sum(), hits.sum()]);
    });
    try {
      const [l, c] = await sums.data();
      lossSum += l!;
      correct += c!;
    } finally {
      sums.dispose();
    }
  }
  return { loss: lossSum / n, accuracy: correct / n };
}
