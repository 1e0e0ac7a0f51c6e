import * as tf from '@tensorflow/tfjs';
import { resolve } from 'node:path';
import { warnIfSlowBackend } from '../backend/resolve.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError, throwIfAborted } from '../errors.js';
import { type PreparedBase, prepareBase } from '../extract/prepare.js';
import { type RunMeta, selectorOf } from '../extract/run-meta.js';
import { shortFingerprint } from '../cache/keys.js';
import { checkHeadForTask, checkHeadSize, defaultHeadSpec, parseHeadSpec } from '../model/head-spec.js';
import { batchNormLayers, lockBatchNorm } from '../model/lock-batchnorm.js';
import { baseFormOf, stitchAs } from './export.js';
import { checkOutputFolder, SEARCH_FILE, writeOutputFolder } from '../output/folder.js';
import { MANIFEST_FORMAT, type SplitfitManifest } from '../output/manifest.js';
import { type BatchSource, memoryBatches, pooledBatches, pooledOnlyBatches, streamBatches } from '../train/batches.js';
import { type EntrySelector, type FeatureSet, featureSize, loadFeatureSet, loadPooledFeatureSet, PLAIN, poolFeatureSet } from '../train/feature-set.js';
import { type Feed, fitEpochs, type History } from '../train/fit.js';
import { type AutoChoice, chooseAutomatically } from './auto.js';
import { buildTrainable, type HeadContext, planHead, TrainingSets } from './head-trainer.js';
import { type SearchReport, searchHeads } from './search.js';
import { type ResolvedTrainHeadOptions, type TrainHeadOptions, validateTrainHeadOptions } from './options.js';
import { dropScratchGenerations, makeRefresher, reopenRunData } from './refresh.js';
import { trainReportFiles } from './report-data.js';
import { readTrainingRun } from './run.js';
import { checkTaskOptions, finishTaskHead, prepareTargets, type TaskRecord, taskLossOptions, taskOfRun } from './task.js';
import { classWeightsFor, extractValidationData, splitValidation, type LabeledId } from './validation.js';

/** history.json: the fit's history, plus what train-head chose on its own. */
export type JobHistory = History & { auto?: AutoChoice; search?: { winner: SearchReport['winner']; file: string }; task?: TaskRecord };

/** The settings the final fit ran with, given or chosen: with them as explicit options, train-head trains the same head. */
export interface ChosenSettings {
  head: string;
  learningRate: number;
  epochs: number;
  weightDecay: number;
  labelSmoothing: number;
}

export interface TrainHeadResult {
  epochs: number;
  history: JobHistory;
  settings: ChosenSettings;
  auto?: AutoChoice;
  search?: SearchReport;
  /** Feature generations trained on (1 without augmentation refreshes). */
  generations: number;
  out: string;
  backend: string;
  fingerprint: string;
  labels: string[];
  /** The run's task and what training recorded about it (target scale, thresholds). */
  task: TaskRecord;
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
  const task = taskOfRun(run);
  checkTaskOptions(task, o, run.data);
  if (o.refreshEvery !== undefined && run.augment === undefined) {
    throw new SplitfitError('SPLITFIT_USAGE', '`refreshEvery` needs a cache built with `cache-features --augment <spec>`', { option: 'refreshEvery' });
  }
  // A given head spec is checked before the base loads: a bad --head costs nothing.
  if (o.head !== undefined) {
    const ops = parseHeadSpec(o.head);
    if (!ops.some((op) => op.kind === 'original')) checkHeadSize(ops, run.featureShape, k, o.head);
    checkHeadForTask(ops, task, o.head);
  }
  const base = await prepareRunBase(run, o);
  const selector = (generation: number): EntrySelector => selectorOf(run, generation);

  // Validation: a seeded hold-out, or a second data set extracted with the same base.
  const split =
    o.validationData !== undefined
      ? { train: usable, validation: await extractValidationData(cache, run, base, o.validationData, o.extractBatchSize, o.signal) }
      : splitValidation(usable, o.validationSplit, o.seed);
  // Regression targets are standardised on the training targets here, before any feature is read.
  const targets = prepareTargets(task, split.train, split.validation, k, o);
  const { train, validation } = targets;
  const weights = classWeightsFor(o.classWeights, train, k);
  const lossOptions = taskLossOptions(task, o, targets);

