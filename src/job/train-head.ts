import * as tf from '@tensorflow/tfjs';
import { resolve } from 'node:path';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError, throwIfAborted } from '../errors.js';
import { type PreparedBase, prepareBase } from '../extract/prepare.js';
import type { RunMeta } from '../extract/run-meta.js';
import { shortFingerprint } from '../cache/keys.js';
import { buildHead, checkHeadSize, defaultHeadSpec, parseHeadSpec } from '../model/head-spec.js';
import { batchNormLayers, lockBatchNorm } from '../model/lock-batchnorm.js';
import { stitch } from '../model/stitch.js';
import { checkOutputFolder, writeOutputFolder } from '../output/folder.js';
import { MANIFEST_FORMAT, type SplitfitManifest } from '../output/manifest.js';
import { type BatchSource, memoryBatches, streamBatches } from '../train/batches.js';
import { type EntrySelector, type FeatureSet, featureSize, loadFeatureSet, PLAIN } from '../train/feature-set.js';
import { type Feed, fitEpochs, type History } from '../train/fit.js';
import { type ResolvedTrainHeadOptions, type TrainHeadOptions, validateTrainHeadOptions } from './options.js';
import { dropScratchGenerations, makeRefresher, reopenRunData } from './refresh.js';
import { trainReportFiles } from './report-data.js';
import { readTrainingRun } from './run.js';
import { classWeightsFor, extractValidationData, splitValidation, type LabeledId } from './validation.js';

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

/**
 * The train-head job: reads the recorded run, prepares the base once, sets up validation and
 * refreshes, fits the head on cached features (the base never runs here, except to extract
 * `validationData` or refreshed views), stitches, and commits the output folder in one step.
 */
export async function trainHead(options: TrainHeadOptions): Promise<TrainHeadResult> {
  const o = validateTrainHeadOptions(options);
  await checkOutputFolder(o.out);
  const cache = typeof o.cache === 'object' ? o.cache : await FeatureCache.open(o.cache ?? './cache');
  try {
    return await runJob(cache, o);
  } finally {
    if (typeof o.cache !== 'object') await cache.close();
  }
}

