/**
 * Batched learning-rate trials (issue #13 timing): R copies of a head trained in lockstep give each
 * copy the numbers its sequential trial gives (`fitEpochs` on a fresh head), so the automatic sweep
 * chooses the same learning rate and length; what cannot be batched runs one by one.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import type { Task } from '../src/data/types.js';
import { type AutoInput, type AutoTrial, chooseAutomatically } from '../src/job/auto.js';
import { searchHeads } from '../src/job/search.js';
import { buildTrainable, type HeadContext, type HeadPlan, planHead, TrainingSets } from '../src/job/head-trainer.js';
import { fitInLockstep, type LockstepCopy, type LockstepOptions, lockstepUnsupported } from '../src/train/batched-trials.js';
import { memoryBatches } from '../src/train/batches.js';
import { type FeatureSet, poolFeatureSet, subsetFeatureSet } from '../src/train/feature-set.js';
import { fitEpochs, type History } from '../src/train/fit.js';
import { rng } from '../src/random.js';
import { rejection } from './helpers/errors.js';
import { residualToyModel } from './helpers/models.js';
import { expectNoTensorLeak } from './helpers/tensors.js';

/**
 * n seeded samples of k noisy clusters, features of `shape`. `task` adds targets: multilabel, label
 * j is on for class j and for the next one; regress, k values linear in the features (standardised-ish).
 */
function clusters(n: number, shape: number[], k: number, seed: number, task: Task = 'classify'): FeatureSet {
  const d = shape.reduce((a, b) => a * b, 1);
  const r = rng(seed);
  const centers = Array.from({ length: k }, () => Array.from({ length: d }, () => r() * 2 - 1));
  const labels = Array.from({ length: n }, () => Math.floor(r() * k));
  const x = new Float32Array(n * d);
  labels.forEach((y, i) => {
    for (let j = 0; j < d; j++) x[i * d + j] = centers[y]![j]! * 0.6 + (r() * 2 - 1);
  });
  const set: FeatureSet = { ids: labels.map((_, i) => `s${i}`), labels, x, featureShape: shape, views: 1 };
  if (task === 'multilabel') set.targets = Float32Array.from({ length: n * k }, (_, t) => (labels[Math.floor(t / k)] === t % k || (labels[Math.floor(t / k)]! + 1) % k === t % k ? 1 : 0));
  if (task === 'regress') set.targets = Float32Array.from({ length: n * k }, (_, t) => x[Math.floor(t / k) * d + (t % k)]! * 0.8 + 0.1 * (t % k));
  return set;
}

/** The sequential trial exactly as `runTrial` runs it, keeping the trained head's weights (for comparison). */
async function sequential(ctx: HeadContext, plan: HeadPlan, train: FeatureSet, val: FeatureSet, seed: number, fit: LockstepOptions, learningRate: number): Promise<{ history: History; weights: tf.Tensor[] } | { diverged: string }> {
  const t = await buildTrainable(ctx, plan, seed);
  try {
    const history = await fitEpochs(t.trained, { source: memoryBatches(train, fit.batchSize, seed), valSet: val }, 0, undefined, ctx.numClasses, { ...fit, learningRate, seed });
    return { history, weights: t.trained.trainableWeights.map((w) => w.read().clone()) };
  } catch (err) {
    return { diverged: (err as Error).message };
  } finally {
    t.dispose();
  }
}

async function lockstep(ctx: HeadContext, plan: HeadPlan, train: FeatureSet, val: FeatureSet, seed: number, fit: LockstepOptions, learningRates: number[]): Promise<LockstepCopy[] | undefined> {
  const t = await buildTrainable(ctx, plan, seed);
  try {
    return await fitInLockstep({ head: t.trained, train, val, k: ctx.numClasses, learningRates, fit: { ...fit, seed }, keepWeights: true });
  } finally {
    t.dispose();
  }
}

/** max over the epochs of |batched − sequential| / max(|sequential|, 1e-6). */
function worstRel(batched: readonly number[], seq: readonly number[]): number {
  expect(batched).toHaveLength(seq.length);
  return Math.max(0, ...seq.map((s, e) => Math.abs(batched[e]! - s) / Math.max(Math.abs(s), 1e-6)));
}