  // Refreshed views are extracted from the data set as it is now: check it first, not at the first refresh.
  const data = o.refreshEvery === undefined ? undefined : await reopenRunData(run, new Set(usable.map((s) => s.id)));
  // Caches written before refreshes kept their generation may hold the generation before the recorded one.
  if (run.augment !== undefined && run.generation > 0) await cache.deleteGeneration(run.fingerprint, run.augment, run.generation - 1);

  // Fixed settings and a gap-first head: the training maps are only ever used pooled, so they are loaded pooled.
  const fixedHead = o.search === false && o.learningRate !== undefined && o.epochs !== undefined && o.refreshEvery === undefined ? (o.head ?? defaultHeadSpec(run.featureShape)) : undefined;
  const loadPooled = fixedHead !== undefined && planHead(fixedHead, run.featureShape, o.poolFeatures).pooledSpec !== undefined;
  const features = featureLoader(cache, run, o, train, validation, loadPooled);
  const loadFeed = features.load;
  const first = await loadFeed(run.generation);
  const ctx: HeadContext = { source: base.source, boundary: run.boundary, featureShape: run.featureShape, numClasses: k, task };
  const sets = first.set ? new TrainingSets(first.set) : undefined;

  // What to train: the search's winner, or the given head with automatic values for what was not given.
  const settings = await chooseSettings(ctx, sets, weights, lossOptions, o);
  const plan = planHead(settings.head, run.featureShape, o.poolFeatures);
  const pooled = (f: Feed): Feed => (plan.pooledSpec === undefined ? f : { source: pooledBatches(f.source, run.featureShape), valSet: f.valSet && poolFeatureSet(f.valSet) });
  const feed = async (generation: number): Promise<Feed> => pooled((await loadFeed(generation)).feed);
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

  const trainable = await buildTrainable(ctx, plan, o.seed);
  const head = trainable.head;
  if (o.lockBatchNorm) {
    for (const layer of batchNormLayers(head)) if (!layer.name.startsWith('head_')) layer.trainable = false;
    lockBatchNorm(head);
  }
  // In memory, the pooled set is pooled once for the whole run (and shared with the search and the sweep).
  const firstFeed: Feed =
    sets && plan.pooledSpec !== undefined ? { source: memoryBatches(sets.for(plan), o.batchSize, o.seed), valSet: first.feed.valSet && poolFeatureSet(first.feed.valSet) } : pooled(first.feed);
  warnIfSlowBackend(o.onProgress && ((message) => o.onProgress!({ type: 'warning', message })));
  o.onProgress?.({ type: 'start', samples: firstFeed.source.size, validation: validation.length, mode: firstFeed.source.mode, epochs: settings.epochs });

  const fitted = await fitEpochs(trainable.trained, firstFeed, run.generation, refresher, k, {
    ...fitSettingsOf(settings, o),
    ...lossOptions,
    classWeights: weights,
    earlyStopping: o.earlyStopping,
    seed: o.seed,
    signal: o.signal,
    onEpoch: (epoch, log) => o.onProgress?.({ type: 'epoch', epoch, ...log }),
    onGeneration: (g) => o.onProgress?.({ type: 'generation', generation: g.generation, epoch: g.startEpoch, waitedSeconds: g.waitedSeconds, extractSeconds: g.extractSeconds ?? 0 }),
  });
  trainable.finish();
  if (trainable.trained !== head) trainable.trained.dispose();
  // Regress: the target scale goes into the last layer; multilabel: thresholds (tuned on validation data when asked).
  const taskRecord = finishTaskHead(task, head, targets, features.lastValSet(), k, o);
  const history: JobHistory = {
    ...fitted,
    ...(task === 'classify' ? {} : { task: taskRecord }),
    ...(settings.auto ? { auto: settings.auto } : {}),
    ...(settings.search ? { search: { winner: settings.search.winner, file: SEARCH_FILE } } : {}),
  };
  const headSpec = settings.head;
  if (data !== undefined) await dropScratchGenerations(cache, run, history.generations.at(-1)!.generation + 1);
  throwIfAborted(o.signal);

