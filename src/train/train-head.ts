import * as tf from '@tensorflow/tfjs';
import { join, resolve } from 'node:path';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError } from '../errors.js';
import { extractFeatures } from '../extract/extract.js';
import { prepareBase } from '../extract/prepare.js';
import { readRun, type RunMeta, saveRun } from '../extract/run-meta.js';
import { openDataSource } from '../data/sources.js';
import type { DataSource } from '../data/types.js';
import { buildHead, defaultHeadSpec } from '../model/head-spec.js';
import { saveModel, writeAtomic } from '../model/io.js';
import { batchNormLayers, lockBatchNorm } from '../model/lock-batchnorm.js';
import { stitch } from '../model/stitch.js';
import { type BatchSource, memoryBatches, streamBatches } from './batches.js';
import { type EntrySelector, type FeatureSet, featureSize, loadFeatureSet, PLAIN } from './feature-set.js';
import { classificationMetrics } from './metrics.js';
import { epochSeed, rng, shuffled } from '../random.js';
import { makeOptimizer, OPTIMIZERS, type OptimizerName, trainStep } from './step.js';

export interface TrainHeadOptions {
  /** Cache directory (or open cache) written by `cache-features`. @default './cache' */
  cache?: string | FeatureCache;
  /** Output folder for the stitched model, head, history.json and splitfit.json. */
  out: string;
  /** Which cached run to train on. @default the last `cache-features` run */
  fingerprint?: string;
  /** Head spec (see `parseHeadSpec`). @default 'gap,dense:N:softmax' for feature maps, 'dense:N:softmax' for vectors */
  head?: string;
  /** @default 10 */
  epochs?: number;
  /** @default 32 */
  batchSize?: number;
  /** @default 'adam' */
  optimizer?: OptimizerName;
  /** @default 0.001 */
  learningRate?: number;
  /** Fraction of samples held out (seeded) for validation. @default 0 */
  validationSplit?: number;
  /** A separate validation data set (folder, manifest or IDX); its features are extracted into the same cache. */
  validationData?: string;
  /** Stop when the monitored loss (validation loss if any, else training loss) has not improved for `patience` epochs. */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Per-class loss weights, or 'balanced' (n / (k · count)). @default equal weights */
  classWeights?: 'balanced' | readonly number[];
  /** Seeds the head's initial weights, the validation split and every epoch's shuffle. @default 0 */
  seed?: number;
  /** Hold features in memory when they fit this many bytes, else stream them from LevelDB. @default 1 GiB */
  memoryBudget?: number;
  /**
   * Freeze the BatchNormalization layers an `original:` head takes from the source model and run
   * them in inference mode (`lockBatchNorm`), as Keras advises for fine-tuning on small data;
   * the other layers still train. @default false
   */
  lockBatchNorm?: boolean;
  /** With an augmented cache: every R epochs, replace the views by a new generation (extracted while training). */
  refreshEvery?: number;
  /** Batch size of the base during refresh extractions. @default the prepared base's suggestion */
  extractBatchSize?: number;
  /** The source model, when `cache-features` ran on an in-memory model. */
  model?: tf.LayersModel;
  onProgress?: (event: TrainEvent) => void;
}

export type TrainEvent =
  | { type: 'start'; samples: number; validation: number; mode: 'memory' | 'stream'; epochs: number }
  | ({ type: 'epoch'; epoch: number } & EpochLog)
  | { type: 'extract'; generation: number; done: number; total: number }
  | { type: 'generation'; generation: number; epoch: number; waitedSeconds: number; extractSeconds: number };

export interface EpochLog {
  loss: number;
  acc: number;
  valLoss?: number;
  valAcc?: number;
  valAuc?: number;
  seconds: number;
  /** Generation of the features trained on in this epoch. */
  generation: number;
  /** How many samples were read from each view index in this epoch. */
  viewsRead: number[];
}

export interface History {
  loss: number[];
  acc: number[];
  valLoss?: number[];
  valAcc?: number[];
  valAuc?: number[];
  seconds: number[];
  viewsRead: number[][];
  /** Generations trained on: from which epoch (1-based), and how long training waited for its extraction. */
  generations: { generation: number; startEpoch: number; waitedSeconds: number; extractSeconds?: number }[];
}