/** max over the epochs of |batched − sequential|. */
function worstAbs(batched: readonly number[], seq: readonly number[]): number {
  expect(batched).toHaveLength(seq.length);
  return Math.max(0, ...seq.map((s, e) => Math.abs(batched[e]! - s)));
}

/**
 * Per-epoch losses agree within this relative bound, accuracies within it absolutely. Float rounding
 * (a matMul over R·out columns, reductions over [R, n]) measured ≤ 2e-7 relative on these sets.
 */
const TOLERANCE = 1e-4;

const source = residualToyModel();
const ctxOf = (featureShape: number[], numClasses: number, task: Task = 'classify'): HeadContext => ({ source, boundary: 'block2_add', featureShape, numClasses, task });
const EARLY: LockstepOptions = { epochs: 40, batchSize: 16, optimizer: 'adam', earlyStopping: { patience: 4, monitor: 'loss' } };
const RATES = [1e-3, 3e-3, 1e-2, 3e-2];

describe('fitInLockstep: each copy is its sequential trial', () => {
  const cases: { name: string; spec: string; shape: number[]; task?: Task; fit?: Partial<LockstepOptions>; pooled?: boolean }[] = [
    { name: 'gap,dense:N:softmax on pooled maps, with label smoothing, weight decay and class weights', spec: 'gap,dense:N:softmax', shape: [2, 2, 12], pooled: true, fit: { labelSmoothing: 0.1, weightDecay: 1e-3, classWeights: [1, 2, 0.5, 1], epochs: 100 } },
    { name: 'gap,dense:16:relu,dropout:0.5,dense:N:softmax on pooled maps (the same dropout masks)', spec: 'gap,dense:16:relu,dropout:0.5,dense:N:softmax', shape: [2, 2, 24], pooled: true },
    { name: 'dense:16:relu,dropout:0.5,dense:N:softmax on vectors', spec: 'dense:16:relu,dropout:0.5,dense:N:softmax', shape: [24] },
    { name: 'flatten,dense:N:softmax on maps', spec: 'flatten,dense:N:softmax', shape: [2, 2, 6] },
    { name: 'dropout:0.2,dense:N:softmax on vectors (the closed form after a Dropout layer)', spec: 'dropout:0.2,dense:N:softmax', shape: [20] },
    { name: 'dropout:0.2,dropout:0.3,dense:N:softmax on vectors (two masks: the tape, in lockstep as one by one)', spec: 'dropout:0.2,dropout:0.3,dense:N:softmax', shape: [20] },
    { name: 'multilabel dense:N:sigmoid with positive weights', spec: 'dense:N:sigmoid', shape: [20], task: 'multilabel', fit: { positiveWeights: [1, 1.5, 2, 1] } },
    { name: 'regress dense:N:linear with the huber loss, no early stopping', spec: 'dense:N:linear', shape: [20], task: 'regress', fit: { regressionLoss: 'huber', earlyStopping: undefined, epochs: 12 } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const k = 4;
      const task = c.task ?? 'classify';
      const ctx = ctxOf(c.shape, k, task);
      const plan = planHead(c.spec, c.shape, c.pooled === true);
      expect(plan.pooledSpec !== undefined).toBe(c.pooled === true);
      const all = clusters(136, c.shape, k, 1, task);
      let train = subsetFeatureSet(all, Array.from({ length: 96 }, (_, i) => i));
      let val = subsetFeatureSet(all, Array.from({ length: 40 }, (_, i) => 96 + i));
      if (c.pooled) [train, val] = [poolFeatureSet(train), poolFeatureSet(val)];
      const fit: LockstepOptions = { ...EARLY, ...(task === 'classify' ? {} : { task }), ...c.fit };
      const disposeWeights = (cs: LockstepCopy[] | undefined): LockstepCopy[] | undefined => {
        for (const x of cs ?? []) if (x.diverged === undefined) tf.dispose(x.weights ?? []);
        return cs;
      };
      const copies = (await expectNoTensorLeak(() => lockstep(ctx, plan, train, val, 7, fit, RATES).then(disposeWeights)))!;
      const again = (await lockstep(ctx, plan, train, val, 7, fit, RATES))!;
      expect(copies.map((x) => x.learningRate)).toEqual(RATES);
      const epochs: number[] = [];
      for (const [i, lr] of RATES.entries()) {
        const s = await sequential(ctx, plan, train, val, 7, fit, lr);
        const b = again[i]!;
        if ('diverged' in s || b.diverged !== undefined) throw new Error(`lr ${lr} diverged: ${JSON.stringify(s)} / ${JSON.stringify(b)}`);
        const h = s.history;
        for (const key of ['loss', 'valLoss'] as const) expect(worstRel(b.history[key]!, h[key]!), `${key} at lr ${lr}`).toBeLessThanOrEqual(TOLERANCE);
        // Accuracy (R² for regress) may be near 0: compared absolutely.
        for (const key of ['acc', 'valAcc'] as const) expect(worstAbs(b.history[key]!, h[key]!), `${key} at lr ${lr}`).toBeLessThanOrEqual(TOLERANCE);
        expect(b.bestEpoch).toBe(h.bestEpoch ?? h.loss.length);
        expect(b.history.bestEpoch).toBe(h.bestEpoch);
        expect(b.valLoss).toBe(b.history.valLoss![b.bestEpoch - 1]);
        expect(b.history.learningRates).toEqual(h.learningRates);
        expect(b.history.viewsRead).toEqual(h.viewsRead);
        // The kept (best epoch's) weights are the sequential head's.
        expect(b.weights!.map((w) => w.shape)).toEqual(s.weights.map((w) => w.shape));
        b.weights!.forEach((w, j) => {
          const d = tf.tidy(() => tf.max(tf.abs(tf.sub(w, s.weights[j]!))).dataSync()[0]!);
          const scale = tf.tidy(() => tf.max(tf.abs(s.weights[j]!)).dataSync()[0]!);
          expect(d / scale, `weight ${j} at lr ${lr}`).toBeLessThanOrEqual(TOLERANCE);
        });
        epochs.push(h.loss.length);
        tf.dispose([...b.weights!, ...s.weights]);
      }
      // The copies stopped at different epochs (or all ran the given length): lockstep must handle both.
      if (fit.earlyStopping) expect(new Set(epochs).size).toBeGreaterThan(1);
      else expect(epochs.every((e) => e === fit.epochs)).toBe(true);
    });
  }
});

