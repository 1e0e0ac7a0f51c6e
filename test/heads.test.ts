/**
 * Good heads by default (issue #13): restore-best, pooled `gap` training, the automatic learning rate
 * and length, weight decay / label smoothing / schedules, and the k-fold search — on a toy model's
 * cache, so every claim is checked in seconds.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { reproduceCommand } from '../src/cli/train-head.js';
import { SplitfitError } from '../src/errors.js';
import { extractFeatures } from '../src/extract/extract.js';
import { chooseAutomatically } from '../src/job/auto.js';
import { stratifiedFolds } from '../src/job/folds.js';
import { TrainingSets, planHead } from '../src/job/head-trainer.js';
import { searchGrid } from '../src/job/search.js';
import { trainHead } from '../src/job/train-head.js';
import { validateTrainHeadOptions } from '../src/job/options.js';
import { buildHead } from '../src/model/head-spec.js';
import { saveModel } from '../src/model/io.js';
import { memoryBatches } from '../src/train/batches.js';
import { type FeatureSet, poolFeatureSet } from '../src/train/feature-set.js';
import { fitEpochs, PLATEAU } from '../src/train/fit.js';
import { makeOptimizer, trainStep } from '../src/train/step.js';
import { rng } from '../src/random.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { residualToyModel } from './helpers/models.js';

// Counts forward passes of every prepared base: the search and the sweep must never run one.
const baseRuns = vi.hoisted(() => ({ count: 0 }));
vi.mock('../src/extract/prepare.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../src/extract/prepare.js')>();
  return {
    ...m,
    prepareBase: async (o: Parameters<typeof m.prepareBase>[0]) => {
      const b = await m.prepareBase(o);
      return {
        ...b,
        run: (x: tf.Tensor4D) => {
          baseRuns.count++;
          return b.run(x);
        },
      };
    },
  };
});

/** A seeded set of [d] vectors, label = sign of the first coordinate; `flip` inverts the labels. */
function vectors(n: number, d: number, seed: number, flip = false): FeatureSet {
  const r = rng(seed);
  const x = new Float32Array(n * d).map(() => r() * 2 - 1);
  const labels = Array.from({ length: n }, (_, i) => (x[i * d]! > 0 !== flip ? 1 : 0));
  return { ids: labels.map((_, i) => `s${i}`), labels, x, featureShape: [d], views: 1 };
}