export interface TrainHeadResult {
  epochs: number;
  history: History;
  /** Feature generations trained on (1 without augmentation refreshes). */
  generations: number;
  out: string;
  backend: string;
  fingerprint: string;
  labels: string[];
  mode: 'memory' | 'stream';
  head: tf.LayersModel;
  model: tf.LayersModel;
}

/** Sidecar describing a stitched model: what it was cut from and how to feed it. */
export interface SplitfitManifest {
  format: 'splitfit/1';
  model: string;
  boundary: string;
  fingerprint: string;
  labels: string[];
  preprocess: string;
  inputSize: [number, number];
  channels: 1 | 3;
  featureShape: number[];
  head: string;
  seed: number;
  backend: string;
  createdAt: string;
}

type Defaulted = 'epochs' | 'batchSize' | 'optimizer' | 'learningRate' | 'validationSplit' | 'seed' | 'memoryBudget';
const DEFAULTS: Required<Pick<TrainHeadOptions, Defaulted>> = {
  epochs: 10,
  batchSize: 32,
  optimizer: 'adam',
  learningRate: 1e-3,
  validationSplit: 0,
  seed: 0,
  memoryBudget: 2 ** 30,
};

export function validateTrainHeadOptions(options: TrainHeadOptions): void {
  const o = { ...DEFAULTS, ...options };
  const positiveInt = (name: string, v: number): void => {
    if (!Number.isInteger(v) || v <= 0) throw new SplitfitError('SPLITFIT_USAGE', `${name} must be a positive integer, got ${v}`);
  };
  positiveInt('--epochs', o.epochs);
  positiveInt('--batch-size', o.batchSize);
  if (!(o.learningRate > 0) || !Number.isFinite(o.learningRate)) throw new SplitfitError('SPLITFIT_USAGE', `--lr must be a positive number, got ${o.learningRate}`);
  if (!(o.validationSplit >= 0 && o.validationSplit < 1)) throw new SplitfitError('SPLITFIT_USAGE', `--validation-split must be in [0, 1), got ${o.validationSplit}`);
  if (o.validationSplit > 0 && o.validationData) throw new SplitfitError('SPLITFIT_USAGE', 'give either --validation-split or --validation-data, not both');
  if (!(OPTIMIZERS as readonly string[]).includes(o.optimizer)) {
    throw new SplitfitError('SPLITFIT_USAGE', `unknown optimizer "${o.optimizer}"; choose one of: ${OPTIMIZERS.join(', ')}`);
  }
  if (o.earlyStopping) positiveInt('early stopping patience', o.earlyStopping.patience);
  if (o.refreshEvery !== undefined) positiveInt('--refresh-every', o.refreshEvery);
  if (!o.out) throw new SplitfitError('SPLITFIT_USAGE', 'missing --out <dir>');
}

/**
 * Trains a head on cached features, then stitches it onto the base and writes the result.
 * Epochs read features only: the base never runs here (except to extract `validationData`).
 */
export async function trainHead(options: TrainHeadOptions): Promise<TrainHeadResult> {
  validateTrainHeadOptions(options);
  const cache = typeof options.cache === 'object' ? options.cache : await FeatureCache.open(options.cache ?? './cache');
  try {
    return await trainFromCache(cache, { ...DEFAULTS, ...options });
  } finally {
    if (typeof options.cache !== 'object') await cache.close();
  }
}

type Resolved = TrainHeadOptions & Required<Pick<TrainHeadOptions, Defaulted>>;

