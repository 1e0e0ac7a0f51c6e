import * as tf from '@tensorflow/tfjs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeMultiLabelDataset, makeRotationDataset } from '../examples/task-data.js';
import { buildHead, extractFeatures, FeatureCache, loadPredictor, openDataSource, predictSamples, saveModel, trainHead } from '../src/index.js';
import { listRuns } from '../src/extract/run-meta.js';
import { readModelMetadata } from '../src/model/metadata.js';
import { fitTargetScale, foldTargetScale, standardize } from '../src/model/target-scale.js';
import { positiveWeightsOf } from '../src/train/losses.js';
import { residualToyModel } from './helpers/models.js';

const failure = async (p: Promise<unknown>): Promise<{ code?: string; message: string }> => {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: string; message: string } | undefined;
  expect(err, 'expected a rejection').toBeDefined();
  return { code: err!.code, message: err!.message };
};

describe('target standardisation folded into the last Dense layer', () => {
  it('fitTargetScale: population mean and σ per column; a constant column gets σ = 1', () => {
    // column 0: 1, 3 → μ 2, σ 1; column 1: 10, 10 → μ 10, σ 1 (constant).
    expect(fitTargetScale([1, 10, 3, 10], 2)).toEqual({ mean: [2, 10], std: [1, 1] });
    expect(standardize([1, 10, 3, 10], { mean: [2, 10], std: [1, 1] })).toEqual([-1, 0, 1, 0]);
  });

  it('a folded head predicts σ·h(x) + μ, and so does the same model saved and loaded with stock tf.loadLayersModel', async () => {
    const source = residualToyModel();
    const head = await buildHead(source, 'block2_add', [16, 16, 8], { spec: 'gap,dense:2:linear', numClasses: 2, seed: 3, task: 'regress' });
    const x = tf.randomNormal([5, 16, 16, 8], 0, 1, 'float32', 11);
    const before = (head.predict(x) as tf.Tensor).arraySync() as number[][];
    const scale = { mean: [500, -3], std: [40, 0.25] };
    foldTargetScale(head, scale);
    const after = (head.predict(x) as tf.Tensor).arraySync() as number[][];
    after.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(before[i]![j]! * scale.std[j]! + scale.mean[j]!, 3)));
    // Round trip through the stock tfjs save/load (no splitfit code on the reading side).
    let artifacts: tf.io.ModelArtifacts | undefined;
    await head.save(tf.io.withSaveHandler(async (a) => ((artifacts = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } })));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
    const again = (loaded.predict(x) as tf.Tensor).arraySync() as number[][];
    again.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(after[i]![j]!, 3)));
    x.dispose();
  });

  it('refuses to fold into a head whose last layer is not a linear Dense (SPLITFIT_HEAD_SPEC)', async () => {
    const head = await buildHead(residualToyModel(), 'block2_add', [16, 16, 8], { spec: 'gap,dense:2:softmax', numClasses: 2 });
    expect(() => foldTargetScale(head, { mean: [0, 0], std: [1, 1] })).toThrow(expect.objectContaining({ code: 'SPLITFIT_HEAD_SPEC', message: expect.stringContaining('end the head with dense:N:linear') }));
  });

  it('a multilabel or regress head must end in its own output layer', async () => {
    await expect(buildHead(residualToyModel(), 'block2_add', [16, 16, 8], { spec: 'gap,dense:N:softmax', numClasses: 3, task: 'multilabel' })).rejects.toMatchObject({
      code: 'SPLITFIT_HEAD_SPEC',
      message: expect.stringContaining('a multilabel head must end in dense:N:sigmoid, this one ends in dense:N:softmax'),
    });
  });

  it('positive weights are neg/pos per label, 1 for a label with no positive', () => {
    // label 0: 1 positive of 4 → 3; label 1: 2 of 4 → 1; label 2: none → 1.
    expect(positiveWeightsOf([1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], 3)).toEqual([3, 1, 1]);
  });
});

