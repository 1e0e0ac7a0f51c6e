/**
 * The BatchNormalization problem of TF.js 4.22, and its fix, on a real network.
 *
 * The same frozen, pretrained MobileNetV2 (npm `nsfwjs`, 52 BatchNormalization layers, cut at
 * `out_relu` → 7×7×1280) gets the same new head (`gap,dense:2:softmax`, same seeded initial
 * weights) and is trained on the same Fashion-MNIST images with the same settings, three ways:
 *
 * - `naive`: one model (base layers `trainable = false` + head), `compile` + `fit`, the way
 *   the tfjs docs suggest. tfjs-layers 4.22 `BatchNormalization.call` ignores `trainable`, so
 *   under `fit` the frozen BN layers normalise with mini-batch statistics and overwrite their
 *   moving statistics; `predict`/`evaluate` then normalise with the moving statistics. The
 *   head learns features it never sees again at inference.
 * - `splitfit`: `extractFeatures` runs the base once in inference mode and caches the features;
 *   `trainHead` trains the head on the cache and stitches it onto the untouched base.
 * - `locked`: like `naive`, but `lockBatchNorm(model)` before `fit`: frozen BN layers run in
 *   inference mode under `fit` (the Keras 3 behaviour).
 *
 * Each mode is evaluated in inference mode on the very images it was trained on; the gap
 * between the accuracy training reported and the accuracy `predict` delivers is the BN bug.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  batchNormLayers,
  buildHead,
  classificationMetrics,
  compareModes,
  decodeImage,
  extractFeatures,
  FASHION_MNIST_CLASSES,
  FeatureCache,
  loadModel,
  lockBatchNorm,
  movingStatsEqual,
  openDataSource,
  preprocess,
  selectSamples,
  snapshotMovingStats,
  splitBase,
  stitch,
  trainHead,
} from 'splitfit';
import type { DataSource } from 'splitfit';
import { loadFeatureSet } from 'splitfit';

export const BN_GAP_MODES = ['naive', 'splitfit', 'locked'] as const;
export type BnGapMode = (typeof BN_GAP_MODES)[number];

export const FASHION_MNIST_TRAIN = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';
export const MODEL = 'mobilenet_v2';
export const BOUNDARY = 'out_relu';
export const HEAD = 'gap,dense:2:softmax';

/**
 * Default class pair: the candidate with the largest naive gap, measured with a reduced
 * setting (40 images per class, 5 epochs, seed 0, batch 32, `--mode naive`, native backend):
 * naive fit accuracy (last epoch) → inference accuracy on the same 80 images:
 *   sneaker,ankle-boot  0.8875 → 0.5000  gap 0.3875  (AUC 0.12)
 *   sandal,bag          0.9000 → 0.6000  gap 0.3000  (AUC 0.74)
 *   pullover,coat       0.7500 → 0.4875  gap 0.2625  (AUC 0.50)
 *   t-shirt,trouser     0.9250 → 0.8125  gap 0.1125  (AUC 0.85)
 */
export const DEFAULT_CLASSES: readonly string[] = ['sneaker', 'ankle-boot'];

export interface BnGapOptions {
  /** Fashion-MNIST IDX images file (labels file beside it). @default FASHION_MNIST_TRAIN */
  data?: string;
  /** Exactly two Fashion-MNIST class names. @default DEFAULT_CLASSES */
  classes?: readonly string[];
  /** Images per class, drawn with `seed` (`selectSamples`). @default 100 */
  perClass?: number;
  /** @default 10 */
  epochs?: number;
  /** @default 32 */
  batchSize?: number;
  /** Adam learning rate. @default 0.001 */
  learningRate?: number;
  /** Seeds the sample draw, the head's initial weights and splitfit's per-epoch shuffle. @default 0 */
  seed?: number;
  /** @default all three */
  modes?: readonly BnGapMode[];
  /**
   * Also run `compareModes` (what `splitfit evaluate --compare-modes` reports) on each final
   * model: one more training-mode and inference-mode pass of the whole network over the data.
   * @default true
   */
  compareModes?: boolean;
  /** Progress lines (for a TTY). */
  onProgress?: (message: string) => void;
}