async function trainFromCache(cache: FeatureCache, o: Resolved): Promise<TrainHeadResult> {
  let run = await readRun(cache, o.fingerprint === undefined ? {} : { fingerprint: o.fingerprint });
  const labeled = run.samples.filter((s) => s.label >= 0);
  const k = run.labels.length;
  if (k < 2) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `training needs at least 2 classes; the cached data set ${run.data} has ${k}`);
  if (o.refreshEvery !== undefined && run.augment === undefined) {
    throw new SplitfitError('SPLITFIT_USAGE', '--refresh-every needs a cache built with `cache-features --augment <spec>`');
  }
  const selector = (generation: number): EntrySelector => ({ ...(run.augment === undefined ? {} : { aug: run.augment }), generation, views: run.views });
  const cachedIds = [...new Set(labeled.map((s) => s.id))];
  const missing = new Set(await cache.missingSampleIds(run.fingerprint, cachedIds, selector(run.generation)));
  if (missing.size === cachedIds.length) {
    throw new SplitfitError('SPLITFIT_CACHE_MISMATCH', `the cache has no feature entries for fingerprint ${run.fingerprint.slice(0, 12)}; rerun \`splitfit cache-features\``);
  }
  const usable = labeled.filter((s) => !missing.has(s.id)); // samples that failed to decode have no entry

  // Validation: a seeded hold-out, or a second data set extracted with the same base.
  let train = usable;
  let validation: { id: string; label: number }[] = [];
  if (o.validationSplit > 0) {
    const order = shuffled(usable, rng(epochSeed(o.seed, -1)));
    const nVal = Math.max(1, Math.round(order.length * o.validationSplit));
    validation = order.slice(order.length - nVal);
    train = order.slice(0, order.length - nVal);
  } else if (o.validationData) {
    validation = await extractValidation(cache, run, o);
  }

  const base = await prepareBase({
    model: o.model ?? run.model,
    boundary: run.boundary,
    inputSize: run.inputSize,
    preprocess: run.preprocess,
    dtype: run.dtype,
  });
  if (base.fingerprint !== run.fingerprint) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `model ${run.model} no longer matches the cached features (fingerprint ${base.fingerprint.slice(0, 12)} ≠ ${run.fingerprint.slice(0, 12)}); rerun \`splitfit cache-features\``,
    );
  }

  // A crash after a refresh was committed may have left the previous generation behind.
  if (run.augment !== undefined && run.generation > 0) await cache.deleteGeneration(run.fingerprint, run.augment, run.generation - 1);

  const feed = async (generation: number): Promise<Feed> => {
    const sel = selector(generation);
    const bytes = train.length * run.views * featureSize(run.featureShape) * 4;
    const source: BatchSource =
      bytes <= o.memoryBudget
        ? memoryBatches(await loadFeatureSet(cache, run.fingerprint, train, run.featureShape, sel), o.batchSize, o.seed)
        : streamBatches(cache, run.fingerprint, new Map(train.map((s) => [s.id, s.label])), run.featureShape, sel, { batchSize: o.batchSize, seed: o.seed });
    // Validation reads view 0 (the plain image when cached with plainView0) of the current generation.
    const valSel = o.validationData ? PLAIN : { ...sel, views: 1 };
    const valSet = validation.length > 0 ? await loadFeatureSet(cache, run.fingerprint, validation, run.featureShape, valSel) : undefined;
    return { source, valSet };
  };

  const refresher: Refresher | undefined =
    o.refreshEvery === undefined
      ? undefined
      : {
          every: o.refreshEvery,
          extract: async (generation) => {
            const data = await reopenData(run);
            const r = await extractFeatures({
              model: base.source,
              prepared: base,
              data,
              cache,
              augment: run.augment!,
              views: run.views,
              generation,
              seed: run.seed,
              plainView0: run.plainView0,
              record: false,
              batchSize: o.extractBatchSize ?? base.batchSize,
              onProgress: (e) => {
                if (e.type === 'extract') o.onProgress?.({ type: 'extract', generation, done: e.done, total: e.total });
              },
            });
            return r.extractSeconds;
          },
          commit: async (generation) => {
            // The new generation is complete: make it the one training reads, then drop the old one.
            run = { ...run, generation };
            await saveRun(cache, run, { current: false }); // the pointer names the run id, not a copy
            await cache.deleteGeneration(run.fingerprint, run.augment!, generation - 1);
          },
          feed,
        };

  const headSpec = o.head ?? defaultHeadSpec(run.featureShape);
  const head = await buildHead(base.source, run.boundary, run.featureShape, { spec: headSpec, numClasses: k, seed: o.seed });
  if (o.lockBatchNorm) {
    for (const layer of batchNormLayers(head)) if (!layer.name.startsWith('head_')) layer.trainable = false;
    lockBatchNorm(head);
  }
  const weights = classWeights(o.classWeights, train, k);
  const first = await feed(run.generation);
  o.onProgress?.({ type: 'start', samples: first.source.size, validation: validation.length, mode: first.source.mode, epochs: o.epochs });

  const history = await fitEpochs(head, first, run.generation, refresher, k, weights, o);
  const model = await stitch(base.base, head);
  const manifest: SplitfitManifest = {
    format: 'splitfit/1',
    model: run.model,
    boundary: run.boundary,
    fingerprint: run.fingerprint,
    labels: run.labels,
    preprocess: run.preprocess,
    inputSize: run.inputSize,
    channels: run.channels,
    featureShape: run.featureShape,
    head: headSpec,
    seed: o.seed,
    backend: tf.getBackend(),
    createdAt: new Date().toISOString(),
  };
  await saveModel(model, o.out);
  await saveModel(head, join(o.out, 'head'));
  await writeAtomic(join(o.out, 'history.json'), JSON.stringify(history, null, 2));
  await writeAtomic(join(o.out, 'splitfit.json'), JSON.stringify(manifest, null, 2));
  return {
    epochs: history.loss.length,
    history,
    generations: history.generations.length,
    out: resolve(o.out),
    backend: tf.getBackend(),
    fingerprint: run.fingerprint,
    labels: run.labels,
    mode: first.source.mode,
    head,
    model,
  };
}