describe('chooseAutomatically in lockstep', () => {
  const k = 4;
  const shape = [2, 2, 12];
  const ctx = ctxOf(shape, k);
  const plan = planHead('gap,dense:N:softmax', shape, true);
  // 100 samples: a fifth holds 20, so three hold-outs are used in turn.
  const input = (over: Partial<AutoInput> = {}): AutoInput => ({
    ctx,
    plan,
    sets: new TrainingSets(clusters(100, shape, k, 5)),
    learningRate: undefined,
    epochs: undefined,
    optimizer: 'adam',
    seed: 4,
    fit: { batchSize: 16 },
    ...over,
  });

  it('chooses what the one-by-one sweep chooses: the same trials, learning rate and epochs', async () => {
    const batched = await chooseAutomatically(input());
    expect(batched.batched).toBe(true);
    expect(batched.holdouts).toBe(3);
    // One rate at a time runs the sequential path: the reference trials.
    const seq: AutoTrial[] = [];
    for (const r of RATES) {
      const one = await chooseAutomatically(input({ learningRates: [r] }));
      expect(one.batched).toBeUndefined();
      seq.push(one.trials[0]!);
    }
    expect(batched.trials.map((t) => t.learningRate)).toEqual(RATES);
    batched.trials.forEach((t, i) => {
      expect(t.epochs).toBe(seq[i]!.epochs);
      expect(Math.abs(t.valLoss! - seq[i]!.valLoss!) / seq[i]!.valLoss!).toBeLessThanOrEqual(TOLERANCE);
      expect(Math.abs(t.valAcc! - seq[i]!.valAcc!)).toBeLessThanOrEqual(TOLERANCE);
    });
    const best = [...seq].sort((x, y) => x.valLoss! - y.valLoss! || y.valAcc! - x.valAcc!)[0]!;
    expect({ learningRate: batched.learningRate, epochs: batched.epochs }).toEqual({ learningRate: best.learningRate, epochs: best.epochs });
    // A given length: every trial runs it (no early stopping), still in lockstep.
    const fixed = await chooseAutomatically(input({ epochs: 5 }));
    expect(fixed.batched).toBe(true);
    expect(fixed.trials.map((t) => t.epochs)).toEqual([5, 5, 5, 5]);
    expect(fixed.epochs).toBe(5);
  });

  it('the same seed gives a bit-identical choice and trials; progress reports every trial in order', async () => {
    const seen: number[] = [];
    const a = await chooseAutomatically(input({ onTrial: (t) => seen.push(t.learningRate) }));
    const b = await chooseAutomatically(input());
    expect(b).toEqual(a);
    expect(seen).toEqual(RATES);
    const other = await chooseAutomatically(input({ seed: 5 }));
    expect(other.trials.map((t) => t.valLoss)).not.toEqual(a.trials.map((t) => t.valLoss));
  });

  it('a diverging copy is recorded diverged, in fitEpochs’ words, and the others’ numbers equal a run without it', async () => {
    const huge = 1e38;
    const withIt = await chooseAutomatically(input({ learningRates: [1e-3, huge, 1e-2] }));
    const without = await chooseAutomatically(input({ learningRates: [1e-3, 1e-2] }));
    expect(withIt.batched).toBe(true);
    expect(withIt.trials[1]!.diverged).toMatch(/^training diverged in epoch \d+: the loss is (NaN|-?Infinity) \(learningRate 1e\+38, optimizer adam\); nothing was written — use a smaller learningRate$/);
    // The same epochs; the losses to float rounding (a batched matMul of 3 copies may round a copy's
    // sums differently from one of 2), far below any difference a NaN would make.
    [withIt.trials[0]!, withIt.trials[2]!].forEach((t, i) => {
      const w = without.trials[i]!;
      expect({ learningRate: t.learningRate, epochs: t.epochs, diverged: t.diverged }).toEqual({ learningRate: w.learningRate, epochs: w.epochs, diverged: undefined });
      expect(Math.abs(t.valLoss! - w.valLoss!) / w.valLoss!).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(t.valAcc! - w.valAcc!)).toBeLessThanOrEqual(1e-6);
    });
    expect({ learningRate: withIt.learningRate, epochs: withIt.epochs }).toEqual({ learningRate: without.learningRate, epochs: without.epochs });
    // The sequential trial of that rate gives the very same message.
    const one = await chooseAutomatically(input({ learningRates: [huge, 1e-2] }));
    const seq = await rejection(chooseAutomatically(input({ learningRates: [huge] })));
    expect(seq.code).toBe('SPLITFIT_NUMERIC');
    expect(one.trials[0]!.diverged).toBe(withIt.trials[1]!.diverged);
    // Every rate diverging is the sweep's SPLITFIT_NUMERIC, in lockstep too.
    const all = await rejection(chooseAutomatically(input({ learningRates: [huge, huge] })));
    expect(all.code).toBe('SPLITFIT_NUMERIC');
    expect(all.message).toMatch(/every learning rate tried diverged/);
  });

  it('an unsupported optimizer, schedule or head runs the sequential path', async () => {
    // A given length (3 epochs) keeps the one-by-one sweeps short; it batches all the same (see above).
    const sgd = await chooseAutomatically(input({ optimizer: 'sgd', epochs: 3 }));
    expect(sgd.batched).toBeUndefined();
    expect(sgd.trials.map((t) => t.learningRate)).toEqual(RATES.map((r) => r * 10));
    const cosine = await chooseAutomatically(input({ fit: { batchSize: 16, lrSchedule: 'cosine' }, epochs: 3 }));
    expect(cosine.batched).toBeUndefined();
    const bn = await chooseAutomatically(input({ plan: planHead('gap,bn,dense:N:softmax', shape, true), epochs: 3 }));
    expect(bn.batched).toBeUndefined();
    expect(bn.method).toBe('sweep');
    // The reasons, from the built model.
    const t = await buildTrainable(ctx, planHead('gap,bn,dense:N:softmax', shape, true), 0);
    const d = await buildTrainable(ctx, plan, 0);
    try {
      expect(lockstepUnsupported(t.trained, { optimizer: 'adam' })).toMatch(/^layer head_bn has non-trainable weights$/);
      expect(lockstepUnsupported(d.trained, { optimizer: 'rmsprop' })).toMatch(/optimizer rmsprop/);
      expect(lockstepUnsupported(d.trained, { optimizer: 'adam', lrSchedule: 'plateau' })).toMatch(/lrSchedule plateau/);
      expect(lockstepUnsupported(d.trained, { optimizer: 'adam', lrSchedule: 'constant' })).toBeUndefined();
      const set = clusters(20, [12], k, 1);
      expect(await fitInLockstep({ head: t.trained, train: set, val: set, k, learningRates: RATES, fit: EARLY })).toBeUndefined();
    } finally {
      t.dispose();
      d.dispose();
    }
  });

  it('an abort between steps stops the lockstep run with SPLITFIT_INTERRUPTED and leaks no tensor', async () => {
    // A signal that turns aborted on its 6th read: the run checks it before each epoch and after each step.
    let reads = 0;
    const signal = { get aborted() { return ++reads > 5; }, reason: undefined } as unknown as AbortSignal;
    const t = await buildTrainable(ctx, plan, 0);
    const set = poolFeatureSet(clusters(64, shape, k, 1));
    try {
      const err = await expectNoTensorLeak(() => rejection(fitInLockstep({ head: t.trained, train: set, val: set, k, learningRates: RATES, fit: { ...EARLY, signal } })));
      expect(err.code).toBe('SPLITFIT_INTERRUPTED');
      expect(reads).toBe(6); // the epoch's check and four steps passed; the fifth step's check stopped it
    } finally {
      t.dispose();
    }
  });
});