export interface ModeMetrics {
  accuracy: number;
  loss: number;
}

export interface BnGapModeResult {
  /** What training reported for its last epoch (running mean over that epoch's batches, as Keras does). */
  fitAccuracy: number;
  fitLoss: number;
  /**
   * The final weights, run the way training runs them, on the same data (batches of `batchSize`
   * in order): `naive`/`locked` = the whole model with `training: true` (on a copy, via
   * `compareModes`; absent when `compareModes: false`); `splitfit` = the final head with
   * `training: true` on the cached features.
   */
  trainMode?: ModeMetrics;
  /** `predict` (inference mode) on the same images. */
  inferenceAccuracy: number;
  inferenceLoss: number;
  auc?: number;
  /** `fitAccuracy − inferenceAccuracy`. */
  gap: number;
  /** `trainMode.accuracy − inferenceAccuracy`: the gap with the same weights on both sides. */
  trainModeGap?: number;
  /** Whether any BN moving mean/variance of the pretrained base changed (bit-exact comparison). */
  movingStatsChanged: boolean;
  /** How many of the base's BN layers have different moving statistics afterwards. */
  bnLayersChanged: number;
  /**
   * `compareModes` on the final model (for `splitfit`: the stitched model), i.e. what
   * `splitfit evaluate --compare-modes` prints for it.
   */
  compareModes?: { training: ModeMetrics; inference: ModeMetrics; accuracyGap: number };
  /** Wall time of training: `fit` (naive, locked) or `extractFeatures` + `trainHead` (splitfit, incl. decoding). */
  seconds: number;
}

export interface BnGapSettings {
  model: string;
  boundary: string;
  head: string;
  data: string;
  classes: string[];
  perClass: number;
  samples: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: 'adam';
  seed: number;
  bnLayers: number;
  backend: string;
  /** Training data = evaluation data. */
  evaluatedOn: 'training data';
}

export type BnGapResult = { [M in BnGapMode]?: BnGapModeResult } & { settings: BnGapSettings };

interface Resolved {
  data: string;
  classes: string[];
  perClass: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  modes: BnGapMode[];
  compareModes: boolean;
  log: (message: string) => void;
}