/** The data set of a run, reopened to extract new generations; only the run's samples. */
async function reopenData(run: RunMeta): Promise<DataSource> {
  const source = await openDataSource(run.data, run.classNames ? { classNames: run.classNames } : {});
  const ids = new Set(run.samples.map((s) => s.id));
  return { ...source, samples: source.samples.filter((s) => ids.has(s.id)) };
}

async function extractValidation(cache: FeatureCache, run: RunMeta, o: Resolved): Promise<{ id: string; label: number }[]> {
  const prepared = await prepareBase({ model: o.model ?? run.model, boundary: run.boundary, inputSize: run.inputSize, preprocess: run.preprocess, dtype: run.dtype });
  const source = await openDataSource(o.validationData!);
  const unknown = source.labels.filter((l) => !run.labels.includes(l));
  if (unknown.length > 0) {
    throw new SplitfitError('SPLITFIT_USAGE', `validation data has classes the training data lacks: ${unknown.join(', ')}`);
  }
  // Recorded as a data set of its own ('data'): the current training run stays the current one.
  await extractFeatures({ ...prepared, model: prepared.source, prepared, data: source, cache, record: 'data' });
  return source.samples.map((s) => ({ id: s.id, label: run.labels.indexOf(s.label!) }));
}

function classWeights(spec: TrainHeadOptions['classWeights'], train: readonly { label: number }[], k: number): number[] | undefined {
  if (spec === undefined) return undefined;
  if (spec === 'balanced') {
    const counts = new Array<number>(k).fill(0);
    for (const s of train) counts[s.label]!++;
    return counts.map((c) => (c === 0 ? 0 : train.length / (k * c)));
  }
  if (spec.length !== k || spec.some((w) => !(w >= 0))) {
    throw new SplitfitError('SPLITFIT_USAGE', `class weights need ${k} non-negative numbers (one per class), got [${spec.join(', ')}]`);
  }
  return [...spec];
}

interface Feed {
  source: BatchSource;
  valSet: FeatureSet | undefined;
}

/** How train-head refreshes augmented views: extract the next generation, commit it, read it. */
interface Refresher {
  every: number;
  extract(generation: number): Promise<number>;
  commit(generation: number): Promise<void>;
  feed(generation: number): Promise<Feed>;
}

/** Lets timers and I/O callbacks (a background extraction) run between training steps. */
const yieldToEventLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