// A toy CNN saved to disk stands in for the pretrained base; the images are real (Twemoji).
describe('trainHead on regression and multi-label runs', () => {
  let dir: string;
  let model: string;
  let rotation: Awaited<ReturnType<typeof makeRotationDataset>>;
  let multi: Awaited<ReturnType<typeof makeMultiLabelDataset>>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-tasks-'));
    await saveModel(residualToyModel(), join(dir, 'toy'));
    model = join(dir, 'toy', 'model.json');
    rotation = await makeRotationDataset({ out: join(dir, 'rotation'), count: 48, seed: 1 });
    multi = await makeMultiLabelDataset({ out: join(dir, 'multi'), count: 60, seed: 1 });
  });

  it('regress: predictions of the stitched model are in the target’s own units (targets offset to ~1000)', async () => {
    // The angle scaled and shifted: a head predicting in standardised units would answer near 0.
    const text = await readFile(rotation.train, 'utf8');
    const shifted = text.replace(/,(-?[0-9.]+)$/gm, (_, a: string) => `,${(1000 + 10 * Number(a)).toFixed(2)}`).replace('target_angle', 'target_offset');
    const manifest = join(dir, 'rotation', 'shifted.csv');
    await writeFile(manifest, shifted);
    const cache = join(dir, 'cache-reg');
    await extractFeatures({ model, boundary: 'block2_add', data: manifest, cache });
    const out = join(dir, 'reg');
    const r = await trainHead({ cache, out, epochs: 30, learningRate: 1e-2, batchSize: 8, validationSplit: 0.25, loss: 'huber', seed: 2 });
    expect(r.labels).toEqual(['target_offset']);
    expect(r.task.task).toBe('regress');
    expect(r.task.loss).toBe('huber');
    expect(r.settings.head).toBe('gap,dense:N:linear');
    const source = await openDataSource(manifest);
    const values = source.samples.map((s) => s.values![0]!);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    // μ is fitted on the 75 % trained on: within a few σ/√n of the full data's mean.
    expect(Math.abs(r.task.targetScale!.mean[0]! - mean)).toBeLessThan(60);
    expect(r.task.targetScale!.std[0]!).toBeGreaterThan(100);
    // The saved model, loaded with stock tfjs, predicts in the target's units.
    const predictor = await loadPredictor(out);
    const { probs: predictions } = await predictSamples(predictor, source.samples.slice(0, 12));
    expect(predictions).toHaveLength(12);
    for (const p of predictions) expect(Math.abs(p - mean)).toBeLessThan(400);
    const manifestJson = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as { task: { task: string; targetScale: { mean: number[] } } };
    expect(manifestJson.task.task).toBe('regress');
    expect(manifestJson.task.targetScale.mean[0]).toBeCloseTo(r.task.targetScale!.mean[0]!, 6);
    const modelJson = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as { userDefinedMetadata: unknown };
    expect(readModelMetadata(modelJson.userDefinedMetadata, 'model.json')).toMatchObject({ task: 'regress', labels: ['target_offset'] });
    // History: loss per epoch; acc is R² (≤ 1).
    expect(r.history.loss).toHaveLength(30);
    expect(r.history.valAcc!.every((v) => v <= 1)).toBe(true);
  });

  it('multilabel: sigmoid head, thresholds tuned on the validation split and recorded', async () => {
    const cache = join(dir, 'cache-ml');
    await extractFeatures({ model, boundary: 'block2_add', data: multi.train, cache });
    const out = join(dir, 'ml');
    const r = await trainHead({ cache, out, epochs: 15, learningRate: 1e-2, batchSize: 8, validationSplit: 0.3, tuneThresholds: true, positiveWeights: true, seed: 1 });
    expect(r.labels).toEqual(multi.labels);
    expect(r.settings.head).toBe('gap,dense:N:sigmoid');
    expect(r.task.thresholdsTuned).toBe(true);
    expect(r.task.thresholds).toHaveLength(4);
    for (const t of r.task.thresholds!) expect(t > 0 && t < 1).toBe(true);
    expect(r.task.positiveWeights).toHaveLength(4);
    expect(r.history.valAuc!.every((a) => a >= 0 && a <= 1)).toBe(true);
    const m = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as { task: { thresholds: number[] } };
    expect(m.task.thresholds).toEqual(r.task.thresholds);
    // model.json alone says how to read the outputs (what the browser module reads): task and thresholds.
    const modelJson = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as { userDefinedMetadata: unknown };
    expect(readModelMetadata(modelJson.userDefinedMetadata, 'model.json')).toMatchObject({ task: 'multilabel', labels: multi.labels, thresholds: r.task.thresholds });
    const probs = tf.tidy(() => (r.model.predict(tf.zeros([2, 16, 16, 3])) as tf.Tensor).arraySync() as number[][]);
    // Sigmoid outputs: independent probabilities, not a distribution.
    for (const row of probs) for (const p of row) expect(p > 0 && p < 1).toBe(true);
  });

  it('streams regression and multi-label targets from LevelDB when the features exceed the memory budget', async () => {
    for (const [cache, task] of [['cache-reg', 'regress'], ['cache-ml', 'multilabel']] as const) {
      const r = await trainHead({ cache: join(dir, cache), out: join(dir, `${cache}-stream`), epochs: 3, learningRate: 1e-2, batchSize: 8, validationSplit: 0.25, memoryBudget: 1, seed: 1 });
      expect(r.mode).toBe('stream');
      expect(r.task.task).toBe(task);
      expect(r.history.loss.every((l) => Number.isFinite(l) && l > 0)).toBe(true);
      // The epoch score is ≤ 1 in both tasks (per-label accuracy; 1 − standardised squared error).
      expect(r.history.acc.every((a) => a <= 1)).toBe(true);
    }
  });

  it('the task is in the run record, not the fingerprint: the same cached features serve another task', async () => {
    const cache = join(dir, 'cache-task');
    const first = await extractFeatures({ model, boundary: 'block2_add', data: rotation.train, cache });
    const again = await extractFeatures({ model, boundary: 'block2_add', data: rotation.train, cache, task: 'classify' });
    expect(again.fingerprint).toBe(first.fingerprint);
    expect(again.extracted).toBe(0);
    await using c = await FeatureCache.open(cache);
    const { runs } = await listRuns(c);
    expect(runs).toHaveLength(1);
    // The record says the task it was last cached as: classify (no task field), classes = the angle texts.
    expect(runs[0]!.task).toBeUndefined();
    expect(runs[0]!.samples.every((sm) => sm.y === undefined && sm.label >= 0)).toBe(true);
  });

  it('the automatic learning rate and epochs cover regression: a sweep on the hold-out loss, finite trials', async () => {
    const r = await trainHead({ cache: join(dir, 'cache-reg'), out: join(dir, 'reg-auto'), batchSize: 8, seed: 1 });
    expect(r.auto?.method).toBe('sweep');
    expect(r.auto!.trials.length).toBe(4);
    for (const t of r.auto!.trials) expect(t.diverged ?? Number.isFinite(t.valLoss)).toBe(true);
    // The chosen rate has the lowest hold-out loss of those that did not diverge.
    const losses = r.auto!.trials.filter((t) => t.diverged === undefined).map((t) => t.valLoss!);
    expect(r.auto!.trials.find((t) => t.learningRate === r.settings.learningRate)!.valLoss).toBe(Math.min(...losses));
    expect(r.task.task).toBe('regress');
  });

  it('--search covers both tasks: the task’s output layer in every head, no label smoothing, ranked by R² or macro AUC', async () => {
    const reg = await trainHead({ cache: join(dir, 'cache-reg'), out: join(dir, 'reg-search'), batchSize: 8, seed: 1, search: { folds: 2, trials: 3 } });
    expect(reg.search!.metric).toBe('R²');
    expect(reg.search!.leaderboard.length + reg.search!.diverged.length).toBe(3);
    for (const row of reg.search!.leaderboard) {
      expect(row.config.head).toMatch(/dense:N:linear$/);
      expect(row.config.labelSmoothing).toBe(0);
      expect(row.mean).toBeLessThanOrEqual(1);
    }
    expect(reg.settings.head).toBe(reg.search!.winner.head);
    const ml = await trainHead({ cache: join(dir, 'cache-ml'), out: join(dir, 'ml-search'), batchSize: 8, seed: 1, search: { folds: 2, trials: 3 } });
    expect(ml.search!.metric).toBe('macro AUC');
    for (const row of ml.search!.leaderboard) {
      expect(row.config.head).toMatch(/dense:N:sigmoid$/);
      for (const f of row.folds) expect(f >= 0 && f <= 1).toBe(true);
    }
    // Ranked best first by the fold mean.
    const means = ml.search!.leaderboard.map((r) => r.mean);
    expect(means).toEqual([...means].sort((a, b) => b - a));
  });

  it('options of another task are SPLITFIT_USAGE naming the run’s task', async () => {
    const cache = join(dir, 'cache-ml');
    expect(await failure(trainHead({ cache, out: join(dir, 'x1'), epochs: 1, learningRate: 1e-2, loss: 'mae' }))).toEqual({
      code: 'SPLITFIT_USAGE',
      message: expect.stringMatching(/`loss` applies to regress runs; the cached data set .* is a multilabel run/),
    });
    expect((await failure(trainHead({ cache, out: join(dir, 'x2'), epochs: 1, learningRate: 1e-2, classWeights: 'balanced' }))).code).toBe('SPLITFIT_USAGE');
    expect(await failure(trainHead({ cache, out: join(dir, 'x3'), epochs: 1, learningRate: 1e-2, head: 'gap,dense:N:softmax' }))).toEqual({
      code: 'SPLITFIT_HEAD_SPEC',
      message: expect.stringContaining('a multilabel head must end in dense:N:sigmoid'),
    });
    expect((await failure(trainHead({ cache, out: join(dir, 'x4'), epochs: 1, learningRate: 1e-2, tuneThresholds: true }))).code).toBe('SPLITFIT_USAGE');
  });
});