function resolveOptions(options: BnGapOptions): Resolved {
  const o: Resolved = {
    data: options.data ?? FASHION_MNIST_TRAIN,
    classes: [...(options.classes ?? DEFAULT_CLASSES)],
    perClass: options.perClass ?? 100,
    epochs: options.epochs ?? 10,
    batchSize: options.batchSize ?? 32,
    learningRate: options.learningRate ?? 1e-3,
    seed: options.seed ?? 0,
    modes: [...(options.modes ?? BN_GAP_MODES)],
    compareModes: options.compareModes ?? true,
    log: options.onProgress ?? (() => {}),
  };
  if (o.classes.length !== 2) throw new TypeError(`runBnGap needs exactly two classes (the head is dense:2), got ${o.classes.length}: ${o.classes.join(', ')}`);
  for (const [name, v] of [['perClass', o.perClass], ['epochs', o.epochs], ['batchSize', o.batchSize]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new TypeError(`${name} must be a positive integer, got ${v}`);
  }
  if (!(o.learningRate > 0)) throw new TypeError(`learningRate must be positive, got ${o.learningRate}`);
  if (o.modes.length === 0 || o.modes.some((m) => !(BN_GAP_MODES as readonly string[]).includes(m))) {
    throw new TypeError(`modes must be a non-empty subset of ${BN_GAP_MODES.join(', ')}, got ${o.modes.join(', ')}`);
  }
  return o;
}

/** The images of `source` decoded exactly as `extractFeatures` decodes them: 224×224 RGB, [0, 1]. */
async function loadImages(source: DataSource, size: [number, number]): Promise<{ x: tf.Tensor4D; labels: number[] }> {
  const [h, w] = size;
  const per = h * w * 3;
  const flat = new Float32Array(source.samples.length * per);
  const labels: number[] = [];
  for (const [i, s] of source.samples.entries()) {
    const pixels = await decodeImage(await s.load(), { height: h, width: w, channels: 3 }, s.source);
    flat.set(preprocess(pixels, 3, 'unit'), i * per);
    labels.push(source.labels.indexOf(s.label!));
  }
  return { x: tf.tensor4d(flat, [source.samples.length, h, w, 3]), labels };
}

/** Inference-mode metrics of `model` on (x, labels). */
function inferenceMetrics(model: tf.LayersModel, x: tf.Tensor4D, labels: number[], batchSize: number): ReturnType<typeof classificationMetrics> {
  const probs = tf.tidy(() => (model.predict(x, { batchSize }) as tf.Tensor).dataSync() as Float32Array);
  return classificationMetrics(probs, labels, 2);
}

/** BN layers whose moving statistics differ between two snapshots. */
function changedLayers(before: Map<string, Float32Array[]>, after: Map<string, Float32Array[]>): number {
  let n = 0;
  for (const [name, stats] of before) {
    const other = after.get(name);
    if (!other || !movingStatsEqual(new Map([[name, stats]]), new Map([[name, other]]))) n++;
  }
  return n + [...after.keys()].filter((k) => !before.has(k)).length;
}

async function modes(model: tf.LayersModel, x: tf.Tensor4D, y: tf.Tensor2D, batchSize: number): Promise<BnGapModeResult['compareModes']> {
  const r = await compareModes(model, x, y, { batchSize });
  return { training: r.training, inference: r.inference, accuracyGap: r.accuracyGap };
}

/** naive / locked: base (frozen) + head in one model, trained with `fit`. */
async function runFit(mode: 'naive' | 'locked', o: Resolved, x: tf.Tensor4D, labels: number[]): Promise<BnGapModeResult> {
  const source = await loadModel(MODEL);
  const { base, featureShape } = splitBase(source, BOUNDARY);
  const head = await buildHead(source, BOUNDARY, featureShape, { spec: HEAD, numClasses: 2, seed: o.seed });
  // One flat model: the pretrained layers with trainable=false, then the head (same seeded
  // initial weights as splitfit's head).
  const model = await stitch(base, head, `bn_gap_${mode}`);
  source.dispose();
  head.dispose();
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), 2).toFloat() as tf.Tensor2D);
  try {
    if (model.trainableWeights.length !== 2) throw new Error(`expected only the head's kernel and bias to be trainable, got ${model.trainableWeights.length} weights`);
    if (mode === 'locked') {
      const { locked } = lockBatchNorm(model);
      o.log(`${mode}: lockBatchNorm locked ${locked.length} BN layers`);
    }
    const before = snapshotMovingStats(model);
    model.compile({ optimizer: tf.train.adam(o.learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
    const t0 = performance.now();
    const history = await model.fit(x, y, {
      epochs: o.epochs,
      batchSize: o.batchSize,
      shuffle: false,
      verbose: 0,
      callbacks: { onEpochEnd: (epoch, logs) => o.log(`${mode}: epoch ${epoch + 1}/${o.epochs} loss ${logs?.['loss']?.toFixed(4)} acc ${(logs?.['acc'] ?? logs?.['accuracy'])?.toFixed(4)}`) },
    });
    const seconds = (performance.now() - t0) / 1000;
    const after = snapshotMovingStats(model);
    const accs = (history.history['acc'] ?? history.history['accuracy']) as number[];
    const losses = history.history['loss'] as number[];
    const fitAccuracy = accs.at(-1)!;
    const fitLoss = losses.at(-1)!;
    const m = inferenceMetrics(model, x, labels, o.batchSize);
    const cm = o.compareModes ? await modes(model, x, y, o.batchSize) : undefined;
    return {
      fitAccuracy,
      fitLoss,
      ...(cm ? { trainMode: cm.training } : {}),
      inferenceAccuracy: m.accuracy,
      inferenceLoss: m.loss,
      ...(m.auc === undefined ? {} : { auc: m.auc }),
      gap: fitAccuracy - m.accuracy,
      ...(cm ? { trainModeGap: cm.training.accuracy - m.accuracy } : {}),
      movingStatsChanged: !movingStatsEqual(before, after),
      bnLayersChanged: changedLayers(before, after),
      ...(cm ? { compareModes: cm } : {}),
      seconds,
    };
  } finally {
    y.dispose();
    model.dispose();
  }
}

/** splitfit: extract once in inference mode into a fresh cache, train the head on it, stitch. */
async function runSplitfit(o: Resolved, selected: DataSource, x: tf.Tensor4D, labels: number[]): Promise<BnGapModeResult> {
  const source = await loadModel(MODEL);
  const dir = await mkdtemp(join(tmpdir(), 'splitfit-bn-gap-'));
  const cacheDir = join(dir, 'cache');
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), 2).toFloat() as tf.Tensor2D);
  let stitched: tf.LayersModel | undefined;
  let head: tf.LayersModel | undefined;
  try {
    const before = snapshotMovingStats(source);
    const t0 = performance.now();
    const ex = await extractFeatures({ model: source, boundary: BOUNDARY, preprocess: 'unit', data: selected, cache: cacheDir, batchSize: o.batchSize });
    o.log(`splitfit: extracted ${ex.extracted} samples once (${ex.extractSeconds.toFixed(1)} s), features [${ex.featureShape.join(', ')}]`);
    const r = await trainHead({
      cache: cacheDir,
      out: join(dir, 'out'),
      model: source,
      head: HEAD,
      epochs: o.epochs,
      batchSize: o.batchSize,
      optimizer: 'adam',
      learningRate: o.learningRate,
      seed: o.seed,
      onProgress: (e) => {
        if (e.type === 'epoch') o.log(`splitfit: epoch ${e.epoch}/${o.epochs} loss ${e.loss.toFixed(4)} acc ${e.acc.toFixed(4)}`);
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    stitched = r.model;
    head = r.head;
    if (r.labels.join('\n') !== selected.labels.join('\n')) throw new Error(`label order differs: ${r.labels.join(',')} vs ${selected.labels.join(',')}`);

    // The BN statistics, both in the source model (which extraction ran) and in the stitched model.
    const afterSource = snapshotMovingStats(source);
    // train-head exports the base with BN folded into its convolutions: then the stitched model has no
    // moving statistics at all, and the source's (which extraction ran) are the ones to check.
    const afterStitched = snapshotMovingStats(stitched);
    const folded = afterStitched.size === 0;
    const movingStatsChanged = !movingStatsEqual(before, afterSource) || (!folded && !movingStatsEqual(before, afterStitched));
    const bnLayersChanged = Math.max(changedLayers(before, afterSource), folded ? 0 : changedLayers(before, afterStitched));

    // Training-mode accuracy of the final head on the cached features, batches in order.
    const cache = await FeatureCache.open(cacheDir, { command: 'bn-gap' });
    let trainMode: ModeMetrics;
    try {
      const set = await loadFeatureSet(
        cache,
        r.fingerprint,
        selected.samples.map((s, i) => ({ id: s.id, label: labels[i]! })),
        ex.featureShape,
      );
      const per = ex.featureShape.reduce((a, b) => a * b, 1);
      const probs = new Float32Array(set.ids.length * 2);
      for (let i = 0; i < set.ids.length; i += o.batchSize) {
        const n = Math.min(o.batchSize, set.ids.length - i);
        const h = head;
        const p = tf.tidy(() => (h.apply(tf.tensor(set.x.subarray(i * per, (i + n) * per), [n, ...ex.featureShape]), { training: true }) as tf.Tensor).dataSync());
        probs.set(p, i * 2);
      }
      const m = classificationMetrics(probs, set.labels, 2);
      trainMode = { accuracy: m.accuracy, loss: m.loss };
    } finally {
      await cache.close();
    }

    const fitAccuracy = r.history.acc.at(-1)!;
    const fitLoss = r.history.loss.at(-1)!;
    const m = inferenceMetrics(stitched, x, labels, o.batchSize);
    const cm = o.compareModes ? await modes(stitched, x, y, o.batchSize) : undefined;
    return {
      fitAccuracy,
      fitLoss,
      trainMode,
      inferenceAccuracy: m.accuracy,
      inferenceLoss: m.loss,
      ...(m.auc === undefined ? {} : { auc: m.auc }),
      gap: fitAccuracy - m.accuracy,
      trainModeGap: trainMode.accuracy - m.accuracy,
      movingStatsChanged,
      bnLayersChanged,
      ...(cm ? { compareModes: cm } : {}),
      seconds,
    };
  } finally {
    y.dispose();
    stitched?.dispose();
    head?.dispose();
    source.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs the experiment. The backend must be active already (`resolveBackend`); the native
 * `tensorflow` backend is the one measured in docs/BATCHNORM.md.
 */
export async function runBnGap(options: BnGapOptions = {}): Promise<BnGapResult> {
  const o = resolveOptions(options);
  const all = await openDataSource(o.data, { classNames: FASHION_MNIST_CLASSES });
  const selected = selectSamples(all, { classes: o.classes, perClass: o.perClass, seed: o.seed });
  const probe = await loadModel(MODEL);
  const bnLayers = batchNormLayers(probe).length;
  const inputShape = probe.inputs[0]!.shape;
  probe.dispose();
  const size: [number, number] = [inputShape[1]!, inputShape[2]!];
  o.log(`data: ${selected.samples.length} images of ${selected.labels.join(', ')} from ${all.root}`);
  const { x, labels } = await loadImages(selected, size);
  const result: BnGapResult = {
    settings: {
      model: MODEL,
      boundary: BOUNDARY,
      head: HEAD,
      data: all.root,
      classes: selected.labels,
      perClass: o.perClass,
      samples: selected.samples.length,
      epochs: o.epochs,
      batchSize: o.batchSize,
      learningRate: o.learningRate,
      optimizer: 'adam',
      seed: o.seed,
      bnLayers,
      backend: tf.getBackend(),
      evaluatedOn: 'training data',
    },
  };
  try {
    for (const mode of BN_GAP_MODES) {
      if (!o.modes.includes(mode)) continue;
      o.log(`${mode}: start`);
      result[mode] = mode === 'splitfit' ? await runSplitfit(o, selected, x, labels) : await runFit(mode, o, x, labels);
    }
  } finally {
    x.dispose();
  }
  return result;
}

/** A small fixed-width table of the result. */
export function formatBnGap(result: BnGapResult): string {
  const s = result.settings;
  const f = (v: number | undefined, d = 4): string => (v === undefined ? '—' : v.toFixed(d).replace(/^-(0\.0+)$/, '$1')); // float32 noise: no "-0.0000"
  const header = ['mode', 'fit acc', 'fit loss', 'train-mode acc', 'inference acc', 'inference loss', 'AUC', 'gap', 'BN stats', 'seconds'];
  const rows: string[][] = [header];
  for (const mode of BN_GAP_MODES) {
    const r = result[mode];
    if (!r) continue;
    rows.push([
      mode,
      f(r.fitAccuracy),
      f(r.fitLoss),
      f(r.trainMode?.accuracy),
      f(r.inferenceAccuracy),
      f(r.inferenceLoss),
      f(r.auc),
      f(r.gap),
      r.movingStatsChanged ? `changed (${r.bnLayersChanged}/${s.bnLayers})` : 'unchanged',
      f(r.seconds, 1),
    ]);
  }
  const widths = header.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]): string => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const out = [
    `${s.model} cut at ${s.boundary} (${s.bnLayers} BN layers), head ${s.head}; ${s.classes.join(' vs ')}, ${s.samples} images (${s.perClass}/class), ` +
      `${s.epochs} epochs, batch ${s.batchSize}, adam ${s.learningRate}, seed ${s.seed}, backend ${s.backend}; evaluated on the training data`,
    line(header),
    ...rows.slice(1).map(line),
  ];
  const cms = BN_GAP_MODES.filter((m) => result[m]?.compareModes);
  if (cms.length > 0) {
    out.push('', 'compareModes on the final model (what `splitfit evaluate --compare-modes` reports):');
    for (const m of cms) {
      const c = result[m]!.compareModes!;
      out.push(`  ${m.padEnd(8)}  training mode acc ${f(c.training.accuracy)}, inference mode acc ${f(c.inference.accuracy)}, gap ${f(c.accuracyGap)}`);
    }
  }
  return out.join('\n');
}