async function fitEpochs(
  head: tf.LayersModel,
  firstFeed: Feed,
  firstGeneration: number,
  refresher: Refresher | undefined,
  k: number,
  weights: number[] | undefined,
  o: Resolved,
): Promise<History> {
  const optimizer = makeOptimizer(o.optimizer, o.learningRate);
  const history: History = {
    loss: [],
    acc: [],
    seconds: [],
    viewsRead: [],
    generations: [{ generation: firstGeneration, startEpoch: 1, waitedSeconds: 0 }],
    ...(firstFeed.valSet ? { valLoss: [], valAcc: [], valAuc: [] } : {}),
  };
  let feed = firstFeed;
  let generation = firstGeneration;
  let next: Promise<number> | undefined;
  let best = Infinity;
  let sinceBest = 0;
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      if (refresher && epoch > 0 && epoch % refresher.every === 0) {
        const t = performance.now();
        const extractSeconds = await next!;
        next = undefined;
        const waitedSeconds = (performance.now() - t) / 1000;
        generation++;
        await refresher.commit(generation);
        feed = await refresher.feed(generation);
        history.generations.push({ generation, startEpoch: epoch + 1, waitedSeconds, extractSeconds });
        o.onProgress?.({ type: 'generation', generation, epoch: epoch + 1, waitedSeconds, extractSeconds });
      }
      if (refresher && epoch % refresher.every === 0 && epoch + refresher.every < o.epochs) {
        // Extract the next generation while this one trains; a failure surfaces when it is awaited.
        next = refresher.extract(generation + 1);
        next.catch(() => undefined);
      }
      const t0 = performance.now();
      let lossSum = 0;
      let correct = 0;
      let n = 0;
      const viewsRead: number[] = [];
      for await (const batch of feed.source.batches(epoch)) {
        const r = trainStep(head, optimizer, batch, k, weights);
        lossSum += r.loss * batch.labels.length;
        correct += r.correct;
        n += batch.labels.length;
        for (const v of batch.views) viewsRead[v] = (viewsRead[v] ?? 0) + 1;
        if (next || feed.source.mode === 'stream') await yieldToEventLoop();
      }
      const log: EpochLog = { loss: lossSum / n, acc: correct / n, seconds: 0, generation, viewsRead: Array.from(viewsRead, (c) => c ?? 0) };
      if (feed.valSet) {
        const m = evaluateHead(head, feed.valSet, k, o.batchSize);
        log.valLoss = m.loss;
        log.valAcc = m.accuracy;
        if (m.auc !== undefined) log.valAuc = m.auc;
        history.valLoss!.push(m.loss);
        history.valAcc!.push(m.accuracy);
        if (m.auc !== undefined) history.valAuc!.push(m.auc);
      }
      log.seconds = (performance.now() - t0) / 1000;
      history.loss.push(log.loss);
      history.acc.push(log.acc);
      history.seconds.push(log.seconds);
      history.viewsRead.push(log.viewsRead);
      o.onProgress?.({ type: 'epoch', epoch: epoch + 1, ...log });
      if (o.earlyStopping) {
        const monitored = log.valLoss ?? log.loss;
        if (monitored < best - (o.earlyStopping.minDelta ?? 0)) {
          best = monitored;
          sinceBest = 0;
        } else if (++sinceBest >= o.earlyStopping.patience) {
          break;
        }
      }
    }
    // Early stopping may leave an extraction running: let it finish so the cache closes cleanly.
    if (next) await next;
  } finally {
    optimizer.dispose();
  }
  return history;
}

/** Inference-mode metrics of a head on in-memory features. */
export function evaluateHead(head: tf.LayersModel, set: FeatureSet, k: number, batchSize = 256): ReturnType<typeof classificationMetrics> {
  const probs = tf.tidy(() => {
    const x = tf.tensor(set.x, [set.ids.length, ...set.featureShape]);
    return (head.predict(x, { batchSize }) as tf.Tensor).dataSync() as Float32Array;
  });
  return classificationMetrics(probs, set.labels, k);
}