describe('lockstep with per-copy weight decay, label smoothing and dropout rate (the search)', () => {
  const LONG: LockstepOptions = { ...EARLY, epochs: 120 };
  const specs = [
    { name: 'dropout on the pooled input, before the first Dense', template: 'gap,{d}dense:N:softmax' },
    { name: 'dropout after a hidden layer', template: 'gap,dense:16:relu,{d}dense:N:softmax' },
  ];
  const copies = [
    { learningRate: 1e-2, weightDecay: 0, labelSmoothing: 0, dropout: 0 },
    { learningRate: 3e-3, weightDecay: 1e-3, labelSmoothing: 0.1, dropout: 0.2 },
    { learningRate: 1e-2, weightDecay: 1e-4, labelSmoothing: 0, dropout: 0.5 },
  ];
  for (const c of specs) {
    it(`each copy is its own configuration's sequential trial: ${c.name}`, async () => {
      const k = 4;
      const shape = [2, 2, 24];
      const ctx = ctxOf(shape, k);
      const specOf = (rate: number): string => c.template.replace('{d}', rate === 0 ? '' : `dropout:${rate},`);
      const all = clusters(136, shape, k, 3);
      const train = poolFeatureSet(subsetFeatureSet(all, Array.from({ length: 96 }, (_, i) => i)));
      const val = poolFeatureSet(subsetFeatureSet(all, Array.from({ length: 40 }, (_, i) => 96 + i)));
      const t = await buildTrainable(ctx, planHead(specOf(0.5), shape, true), 7);
      let together: LockstepCopy[];
      try {
        together = (await fitInLockstep({
          head: t.trained,
          train,
          val,
          k,
          learningRates: copies.map((x) => x.learningRate),
          weightDecays: copies.map((x) => x.weightDecay),
          labelSmoothings: copies.map((x) => x.labelSmoothing),
          dropoutRates: copies.map((x) => x.dropout),
          fit: { ...LONG, seed: 7 },
        }))!;
      } finally {
        t.dispose();
      }
      const epochs: number[] = [];
      for (const [i, x] of copies.entries()) {
        const s = await sequential(ctx, planHead(specOf(x.dropout), shape, true), train, val, 7, { ...LONG, weightDecay: x.weightDecay, labelSmoothing: x.labelSmoothing }, x.learningRate);
        const b = together[i]!;
        if ('diverged' in s || b.diverged !== undefined) throw new Error(`copy ${i} diverged`);
        tf.dispose(s.weights);
        for (const key of ['loss', 'valLoss'] as const) expect(worstRel(b.history[key]!, s.history[key]!), `${key} of copy ${i}`).toBeLessThanOrEqual(TOLERANCE);
        for (const key of ['acc', 'valAcc'] as const) expect(worstAbs(b.history[key]!, s.history[key]!), `${key} of copy ${i}`).toBeLessThanOrEqual(TOLERANCE);
        expect(b.bestEpoch, `best epoch of copy ${i}`).toBe(s.history.bestEpoch);
        epochs.push(s.history.loss.length);
      }
      expect(new Set(epochs).size).toBeGreaterThan(1);
    });
  }

  it('per-copy values must come one per copy; dropout rates need exactly one Dropout layer', async () => {
    const ctx = ctxOf([12], 4);
    const set = clusters(40, [12], 4, 4);
    const args = { train: set, val: set, k: 4, learningRates: [1e-2, 1e-3], fit: { ...EARLY, seed: 1 } };
    const plain = await buildTrainable(ctx, planHead('dense:N:softmax', [12], false), 1);
    try {
      await expect(fitInLockstep({ ...args, head: plain.trained, weightDecays: [0] })).rejects.toThrow(/weightDecays has 1 values for 2 copies/);
      expect(await fitInLockstep({ ...args, head: plain.trained, dropoutRates: [0, 0.5] })).toBeUndefined();
    } finally {
      plain.dispose();
    }
  });
});

