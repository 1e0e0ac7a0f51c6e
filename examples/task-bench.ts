/**
 * The regression and multi-label example tasks on a real network, held out: the same frozen
 * MobileNetV2 (npm `nsfwjs`, 52 BatchNormalization layers, cut at `out_relu`) and the same new head
 * (`gap,dense:N:linear` or `gap,dense:N:sigmoid`, same seeded initial weights, same epochs, learning
 * rate and batch size), trained two ways on the training split and scored on the test split:
 *
 * - `splitfit`: `extractFeatures` (base once, inference mode) → `trainHead` → `evaluate --compare-modes`;
 *   and `splitfit auto`: the same cache, `trainHead` without `learningRate`/`epochs` (its default: both
 *   chosen on a hold-out of the training data — epochs on cached features are nearly free).
 * - `naive`: one stock tfjs model (base layers frozen + head), `compile` + `fit` on the images, then
 *   `predict` — the frozen BN layers normalise with batch statistics under `fit` and overwrite their
 *   moving statistics (tfjs-layers 4.22). Regression targets are standardised for it exactly as
 *   splitfit standardises them (μ, σ of the training targets), so only the BN behaviour differs.
 *
 * Baselines: the mean predictor (regress) and the per-label prior (multilabel: each label's training
 * prevalence as its probability).
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildHead,
  decodeImage,
  evaluate,
  extractFeatures,
  loadModel,
  multiLabelMetrics,
  openDataSource,
  preprocess,
  regressionMetrics,
  splitBase,
  stitch,
  trainHead,
} from 'splitfit';
import { compareMultiLabelModes, compareRegressionModes } from 'splitfit';
import type { DataSource, MultiLabelMetrics, MultiLabelModes, RegressionMetrics, RegressionModes } from 'splitfit';
import { makeMultiLabelDataset, makeRotationDataset } from './task-data.js';

export const MODEL = 'mobilenet_v2';
export const BOUNDARY = 'out_relu';

export interface TaskBenchOptions {
  task: 'regress' | 'multilabel';
  /** Images made (train + test). @default 300 */
  count?: number;
  /** @default 6 */
  epochs?: number;
  /** @default 0.003 */
  learningRate?: number;
  /** @default 16 */
  batchSize?: number;
  /** @default 0 */
  seed?: number;
  log?: (message: string) => void;
}

export interface TaskBenchResult {
  task: 'regress' | 'multilabel';
  settings: { model: string; boundary: string; head: string; train: number; test: number; epochs: number; learningRate: number; batchSize: number; seed: number; backend: string };
  splitfit: { regression?: RegressionMetrics; multilabel?: MultiLabelMetrics; regressionModes?: RegressionModes; multiLabelModes?: MultiLabelModes; seconds: number };
  /** The same cache, learning rate and epochs chosen automatically. */
  splitfitAuto: { regression?: RegressionMetrics; multilabel?: MultiLabelMetrics; learningRate: number; epochs: number };
  naive: { regression?: RegressionMetrics; multilabel?: MultiLabelMetrics; regressionModes?: RegressionModes; multiLabelModes?: MultiLabelModes; fitLoss: number; seconds: number };
  baseline: { regression?: RegressionMetrics; multilabel?: MultiLabelMetrics };
}

/** Targets of a manifest's samples, row-major [n × k] in `labels` order. */
function targetsOf(source: DataSource, labels: readonly string[]): number[] {
  return source.task === 'regress' ? source.samples.flatMap((s) => s.values!) : source.samples.flatMap((s) => labels.map((l) => (s.labelSet!.includes(l) ? 1 : 0)));
}

async function images(source: DataSource): Promise<tf.Tensor4D> {
  const per = 224 * 224 * 3;
  const flat = new Float32Array(source.samples.length * per);
  for (const [i, s] of source.samples.entries()) flat.set(preprocess(await decodeImage(await s.load(), { height: 224, width: 224, channels: 3 }, s.source), 3, 'unit'), i * per);
  return tf.tensor4d(flat, [source.samples.length, 224, 224, 3]);
}