  // Folded: the exported base has no BatchNorm or Dropout left, so a further plain `fit` cannot fall into the trap.
  // Quantized: BN as per-channel affine layers instead (see baseFormOf).
  const model = await stitchAs(base.base, head, baseFormOf(o.foldBatchNorm, o.quantize));
  const manifest = manifestOf(run, o, settings, history, plan.pooledSpec !== undefined, train.length, validation.length, taskRecord);
  const report = await trainReportFiles({
    head,
    run,
    options: o,
    manifest,
    history,
    valSet: features.lastValSet(),
    ...(task === 'classify' ? {} : { task: taskRecord }),
    jobSeconds: (performance.now() - started) / 1000,
    ...(settings.search ? { search: settings.search } : {}),
  });
  await writeOutputFolder(o.out, { model, head, history, manifest, report, quantize: o.quantize, ...(settings.search ? { extra: new Map([[SEARCH_FILE, JSON.stringify(settings.search, null, 2)]]) } : {}) });
  return {
    epochs: history.loss.length,
    history,
    generations: history.generations.length,
    out: resolve(o.out),
    backend: tf.getBackend(),
    fingerprint: run.fingerprint,
    labels: run.labels,
    task: taskRecord,
    mode: firstFeed.source.mode,
    settings: { head: headSpec, learningRate: settings.learningRate, epochs: settings.epochs, weightDecay: settings.weightDecay, labelSmoothing: settings.labelSmoothing },
    ...(settings.auto ? { auto: settings.auto } : {}),
    ...(settings.search ? { search: settings.search } : {}),
    head,
    model,
  };
}

/**
 * Reads a generation's training features as cached (maps stay maps; pooling is the head plan's
 * business) — or, with `pooled` (fixed settings, a gap-first head), pooled as they are read —: in
 * memory within `memoryBudget`, else streamed; and the validation features beside them.
 * `lastValSet` is what the last epoch was validated on, for the report.
 */
function featureLoader(cache: FeatureCache, run: RunMeta, o: ResolvedTrainHeadOptions, train: readonly LabeledId[], validation: readonly LabeledId[], pooled: boolean) {
  let lastValSet: FeatureSet | undefined;
  const load = async (generation: number): Promise<{ feed: Feed; set: FeatureSet | undefined }> => {
    const sel = selectorOf(run, generation);
    const rowSize = pooled ? run.featureShape[2]! : featureSize(run.featureShape);
    const inMemory = train.length * run.views * rowSize * 4 <= o.memoryBudget;
    // `pooled`: the set is held pooled only (no maps for the search or the sweep, which then do not run).
    const pooledSet = pooled && inMemory ? await loadPooledFeatureSet(cache, run.fingerprint, train, run.featureShape, sel) : undefined;
    const set = !pooled && inMemory ? await loadFeatureSet(cache, run.fingerprint, train, run.featureShape, sel) : undefined;
    const source: BatchSource = pooledSet
      ? pooledOnlyBatches(pooledSet, o.batchSize, o.seed)
      : set
        ? memoryBatches(set, o.batchSize, o.seed)
        : streamBatches(cache, run.fingerprint, train, run.featureShape, sel, { batchSize: o.batchSize, seed: o.seed, reuseBuffers: true });
    // Validation reads view 0 (the plain image when cached with plainView0) of the current generation.
    const valSel = o.validationData !== undefined ? PLAIN : { ...sel, views: 1 };
    const valSet = validation.length > 0 ? await loadFeatureSet(cache, run.fingerprint, validation, run.featureShape, valSel) : undefined;
    lastValSet = valSet;
    return { feed: { source, valSet }, set };
  };
  return { load, lastValSet: () => lastValSet };
}

/** The settings the final fit runs with: what fitEpochs is given and what splitfit.json records. */
function fitSettingsOf(settings: ChosenSettings, o: ResolvedTrainHeadOptions) {
  return {
    epochs: settings.epochs,
    batchSize: o.batchSize,
    optimizer: o.optimizer,
    learningRate: settings.learningRate,
    weightDecay: settings.weightDecay,
    labelSmoothing: settings.labelSmoothing,
    lrSchedule: o.lrSchedule,
  };
}