async function runJob(cache: FeatureCache, o: ResolvedTrainHeadOptions): Promise<TrainHeadResult> {
  const started = performance.now();
  const { run, usable } = await readTrainingRun(cache, o.fingerprint);
  const k = run.labels.length;
  if (o.refreshEvery !== undefined && run.augment === undefined) {
    throw new SplitfitError('SPLITFIT_USAGE', '`refreshEvery` needs a cache built with `cache-features --augment <spec>`', { option: 'refreshEvery' });
  }
  // The head spec is checked before the base loads: a bad --head costs nothing.
  const headSpec = o.head ?? defaultHeadSpec(run.featureShape);
  const ops = parseHeadSpec(headSpec);
  if (!ops.some((op) => op.kind === 'original')) checkHeadSize(ops, run.featureShape, k, headSpec);
  const base = await prepareRunBase(run, o);
  const selector = (generation: number): EntrySelector => ({ ...(run.augment === undefined ? {} : { aug: run.augment }), generation, views: run.views });

  // Validation: a seeded hold-out, or a second data set extracted with the same base.
  const { train, validation } =
    o.validationData !== undefined
      ? { train: usable, validation: await extractValidationData(cache, run, base, o.validationData, o.extractBatchSize, o.signal) }
      : splitValidation(usable, o.validationSplit, o.seed);
  const weights = classWeightsFor(o.classWeights, train, k);

  // Refreshed views are extracted from the data set as it is now: check it first, not at the first refresh.
  const data = o.refreshEvery === undefined ? undefined : await reopenRunData(run, new Set(usable.map((s) => s.id)));
  // Caches written before refreshes kept their generation may hold the generation before the recorded one.
  if (run.augment !== undefined && run.generation > 0) await cache.deleteGeneration(run.fingerprint, run.augment, run.generation - 1);

  let lastValSet: FeatureSet | undefined; // what the last epoch was validated on, for the report
  const feed = async (generation: number): Promise<Feed> => {
    const sel = selector(generation);
    const bytes = train.length * run.views * featureSize(run.featureShape) * 4;
    const source: BatchSource =
      bytes <= o.memoryBudget
        ? memoryBatches(await loadFeatureSet(cache, run.fingerprint, train, run.featureShape, sel), o.batchSize, o.seed)
        : streamBatches(cache, run.fingerprint, new Map(train.map((s) => [s.id, s.label])), run.featureShape, sel, { batchSize: o.batchSize, seed: o.seed });
    // Validation reads view 0 (the plain image when cached with plainView0) of the current generation.
    const valSel = o.validationData !== undefined ? PLAIN : { ...sel, views: 1 };
    const valSet = validation.length > 0 ? await loadFeatureSet(cache, run.fingerprint, validation, run.featureShape, valSel) : undefined;
    lastValSet = valSet;
    return { source, valSet };
  };
  const refresher =
    data === undefined
      ? undefined
      : makeRefresher({
          cache,
          run,
          base,
          every: o.refreshEvery!,
          data,
          batchSize: o.extractBatchSize ?? base.batchSize,
          selector,
          feed,
          signal: o.signal,
          onExtract: (generation, done, total) => o.onProgress?.({ type: 'extract', generation, done, total }),
        });

  const head = await buildHead(base.source, run.boundary, run.featureShape, { spec: headSpec, numClasses: k, seed: o.seed });
  if (o.lockBatchNorm) {
    for (const layer of batchNormLayers(head)) if (!layer.name.startsWith('head_')) layer.trainable = false;
    lockBatchNorm(head);
  }
  const first = await feed(run.generation);
  o.onProgress?.({ type: 'start', samples: first.source.size, validation: validation.length, mode: first.source.mode, epochs: o.epochs });

  const history = await fitEpochs(head, first, run.generation, refresher, k, {
    epochs: o.epochs,
    batchSize: o.batchSize,
    optimizer: o.optimizer,
    learningRate: o.learningRate,
    classWeights: weights,
    earlyStopping: o.earlyStopping,
    signal: o.signal,
    onEpoch: (epoch, log) => o.onProgress?.({ type: 'epoch', epoch, ...log }),
    onGeneration: (g) => o.onProgress?.({ type: 'generation', generation: g.generation, epoch: g.startEpoch, waitedSeconds: g.waitedSeconds, extractSeconds: g.extractSeconds ?? 0 }),
  });
  if (data !== undefined) await dropScratchGenerations(cache, run, history.generations.at(-1)!.generation + 1);
  throwIfAborted(o.signal);

  // Folded: the exported base has no BatchNorm or Dropout left, so a further plain `fit` cannot fall into the trap.
  const model = await stitch(base.base, head, { foldBatchNorm: o.foldBatchNorm });
  const manifest: SplitfitManifest = {
    format: MANIFEST_FORMAT,
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
    data: run.data,
    baseExport: o.foldBatchNorm ? 'folded' : 'original',
    training: {
      epochs: history.loss.length,
      batchSize: o.batchSize,
      optimizer: o.optimizer,
      learningRate: o.learningRate,
      validation: o.validationData !== undefined ? 'data' : o.validationSplit > 0 ? 'split' : 'none',
      samples: train.length,
      validationSamples: validation.length,
    },
  };
  const report = await trainReportFiles({ head, run, options: o, manifest, history, valSet: lastValSet, jobSeconds: (performance.now() - started) / 1000 });
  await writeOutputFolder(o.out, { model, head, history, manifest, report });
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

/** The base the run was cached with, prepared once for the whole job; it must still give the run's fingerprint. */
async function prepareRunBase(run: RunMeta, o: ResolvedTrainHeadOptions): Promise<PreparedBase> {
  const base = await prepareBase({ model: o.model ?? run.model, boundary: run.boundary, inputSize: run.inputSize, preprocess: run.preprocess, dtype: run.dtype });
  if (base.fingerprint !== run.fingerprint) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `model ${run.model} no longer matches the cached features (fingerprint ${shortFingerprint(base.fingerprint)} ≠ ${shortFingerprint(run.fingerprint)}); rerun \`splitfit cache-features\``,
    );
  }
  return base;
}