export async function runTaskBench(o: TaskBenchOptions): Promise<TaskBenchResult> {
  const log = o.log ?? (() => {});
  const count = o.count ?? 300;
  const epochs = o.epochs ?? 6;
  const learningRate = o.learningRate ?? 3e-3;
  const batchSize = o.batchSize ?? 16;
  const seed = o.seed ?? 0;
  const work = await mkdtemp(join(tmpdir(), `splitfit-${o.task}-`));
  try {
    const data = o.task === 'regress' ? await makeRotationDataset({ out: join(work, 'data'), count, seed }) : await makeMultiLabelDataset({ out: join(work, 'data'), count, seed });
    const train = await openDataSource(data.train);
    const test = await openDataSource(data.test);
    const labels = train.labels;
    const k = labels.length;
    const head = o.task === 'regress' ? 'gap,dense:N:linear' : 'gap,dense:N:sigmoid';
    log(`${o.task}: ${train.samples.length} train / ${test.samples.length} test images, outputs ${labels.join(', ')}`);
    const yTrain = targetsOf(train, labels);
    const yTest = targetsOf(test, labels);

    // splitfit
    let t0 = performance.now();
    const cache = join(work, 'cache');
    await extractFeatures({ model: MODEL, boundary: BOUNDARY, data: data.train, cache });
    const trained = await trainHead({ cache, out: join(work, 'model'), head, epochs, learningRate, batchSize, seed });
    const seconds = (performance.now() - t0) / 1000;
    const ev = await evaluate({ model: join(work, 'model', 'model.json'), data: data.test, compareModes: true, batchSize });
    trained.model.dispose();
    trained.head.dispose();
    log(`splitfit: trained in ${seconds.toFixed(1)} s`);
    const auto = await trainHead({ cache, out: join(work, 'model-auto'), head, batchSize, seed });
    const evAuto = await evaluate({ model: join(work, 'model-auto', 'model.json'), data: data.test, batchSize });
    auto.model.dispose();
    auto.head.dispose();
    log(`splitfit auto: lr ${auto.settings.learningRate}, ${auto.settings.epochs} epochs`);

    // naive TF.js: base frozen, head on top, one model, stock fit.
    const source = await loadModel(MODEL);
    const { base, featureShape } = splitBase(source, BOUNDARY);
    const naiveHead = await buildHead(source, BOUNDARY, featureShape, { spec: head, numClasses: k, seed, task: o.task });
    const model = await stitch(base, naiveHead, 'naive');
    source.dispose();
    naiveHead.dispose();
    const mean = labels.map((_, j) => yTrain.filter((_, i) => i % k === j).reduce((a, b) => a + b, 0) / train.samples.length);
    const std = labels.map((_, j) => Math.sqrt(yTrain.filter((_, i) => i % k === j).reduce((a, b) => a + (b - mean[j]!) ** 2, 0) / train.samples.length) || 1);
    const fitTargets = o.task === 'regress' ? yTrain.map((v, i) => (v - mean[i % k]!) / std[i % k]!) : yTrain;
    const xTrain = await images(train);
    const yt = tf.tensor2d(fitTargets, [train.samples.length, k]);
    model.compile({ optimizer: tf.train.adam(learningRate), loss: o.task === 'regress' ? 'meanSquaredError' : 'binaryCrossentropy' });
    t0 = performance.now();
    const history = await model.fit(xTrain, yt, { epochs, batchSize, shuffle: true, verbose: 0, callbacks: { onEpochEnd: (e, l) => log(`naive: epoch ${e + 1}/${epochs} loss ${l?.['loss']?.toFixed(4)}`) } });
    const naiveSeconds = (performance.now() - t0) / 1000;
    tf.dispose([xTrain, yt]);
    const xTest = await images(test);
    const raw = tf.tidy(() => (model.predict(xTest, { batchSize }) as tf.Tensor).dataSync() as Float32Array);
    const unscale = (out: ArrayLike<number>): number[] => Array.from(out, (v, i) => (o.task === 'regress' ? v * std[i % k]! + mean[i % k]! : v));
    const naive: TaskBenchResult['naive'] = { fitLoss: (history.history['loss'] as number[]).at(-1)!, seconds: naiveSeconds };
    if (o.task === 'regress') {
      naive.regression = regressionMetrics(unscale(raw), yTest, labels);
      // The detector on the naive model in its own (standardised) units, as a user would run it.
      const scaledTest = yTest.map((v, i) => (v - mean[i % k]!) / std[i % k]!);
      naive.regressionModes = await compareRegressionModes(model, xTest, scaledTest, labels, { batchSize, dropout: false, trainableBatchNorm: false });
    } else {
      naive.multilabel = multiLabelMetrics(raw, yTest, labels);
      naive.multiLabelModes = await compareMultiLabelModes(model, xTest, yTest, labels, undefined, { batchSize, dropout: false, trainableBatchNorm: false });
    }
    tf.dispose(xTest);
    model.dispose();

    const n = test.samples.length;
    const baseline: TaskBenchResult['baseline'] =
      o.task === 'regress'
        ? { regression: regressionMetrics(Array.from({ length: n * k }, (_, i) => mean[i % k]!), yTest, labels) }
        : { multilabel: multiLabelMetrics(Array.from({ length: n * k }, (_, i) => mean[i % k]!), yTest, labels) };
    return {
      task: o.task,
      settings: { model: MODEL, boundary: BOUNDARY, head, train: train.samples.length, test: n, epochs, learningRate, batchSize, seed, backend: tf.getBackend() },
      splitfit: {
        ...(ev.regression ? { regression: ev.regression } : {}),
        ...(ev.multilabel ? { multilabel: ev.multilabel } : {}),
        ...(ev.regressionModes ? { regressionModes: ev.regressionModes } : {}),
        ...(ev.multiLabelModes ? { multiLabelModes: ev.multiLabelModes } : {}),
        seconds,
      },
      splitfitAuto: {
        ...(evAuto.regression ? { regression: evAuto.regression } : {}),
        ...(evAuto.multilabel ? { multilabel: evAuto.multilabel } : {}),
        learningRate: auto.settings.learningRate,
        epochs: auto.settings.epochs,
      },
      naive,
      baseline,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const f = (v: number | undefined, d = 3): string => (v === undefined ? '—' : v.toFixed(d));

/** The result as the markdown table rows docs/BENCHMARKS.md carries. */
export function markdownTable(r: TaskBenchResult): string {
  if (r.task === 'regress') {
    const row = (name: string, m: RegressionMetrics | undefined, modes?: RegressionModes): string =>
      `| ${name} | ${f(m?.mae, 2)} | ${f(m?.rmse, 2)} | ${f(m?.r2)} | ${f(m?.spearman)} | ${modes ? `${f(modes.training.mse)} / ${f(modes.inference.mse)} / ${modes.flagged ? 'flagged' : 'no gap'}` : '—'} |`;
    return [
      '| model | MAE (°) | RMSE (°) | R² | Spearman | compare-modes MSE train / inference / verdict |',
      '|---|---|---|---|---|---|',
      row('mean predictor', r.baseline.regression),
      row('naive TF.js fit', r.naive.regression, r.naive.regressionModes),
      row(`splitfit (same ${r.settings.epochs} epochs, lr ${r.settings.learningRate})`, r.splitfit.regression, r.splitfit.regressionModes),
      row(`splitfit auto (lr ${r.splitfitAuto.learningRate}, ${r.splitfitAuto.epochs} epochs)`, r.splitfitAuto.regression),
    ].join('\n');
  }
  const row = (name: string, m: MultiLabelMetrics | undefined, modes?: MultiLabelModes): string =>
    `| ${name} | ${f(m?.macroAuc)} | ${f(m?.microAuc)} | ${f(m?.macroF1)} | ${f(m?.subsetAccuracy)} | ${f(m?.hammingLoss)} | ${modes ? `${f(modes.maxAccuracyGap)} / ${modes.flagged.length === 0 ? 'none flagged' : `flagged ${modes.flagged.join(', ')}`}` : '—'} |`;
  return [
    '| model | macro AUC | micro AUC | macro F1 @0.5 | subset acc. | Hamming loss | compare-modes max acc. gap / flags |',
    '|---|---|---|---|---|---|---|',
    row('per-label prior', r.baseline.multilabel),
    row('naive TF.js fit', r.naive.multilabel, r.naive.multiLabelModes),
    row(`splitfit (same ${r.settings.epochs} epochs, lr ${r.settings.learningRate})`, r.splitfit.multilabel, r.splitfit.multiLabelModes),
    row(`splitfit auto (lr ${r.splitfitAuto.learningRate}, ${r.splitfitAuto.epochs} epochs)`, r.splitfitAuto.multilabel),
  ].join('\n');
}