/** splitfit.json of a run: what the model was cut from, how to feed it, and how its head was trained. */
function manifestOf(
  run: RunMeta,
  o: ResolvedTrainHeadOptions,
  settings: ChosenSettings & { auto?: AutoChoice; search?: SearchReport },
  history: JobHistory,
  pooled: boolean,
  samples: number,
  validationSamples: number,
  task: TaskRecord,
): SplitfitManifest {
  return {
    format: MANIFEST_FORMAT,
    model: run.model,
    boundary: run.boundary,
    fingerprint: run.fingerprint,
    labels: run.labels,
    ...(task.task === 'classify' ? {} : { task }),
    preprocess: run.preprocess,
    inputSize: run.inputSize,
    channels: run.channels,
    featureShape: run.featureShape,
    head: settings.head,
    seed: o.seed,
    backend: tf.getBackend(),
    createdAt: new Date().toISOString(),
    data: run.data,
    baseExport: baseFormOf(o.foldBatchNorm, o.quantize),
    ...(o.quantize ? { quantize: o.quantize } : {}),
    training: {
      ...fitSettingsOf(settings, o),
      epochs: history.loss.length, // as run: early stopping may end before settings.epochs
      pooledFeatures: pooled,
      ...(history.bestEpoch !== undefined ? { bestEpoch: history.bestEpoch } : {}),
      ...(settings.auto ? { auto: { method: settings.auto.method, chosen: settings.auto.chosen, learningRate: settings.auto.learningRate, epochs: settings.auto.epochs, holdout: settings.auto.holdout } } : {}),
      ...(settings.search ? { search: { file: SEARCH_FILE, folds: settings.search.folds, tried: settings.search.tried, winnerMean: settings.search.leaderboard[0]!.mean } } : {}),
      validation: o.validationData !== undefined ? 'data' : o.validationSplit > 0 ? 'split' : 'none',
      samples,
      validationSamples,
    },
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

/**
 * The settings of the final fit. `search`: the winner of the k-fold search (explicit options stay
 * fixed in it). Otherwise the given values, and for a missing `learningRate` or `epochs` the
 * automatic sweep on an internal hold-out of the training data.
 */
async function chooseSettings(
  ctx: HeadContext,
  sets: TrainingSets | undefined,
  classWeights: readonly number[] | undefined,
  lossOptions: ReturnType<typeof taskLossOptions>,
  o: ResolvedTrainHeadOptions,
): Promise<ChosenSettings & { auto?: AutoChoice; search?: SearchReport }> {
  if (o.search !== false) {
    if (!sets) {
      throw new SplitfitError('SPLITFIT_USAGE', `\`search\` needs the training features in memory, and they exceed \`memoryBudget\` (${o.memoryBudget} bytes); raise \`memoryBudget\``, { option: 'memoryBudget' });
    }
    const report = await searchHeads({
      ctx,
      sets,
      options: o.search === true ? {} : o.search,
      fixed: {
        ...(o.head !== undefined ? { head: o.head } : {}),
        ...(o.learningRate !== undefined ? { learningRate: o.learningRate } : {}),
        ...(o.weightDecay !== undefined ? { weightDecay: o.weightDecay } : {}),
        ...(o.labelSmoothing !== undefined ? { labelSmoothing: o.labelSmoothing } : {}),
        epochs: o.epochs,
      },
      poolFeatures: o.poolFeatures,
      optimizer: o.optimizer,
      batchSize: o.batchSize,
      lrSchedule: o.lrSchedule,
      classWeights,
      loss: lossOptions,
      seed: o.seed,
      signal: o.signal,
      onTrial: (done, total, row) => o.onProgress?.({ type: 'search-trial', done, total, row }),
    });
    const w = report.winner;
    return { head: w.head, learningRate: w.learningRate, epochs: w.epochs, weightDecay: w.weightDecay, labelSmoothing: w.labelSmoothing, search: report };
  }
  const head = o.head ?? defaultHeadSpec(ctx.featureShape, ctx.task);
  const fixed = { head, weightDecay: o.weightDecay ?? 0, labelSmoothing: o.labelSmoothing ?? 0 };
  if (o.learningRate !== undefined && o.epochs !== undefined) return { ...fixed, learningRate: o.learningRate, epochs: o.epochs };
  const auto = await chooseAutomatically({
    ctx,
    plan: planHead(head, ctx.featureShape, o.poolFeatures),
    sets,
    learningRate: o.learningRate,
    epochs: o.epochs,
    optimizer: o.optimizer,
    seed: o.seed,
    fit: { batchSize: o.batchSize, weightDecay: fixed.weightDecay, labelSmoothing: fixed.labelSmoothing, lrSchedule: o.lrSchedule, classWeights, ...lossOptions, signal: o.signal },
    onTrial: (trial) => o.onProgress?.({ type: 'auto-trial', trial }),
  });
  return { ...fixed, learningRate: auto.learningRate, epochs: auto.epochs, auto };
}