describe('searchHeads: configurations of a head shape in lockstep', () => {
  it('gives the leaderboard of the one-by-one search (same configurations, fold scores and epochs), with groups of several configurations', async () => {
    const k = 4;
    const shape = [2, 2, 24];
    const ctx = ctxOf(shape, k);
    const sets = new TrainingSets(clusters(80, shape, k, 9));
    // Six of the grid's configurations over its three head shapes: some shape has several.
    const input = { ctx, sets, options: { trials: 6, folds: 2 }, fixed: {}, poolFeatures: true, optimizer: 'adam' as const, batchSize: 16, lrSchedule: 'constant' as const, classWeights: undefined, seed: 2 };
    const seen: number[] = [];
    const batched = await searchHeads({ ...input, onTrial: (done) => seen.push(done) });
    const alone = await searchHeads({ ...input, lockstep: false });
    expect(seen).toEqual(Array.from({ length: 6 }, (_, i) => i + 1));
    expect(batched.tried).toBe(6);
    expect(batched.leaderboard.map((r) => r.config)).toEqual(alone.leaderboard.map((r) => r.config));
    batched.leaderboard.forEach((r, i) => {
      const a = alone.leaderboard[i]!;
      expect(r.epochs, JSON.stringify(r.config)).toBe(a.epochs);
      expect(worstAbs(r.folds, a.folds), JSON.stringify(r.config)).toBeLessThanOrEqual(TOLERANCE);
      expect(Math.abs(r.meanLoss - a.meanLoss) / a.meanLoss).toBeLessThanOrEqual(TOLERANCE);
    });
    expect(batched.winner).toEqual(alone.winner);
    // The test is about lockstep: some head shape had several configurations.
    const shapes = batched.leaderboard.map((r) => r.config.head.split(',').filter((l) => !l.startsWith('dropout:')).join(','));
    expect(shapes.length).toBeGreaterThan(new Set(shapes).size);
  });
});