const headWeights = async (dir: string): Promise<Buffer> => readFile(join(dir, 'head', 'weights.bin'));
const json = async (path: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;

describe('restore-best and the loss options (train/)', () => {
  it('early stopping returns the weights of the epoch with the best validation loss, not the last ones', async () => {
    // Validation labels are the training labels inverted: the better the head fits, the worse its validation loss.
    const train = vectors(64, 4, 1);
    const val = vectors(32, 4, 2, true);
    const head = await buildHead(residualToyModel(), 'block2_add', [4], { spec: 'dense:N:softmax', numClasses: 2, seed: 3 });
    const snapshots: tf.Tensor[][] = [];
    const before = tf.memory().numTensors;
    const history = await fitEpochs(head, { source: memoryBatches(train, 16, 0), valSet: val }, 0, undefined, 2, {
      epochs: 30,
      batchSize: 16,
      optimizer: 'adam',
      learningRate: 0.05,
      earlyStopping: { patience: 3 },
      onEpoch: () => snapshots.push(head.getWeights().map((w) => w.clone())),
    });
    const valLoss = history.valLoss!;
    const best = valLoss.indexOf(Math.min(...valLoss)) + 1;
    expect(valLoss.at(-1)!).toBeGreaterThan(valLoss[0]!); // the run's validation loss did rise
    expect(history.bestEpoch).toBe(best);
    expect(history.loss).toHaveLength(best + 3); // stopped after `patience` epochs without improvement
    const kept = head.getWeights();
    snapshots[best - 1]!.forEach((w, i) => expect(Array.from(kept[i]!.dataSync())).toEqual(Array.from(w.dataSync())));
    // …and they are not the last epoch's weights.
    expect(Array.from(kept[0]!.dataSync())).not.toEqual(Array.from(snapshots.at(-1)![0]!.dataSync()));
    for (const s of snapshots) for (const t of s) t.dispose();
    expect(tf.memory().numTensors).toBe(before); // the best-weights snapshot is freed
  });

  it('label smoothing and weight decay change the loss exactly as their formulas say', async () => {
    const set = vectors(8, 4, 5);
    const head = await buildHead(residualToyModel(), 'block2_add', [4], { spec: 'dense:N:softmax', numClasses: 2, seed: 1 });
    const p = tf.tidy(() => (head.predict(tf.tensor(set.x, [8, 4])) as tf.Tensor).arraySync() as number[][]);
    const kernel = Array.from(head.getWeights()[0]!.dataSync());
    const eps = 0.2;
    const wd = 0.01;
    const expected = p.reduce((s, row, i) => s - row.reduce((t, pj, j) => t + ((j === set.labels[i] ? 1 - eps : 0) + eps / 2) * Math.log(pj), 0), 0) / 8 + wd * kernel.reduce((s, w) => s + w * w, 0);
    const optimizer = makeOptimizer('sgd', 0); // a zero step: the returned loss is the pre-step one
    const r = trainStep(head, optimizer, { x: set.x, labels: set.labels, views: new Array(8).fill(0) }, 2, { labelSmoothing: eps, weightDecay: wd });
    optimizer.dispose();
    expect(r.loss).toBeCloseTo(expected, 5);
  });

  it('cosine decays the learning rate per epoch; plateau halves it after PLATEAU.patience epochs without improvement', async () => {
    const train = vectors(32, 4, 1);
    const run = async (lrSchedule: 'cosine' | 'plateau', valSet?: FeatureSet): Promise<number[]> => {
      const head = await buildHead(residualToyModel(), 'block2_add', [4], { spec: 'dense:N:softmax', numClasses: 2, seed: 3 });
      const h = await fitEpochs(head, { source: memoryBatches(train, 16, 0), valSet }, 0, undefined, 2, { epochs: 8, batchSize: 16, optimizer: 'adam', learningRate: 0.1, lrSchedule });
      return h.learningRates;
    };
    const cosine = await run('cosine');
    expect(cosine).toHaveLength(8);
    cosine.forEach((lr, e) => expect(lr).toBeCloseTo(0.1 * 0.5 * (1 + Math.cos((Math.PI * e) / 8)), 12));
    // The inverted validation set gets worse every epoch: epoch 1 stays best.
    const plateau = await run('plateau', vectors(32, 4, 2, true));
    const p = PLATEAU.patience;
    expect(plateau.slice(0, p + 1)).toEqual(new Array(p + 1).fill(0.1));
    expect(plateau[p + 1]).toBeCloseTo(0.1 * PLATEAU.factor, 12);
  });
});

describe('train-head on a toy cache', () => {
  let dir: string;
  let cache: string;
  let modelJson: string;
  let extraRuns = 0;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-heads-'));
    const data = join(dir, 'emoji');
    await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places'], perClass: 20, testFraction: 0 });
    await saveModel(residualToyModel(), join(dir, 'toy'));
    modelJson = join(dir, 'toy', 'model.json');
    cache = join(dir, 'cache');
    const before = baseRuns.count;
    await extractFeatures({ model: modelJson, boundary: 'block2_add', data: join(data, 'train'), cache });
    extraRuns = baseRuns.count - before;
  });

  it('a gap head trained on features pooled once predicts as the one trained on the maps (≤ 1e-5), and keeps its gap layer', async () => {
    const common = { cache, head: 'gap,dense:16:relu,dense:N:softmax', epochs: 6, learningRate: 0.01, batchSize: 8, validationSplit: 0.2, seed: 4 };
    const pooled = await trainHead({ ...common, out: join(dir, 'pooled') });
    const maps = await trainHead({ ...common, out: join(dir, 'maps'), poolFeatures: false });
    const x = tf.randomUniform([5, 16, 16, 3], 0, 1, 'float32', 9);
    const a = pooled.model.predict(x) as tf.Tensor;
    const b = maps.model.predict(x) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!).toBeLessThanOrEqual(1e-5);
    for (let e = 0; e < 6; e++) expect(pooled.history.valLoss![e]!).toBeCloseTo(maps.history.valLoss![e]!, 5);
    expect(pooled.head.layers.map((l) => l.getClassName())).toEqual(['InputLayer', 'GlobalAveragePooling2D', 'Dense', 'Dense']);
    expect((await json(join(dir, 'pooled', 'splitfit.json')))['training']).toMatchObject({ pooledFeatures: true });
    expect((await json(join(dir, 'maps', 'splitfit.json')))['training']).toMatchObject({ pooledFeatures: false });
    // flatten heads need the maps: never pooled.
    expect(planHead('flatten,dense:N:softmax', [4, 4, 8], true).pooledSpec).toBeUndefined();
    expect(planHead('gap,dense:N:softmax', [4, 4, 8], true).pooledSpec).toBe('dense:N:softmax');
  });

  it('without learningRate/epochs it chooses them on the training data: deterministic, recorded, and reproduced by the explicit values', async () => {
    const a = await trainHead({ cache, out: join(dir, 'auto-a'), seed: 2, validationSplit: 0.25, batchSize: 8 });
    const b = await trainHead({ cache, out: join(dir, 'auto-b'), seed: 2, validationSplit: 0.25, batchSize: 8 });
    expect(a.auto).toBeDefined();
    expect(a.auto!.method).toBe('sweep');
    expect(a.auto!.chosen).toEqual(['learningRate', 'epochs']);
    expect(a.auto!.trials.map((t) => t.learningRate)).toEqual([1e-3, 3e-3, 1e-2, 3e-2]);
    // A hold-out is a fifth of the 45 training samples (the user's 15 validation samples are not in
    // it); three of them are used, as 9 samples are far fewer than 200.
    expect(a.auto!.holdout).toBe(9);
    expect(a.auto!.holdouts).toBe(3);
    expect(b.auto).toEqual(a.auto);
    expect((await headWeights(join(dir, 'auto-a'))).equals(await headWeights(join(dir, 'auto-b')))).toBe(true);
    expect(a.settings).toMatchObject({ learningRate: a.auto!.learningRate, epochs: a.auto!.epochs });
    expect(a.history.loss).toHaveLength(a.auto!.epochs);
    // Recorded in history.json and splitfit.json.
    expect((await json(join(dir, 'auto-a', 'history.json')))['auto']).toEqual(a.auto);
    expect((await json(join(dir, 'auto-a', 'splitfit.json')))['training']).toMatchObject({ learningRate: a.auto!.learningRate, epochs: a.auto!.epochs, auto: { method: 'sweep', chosen: ['learningRate', 'epochs'] } });
    // The same values given explicitly train the same head: the choice is all the sweep does.
    const explicit = await trainHead({ cache, out: join(dir, 'auto-x'), seed: 2, validationSplit: 0.25, batchSize: 8, learningRate: a.auto!.learningRate, epochs: a.auto!.epochs });
    expect(explicit.auto).toBeUndefined();
    expect((await headWeights(join(dir, 'auto-x'))).equals(await headWeights(join(dir, 'auto-a')))).toBe(true);
  });

  it('explicit learningRate and epochs mean exactly what they say; one given fixes only itself', async () => {
    const both = await trainHead({ cache, out: join(dir, 'explicit'), learningRate: 0.005, epochs: 3, batchSize: 8 });
    expect(both.auto).toBeUndefined();
    expect(both.history.loss).toHaveLength(3);
    expect(both.history.learningRates).toEqual([0.005, 0.005, 0.005]);
    const m = await json(join(dir, 'explicit', 'splitfit.json'));
    expect(m['training']).toMatchObject({ learningRate: 0.005, epochs: 3 });
    expect((m['training'] as Record<string, unknown>)['auto']).toBeUndefined();
    const epochsOnly = await trainHead({ cache, out: join(dir, 'epochs-only'), epochs: 4, batchSize: 8 });
    expect(epochsOnly.auto!.chosen).toEqual(['learningRate']);
    expect(epochsOnly.auto!.trials.every((t) => t.epochs === 4)).toBe(true);
    expect(epochsOnly.history.loss).toHaveLength(4);
    const lrOnly = await trainHead({ cache, out: join(dir, 'lr-only'), learningRate: 0.02, batchSize: 8 });
    expect(lrOnly.auto!.chosen).toEqual(['epochs']);
    expect(lrOnly.auto!.trials.map((t) => t.learningRate)).toEqual([0.02]);
    expect(lrOnly.settings.learningRate).toBe(0.02);
  });

  it('streamed features (over memoryBudget) fall back to the fixed values, recorded as such; search refuses them', async () => {
    const r = await trainHead({ cache, out: join(dir, 'fallback'), memoryBudget: 1024, batchSize: 8 });
    expect(r.mode).toBe('stream');
    expect(r.auto).toMatchObject({ method: 'fallback', learningRate: 1e-3, epochs: 10, trials: [] });
    expect(r.history.loss).toHaveLength(10);
    await expect(trainHead({ cache, out: join(dir, 'fallback-s'), memoryBudget: 1024, search: true })).rejects.toMatchObject({ code: 'SPLITFIT_USAGE', option: 'memoryBudget' });
  });

  it('a diverged sweep trial is recorded and skipped; all diverged is SPLITFIT_NUMERIC', async () => {
    const set = vectors(40, 8, 11);
    const ctx = { source: residualToyModel(), boundary: 'block2_add', featureShape: [8], numClasses: 2 };
    const input = { ctx, plan: { spec: 'dense:N:softmax' }, sets: new TrainingSets(set), learningRate: undefined, epochs: undefined, optimizer: 'adam' as const, seed: 0, fit: { batchSize: 8 } };
    const choice = await chooseAutomatically({ ...input, learningRates: [1e38, 0.01] });
    expect(choice.trials[0]!.diverged).toMatch(/diverged/);
    expect(choice.trials[1]!.diverged).toBeUndefined();
    expect(choice.learningRate).toBe(0.01);
    const err = await chooseAutomatically({ ...input, learningRates: [1e38] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SplitfitError);
    expect((err as SplitfitError).code).toBe('SPLITFIT_NUMERIC');
  });

  it('--search never runs the base, writes search.json, and trains exactly the leaderboard winner', async () => {
    expect(extraRuns).toBeGreaterThan(0); // the counter sees extraction
    const before = baseRuns.count;
    const r = await trainHead({ cache, out: join(dir, 'search'), search: { folds: 3, trials: 5 }, batchSize: 8, seed: 1 });
    expect(baseRuns.count).toBe(before);
    const report = r.search!;
    expect(report.tried).toBe(5);
    expect(report.leaderboard.map((row) => row.rank)).toEqual([1, 2, 3, 4, 5].slice(0, report.leaderboard.length));
    for (const row of report.leaderboard) {
      expect(row.folds).toHaveLength(3);
      expect(row.mean).toBeCloseTo(row.folds.reduce((s, x) => s + x, 0) / 3, 12);
    }
    const means = report.leaderboard.map((row) => row.mean);
    expect([...means].sort((x, y) => y - x)).toEqual(means);
    const top = report.leaderboard[0]!;
    expect(r.settings).toEqual({ ...top.config, epochs: top.epochs });
    const written = await json(join(dir, 'search', 'search.json'));
    expect(written['leaderboard']).toEqual(JSON.parse(JSON.stringify(report.leaderboard)));
    expect((await json(join(dir, 'search', 'splitfit.json')))['head']).toBe(top.config.head);
    // The report shows the same leaderboard, winner first.
    const board = (await json(join(dir, 'search', 'report.json')))['leaderboard'] as { header: string[]; rows: string[][] };
    expect(board.rows.map((row) => [Number(row[0]), row[1], Number(row[2])])).toEqual(report.leaderboard.map((row) => [row.rank, row.config.head, row.config.learningRate]));
    expect(board.rows[0]![6]).toBe(`${top.mean.toFixed(4)} ± ${top.sd.toFixed(4)}`);
    // The winner as explicit options trains the same head, bit for bit.
    const again = await trainHead({ cache, out: join(dir, 'search-x'), batchSize: 8, seed: 1, head: r.settings.head, learningRate: r.settings.learningRate, epochs: r.settings.epochs, weightDecay: r.settings.weightDecay, labelSmoothing: r.settings.labelSmoothing });
    expect((await headWeights(join(dir, 'search-x'))).equals(await headWeights(join(dir, 'search')))).toBe(true);
    expect(again.auto).toBeUndefined();
    // Same seed, same search.
    const r2 = await trainHead({ cache, out: join(dir, 'search-2'), search: { folds: 3, trials: 5 }, batchSize: 8, seed: 1 });
    const strip = (rows: typeof report.leaderboard): unknown => rows.map(({ seconds: _s, ...row }) => row);
    expect(strip(r2.search!.leaderboard)).toEqual(strip(report.leaderboard));
    expect((await headWeights(join(dir, 'search-2'))).equals(await headWeights(join(dir, 'search')))).toBe(true);
  });

  it('the CLI: --early-stopping says which epoch it kept; --search prints a command that reproduces the winner bit for bit', async () => {
    const es = await runCli(['train-head', '--cache', cache, '--out', join(dir, 'cli-es'), '--epochs', '40', '--lr', '0.05', '--early-stopping', '2', '--validation-split', '0.25', '--batch-size', '8', '--json', ...backendArgs()]);
    expect(es.status, es.stdout.slice(-300) + es.stderr.slice(-300)).toBe(0);
    const history = es.json['history'] as { bestEpoch: number; valLoss: number[] };
    expect(es.json['bestEpoch']).toBe(history.bestEpoch);
    expect(history.bestEpoch).toBe(history.valLoss.indexOf(Math.min(...history.valLoss)) + 1);
    expect((await json(join(dir, 'cli-es', 'history.json')))['bestEpoch']).toBe(history.bestEpoch);
    const human = await runCli(['train-head', '--cache', cache, '--out', join(dir, 'cli-es'), '--epochs', '40', '--lr', '0.05', '--early-stopping', '2', '--validation-split', '0.25', '--batch-size', '8', ...backendArgs()]);
    expect(human.stdout).toContain(`kept the weights of epoch ${history.bestEpoch}, the best`);

    const s = await runCli(['train-head', '--cache', cache, '--out', join(dir, 'cli-search'), '--search', '--search-trials', '3', '--batch-size', '8', '--seed', '2', '--json', ...backendArgs()]);
    expect(s.status, s.stdout.slice(-300) + s.stderr.slice(-300)).toBe(0);
    const search = s.json['search'] as { command: string; leaderboard: { config: { head: string } }[] };
    expect(search.leaderboard).toHaveLength(3);
    expect(search.command).toMatch(/^splitfit train-head --cache \S+ --out \S+ --batch-size 8 --seed 2 --backend \S+ --head \S+ --lr \S+ --epochs \d+/);
    const args = search.command.split(' ').slice(1).map((a) => (a === join(dir, 'cli-search') ? join(dir, 'cli-again') : a));
    const again = await runCli([...args, '--json']);
    expect(again.status, again.stdout.slice(-300) + again.stderr.slice(-300)).toBe(0);
    expect(again.json['auto']).toBeUndefined();
    expect((await headWeights(join(dir, 'cli-again'))).equals(await headWeights(join(dir, 'cli-search')))).toBe(true);
    expect((await json(join(dir, 'cli-search', 'splitfit.json')))['training']).toMatchObject({ search: { file: 'search.json', folds: 3, tried: 3 } });
  });

  it('a dropout head trains to the same weights for the same seed', async () => {
    const o = { cache, head: 'gap,dense:16:relu,dropout:0.5,dense:N:softmax', epochs: 3, learningRate: 0.01, batchSize: 8, seed: 7 };
    await trainHead({ ...o, out: join(dir, 'drop-a') });
    await trainHead({ ...o, out: join(dir, 'drop-b') });
    await trainHead({ ...o, seed: 8, out: join(dir, 'drop-c') });
    expect((await headWeights(join(dir, 'drop-a'))).equals(await headWeights(join(dir, 'drop-b')))).toBe(true);
    expect((await headWeights(join(dir, 'drop-a'))).equals(await headWeights(join(dir, 'drop-c')))).toBe(false);
  });

  it('the search keeps explicitly given options fixed', () => {
    const grid = searchGrid([7, 7, 1280], { learningRate: 0.01, labelSmoothing: 0 });
    expect(new Set(grid.map((c) => c.learningRate))).toEqual(new Set([0.01]));
    expect(new Set(grid.map((c) => c.labelSmoothing))).toEqual(new Set([0]));
    expect(new Set(grid.map((c) => c.head))).toContain('gap,dense:256:relu,dropout:0.5,dense:N:softmax');
    expect(grid.some((c) => c.head.startsWith('flatten'))).toBe(false); // 62,720 features: flatten left out
    expect(searchGrid([4, 4, 8], {}).some((c) => c.head === 'flatten,dense:N:softmax')).toBe(true);
    expect(new Set(searchGrid([4, 4, 8], { head: 'gap,dense:N:softmax' }).map((c) => c.head))).toEqual(new Set(['gap,dense:N:softmax']));
  });
});

describe('helpers and validation', () => {
  it('stratified folds are seeded and balanced per class', () => {
    const labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2];
    const f = stratifiedFolds(labels, 3, 5);
    expect(stratifiedFolds(labels, 3, 5)).toEqual(f);
    expect(stratifiedFolds(labels, 3, 6)).not.toEqual(f);
    for (let k = 0; k < 3; k++) {
      expect(f.filter((g) => g === k)).toHaveLength(5);
      for (const y of [0, 1]) expect(labels.filter((l, i) => l === y && f[i] === k)).toHaveLength(2);
    }
  });

  it('pooling a feature set is the mean over the map', () => {
    const set: FeatureSet = { ids: ['a'], labels: [0], x: Float32Array.from([1, 10, 3, 20, 5, 30, 7, 40]), featureShape: [2, 2, 2], views: 1 };
    expect(Array.from(poolFeatureSet(set).x)).toEqual([4, 25]);
    expect(poolFeatureSet(set).featureShape).toEqual([2]);
  });

  it('the printed command replaces the search flags by the winner', () => {
    const cmd = reproduceCommand(['--cache', 'c', '--out', 'm', '--search', '--search-trials', '8', '--lr', '0.1', '--seed', '3', '--json'], {
      head: 'gap,dense:256:relu,dropout:0.5,dense:N:softmax',
      learningRate: 0.003,
      epochs: 17,
      weightDecay: 0.0001,
      labelSmoothing: 0,
    });
    expect(cmd).toBe('splitfit train-head --cache c --out m --seed 3 --head gap,dense:256:relu,dropout:0.5,dense:N:softmax --lr 0.003 --epochs 17 --weight-decay 0.0001');
  });

  it('rejects bad new options with coded errors naming the option', () => {
    const bad = (o: Record<string, unknown>, option: string): void => {
      let err: unknown;
      try {
        validateTrainHeadOptions({ out: 'x', ...o });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SplitfitError);
      expect((err as SplitfitError).code).toBe('SPLITFIT_USAGE');
      expect((err as SplitfitError).option).toBe(option);
    };
    bad({ weightDecay: -1 }, 'weightDecay');
    bad({ labelSmoothing: 1 }, 'labelSmoothing');
    bad({ lrSchedule: 'step' }, 'lrSchedule');
    bad({ search: true, refreshEvery: 2 }, 'search');
    bad({ search: { folds: 1 } }, 'search.folds');
    expect(validateTrainHeadOptions({ out: 'x' })).toMatchObject({ lrSchedule: 'constant', search: false, poolFeatures: true });
    expect(validateTrainHeadOptions({ out: 'x' }).learningRate).toBeUndefined();
  });
});
