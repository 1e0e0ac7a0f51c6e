import { SplitfitError, throwIfAborted } from '../errors.js';
import { epochSeed, rng, shuffled } from '../random.js';
import { featureSize, firstView, subsetFeatureSet } from '../train/feature-set.js';
import type { FitOptions, History, LrSchedule } from '../train/fit.js';
import type { LossOptions, OptimizerName } from '../train/step.js';
import type { Task } from '../data/types.js';
import { OUTPUT_ACTIVATION, parseHeadSpec } from '../model/head-spec.js';
import { foldRows, stratifiedFolds } from './folds.js';
import { buildTrainable, type HeadContext, planHead, runTrial, type TrainingSets } from './head-trainer.js';
import { fitInLockstep } from '../train/batched-trials.js';

/**
 * `search`: a seeded k-fold search over head configurations on the cached training features only
 * (the base never runs). Each configuration is trained on k − 1 folds and scored on the k-th, k times,
 * with early stopping on the fold loss and the best epoch restored (as the automatic defaults do); the
 * leaderboard ranks by mean fold accuracy at those epochs, ties by the lower mean loss. The winner is then trained on all training data, with its median best epoch, by the
 * ordinary fit — so the printed explicit command reproduces it. Configurations of one head shape
 * (dropout aside) train each fold in lockstep (`train/batched-trials.ts`) when the head and the
 * optimizer allow it, with the numbers their one-by-one trials give, to float rounding.
 */
export interface SearchOptions {
  /** @default 3 */
  folds?: number;
  /**
   * Configurations tried (a seeded sample of the grid). Deterministic, unlike a time budget. On 1,000
   * MobileNetV2 samples, 8 took 111 CPU core·s and 12 took 152 (bench/heads.ts, loaded machine). @default 8
   */
  trials?: number;
  /**
   * Stop starting new configurations after this many seconds (checked before each head shape's
   * configurations, which train together). The result then depends on the machine's speed. @default no limit
   */
  seconds?: number;
}

export const SEARCH = {
  folds: 3,
  trials: 8,
  maxEpochs: 60,
  patience: 8,
  learningRates: [1e-3, 3e-3, 1e-2, 3e-2],
  weightDecays: [0, 1e-4, 1e-3],
  labelSmoothings: [0, 0.1],
  dropouts: [0, 0.2, 0.5],
  /** Flatten heads train on the whole map every step; above this many features per sample they are left out of the grid. */
  maxFlattenFeatures: 16_384,
} as const;

export interface SearchConfig {
  head: string;
  learningRate: number;
  weightDecay: number;
  labelSmoothing: number;
}

export interface LeaderboardRow {
  rank: number;
  config: SearchConfig;
  /** Epochs the configuration trains for on all data: the median of its folds' best epochs. */
  epochs: number;
  /** Mean and sample standard deviation of the fold accuracies. */
  mean: number;
  sd: number;
  folds: number[];
  meanLoss: number;
  seconds: number;
}

export interface SearchReport {
  format: 'splitfit-search/1';
  /** What the folds are ranked by: accuracy (classify), macro AUC (multilabel), R² (regress); higher is better. */
  metric: SearchMetric;
  folds: number;
  seed: number;
  /** Configurations in the grid, tried, and why the search stopped. */
  grid: number;
  tried: number;
  stoppedBy: 'trials' | 'time' | 'grid';
  leaderboard: LeaderboardRow[];
  /** Configurations whose training diverged in some fold (`SPLITFIT_NUMERIC`), skipped. */
  diverged: { config: SearchConfig; message: string }[];
  winner: SearchConfig & { epochs: number };
}

export type SearchMetric = 'accuracy' | 'macro AUC' | 'R²';

/** The metric `--search` ranks a task's configurations by (stated in search.json and the leaderboard). */
export const SEARCH_METRIC: Readonly<Record<Task, SearchMetric>> = { classify: 'accuracy', multilabel: 'macro AUC', regress: 'R²' };

export interface SearchInput {
  ctx: HeadContext;
  sets: TrainingSets;
  options: SearchOptions;
  /** Dimensions the caller fixed explicitly; they are not searched. */
  fixed: Partial<SearchConfig> & { epochs?: number | undefined };
  poolFeatures: boolean;
  optimizer: OptimizerName;
  batchSize: number;
  lrSchedule: LrSchedule;
  classWeights: readonly number[] | undefined;
  /** The task's loss options (see `job/task.ts`); its task picks the heads' output layer and the metric. @default classify */
  loss?: LossOptions;
  seed: number;
  signal?: AbortSignal | undefined;
  onTrial?: (done: number, total: number, row: LeaderboardRow | undefined) => void;
  /** Train the configurations of a head shape in lockstep. `false` runs each one by one: the reference the lockstep path is tested and benchmarked against. @default true */
  lockstep?: boolean;
}

/** Head shapes of the grid, with `{d}` where a dropout layer goes (left out for rate 0). */
function headTemplates(featureShape: readonly number[], task: Task): string[] {
  const flatten = featureSize(featureShape) <= SEARCH.maxFlattenFeatures;
  const out = `dense:N:${OUTPUT_ACTIVATION[task]}`;
  if (featureShape.length === 1) return [`{d}${out}`, `dense:256:relu,{d}${out}`];
  if (featureShape.length === 3) return [`gap,{d}${out}`, `gap,dense:256:relu,{d}${out}`, ...(flatten ? [`flatten,{d}${out}`] : [])];
  return [`flatten,{d}${out}`, `flatten,dense:256:relu,{d}${out}`];
}

export function searchGrid(featureShape: readonly number[], fixed: SearchInput['fixed'], task: Task = 'classify'): SearchConfig[] {
  // Label smoothing is a classification loss option: the other tasks search without it.
  const smoothings = task === 'classify' ? SEARCH.labelSmoothings : [0];
  const heads = fixed.head !== undefined ? [fixed.head] : headTemplates(featureShape, task).flatMap((t) => SEARCH.dropouts.map((d) => t.replace('{d}', d === 0 ? '' : `dropout:${d},`)));
  const out: SearchConfig[] = [];
  for (const head of heads)
    for (const learningRate of fixed.learningRate !== undefined ? [fixed.learningRate] : SEARCH.learningRates)
      for (const weightDecay of fixed.weightDecay !== undefined ? [fixed.weightDecay] : SEARCH.weightDecays)
        for (const labelSmoothing of fixed.labelSmoothing !== undefined ? [fixed.labelSmoothing] : smoothings) out.push({ head, learningRate, weightDecay, labelSmoothing });
  return out;
}

const mean = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
const sd = (xs: readonly number[]): number => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((s, x) => s + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A configuration's fold scores, losses and kept epochs, its time, or the divergence that ended it. */
interface Outcome {
  accs: number[];
  losses: number[];
  epochs: number[];
  seconds: number;
  diverged?: string;
}

/** The rate of a head spec's (first) dropout layer, 0 without one. */
function dropoutRateOf(head: string): number {
  const op = parseHeadSpec(head).find((o) => o.kind === 'dropout');
  return op?.kind === 'dropout' ? op.rate : 0;
}

/**
 * The configurations (indices into `order`) grouped by head shape with the dropout layers left out,
 * each group in the order of its first member, members in the seeded order: a group trains in lockstep.
 */
function lockstepGroups(order: readonly SearchConfig[]): number[][] {
  const groups = new Map<string, number[]>();
  order.forEach((c, i) => {
    const shape = JSON.stringify(parseHeadSpec(c.head).filter((o) => o.kind !== 'dropout'));
    groups.set(shape, [...(groups.get(shape) ?? []), i]);
  });
  return [...groups.values()];
}

export async function searchHeads(s: SearchInput): Promise<SearchReport> {
  const k = s.options.folds ?? SEARCH.folds;
  const budget = s.options.trials ?? SEARCH.trials;
  const n = s.sets.maps.ids.length;
  if (n < 2 * k) {
    throw new SplitfitError('SPLITFIT_USAGE', `\`search\` with ${k} folds needs at least ${2 * k} training samples, got ${n}; use fewer \`search.folds\` or more data`, { option: 'search' });
  }
  const task = s.loss?.task ?? 'classify';
  const grid = searchGrid(s.ctx.featureShape, s.fixed, task);
  const order = shuffled(grid, rng(epochSeed(s.seed, -3))).slice(0, budget);
  const folds = stratifiedFolds(s.sets.maps.labels, k, s.seed);
  const started = performance.now();
  const rows: Omit<LeaderboardRow, 'rank'>[] = [];
  const diverged: SearchReport['diverged'] = [];
  let stoppedBy: SearchReport['stoppedBy'] = order.length < budget ? 'grid' : 'trials';
  const fitOf = (config: SearchConfig): FitOptions => ({
    epochs: s.fixed.epochs ?? SEARCH.maxEpochs,
    batchSize: s.batchSize,
    optimizer: s.optimizer,
    learningRate: config.learningRate,
    weightDecay: config.weightDecay,
    labelSmoothing: config.labelSmoothing,
    lrSchedule: s.lrSchedule,
    classWeights: s.classWeights,
    ...s.loss,
    signal: s.signal,
    ...(s.fixed.epochs === undefined ? { earlyStopping: { patience: SEARCH.patience, monitor: 'loss' as const } } : {}),
  });
  /** A trial's fold score: multilabel ranks by the fold's macro AUC at the kept epoch (per-label accuracy at 0.5 moves in coarse steps). */
  const scoreOf = (t: { history: History; bestEpoch: number; valAcc: number }): number => (task === 'multilabel' ? (t.history.valAuc?.[t.bestEpoch - 1] ?? t.valAcc) : t.valAcc);
  /** A configuration's k folds, one trial each (the sequential path). */
  const foldsOneByOne = async (config: SearchConfig): Promise<Omit<Outcome, 'seconds'>> => {
    const plan = planHead(config.head, s.ctx.featureShape, s.poolFeatures);
    const all = s.sets.for(plan);
    const o: Omit<Outcome, 'seconds'> = { accs: [], losses: [], epochs: [] };
    try {
      for (let f = 0; f < k; f++) {
        const r = foldRows(folds, f);
        const t = await runTrial(s.ctx, plan, subsetFeatureSet(all, r.train), firstView(subsetFeatureSet(all, r.val)), s.seed, fitOf(config));
        o.accs.push(scoreOf(t));
        o.losses.push(t.valLoss);
        o.epochs.push(t.bestEpoch);
      }
    } catch (err) {
      if (!(err instanceof SplitfitError && err.code === 'SPLITFIT_NUMERIC')) throw err;
      return { ...o, diverged: err.message };
    }
    return o;
  };
  /**
   * Configurations of one head shape (they differ in learning rate, weight decay, label smoothing
   * and dropout rate), each fold's trials trained in lockstep (`train/batched-trials.ts`): the
   * numbers the sequential trials give, to float rounding. A configuration that diverges in a fold
   * is not run on the later ones, as the sequential path stops at its first divergence. Undefined,
   * having trained nothing, when the head or the options cannot be batched.
   */
  const foldsInLockstep = async (configs: readonly SearchConfig[]): Promise<Omit<Outcome, 'seconds'>[] | undefined> => {
    // The head is built from a member with the Dropout layer, if any has one; a member without it
    // trains with rate 0 (its sequential head has the same Dense initialisers, see head-spec.ts).
    const rates = configs.map((c) => dropoutRateOf(c.head));
    const plan = planHead(configs[rates.findIndex((r) => r > 0)]?.head ?? configs[0]!.head, s.ctx.featureShape, s.poolFeatures);
    const all = s.sets.for(plan);
    const out = configs.map((): Omit<Outcome, 'seconds'> => ({ accs: [], losses: [], epochs: [] }));
    for (let f = 0; f < k; f++) {
      const alive = configs.flatMap((_, j) => (out[j]!.diverged === undefined ? [j] : []));
      if (alive.length === 0) break;
      const r = foldRows(folds, f);
      const t = await buildTrainable(s.ctx, plan, s.seed);
      let copies;
      try {
        copies = await fitInLockstep({
          head: t.trained,
          train: subsetFeatureSet(all, r.train),
          val: firstView(subsetFeatureSet(all, r.val)),
          k: s.ctx.numClasses,
          learningRates: alive.map((j) => configs[j]!.learningRate),
          weightDecays: alive.map((j) => configs[j]!.weightDecay),
          labelSmoothings: alive.map((j) => configs[j]!.labelSmoothing),
          // Members of one spec share its dropout layers; only specs that differ need per-copy rates.
          ...(new Set(configs.map((c) => c.head)).size > 1 ? { dropoutRates: alive.map((j) => rates[j]!) } : {}),
          fit: { ...fitOf(configs[0]!), seed: s.seed },
        });
      } finally {
        t.dispose();
      }
      // Whether a head batches does not depend on the fold: only the first one can say no.
      if (copies === undefined) return undefined;
      copies.forEach((c, m) => {
        const o = out[alive[m]!]!;
        if (c.diverged !== undefined) o.diverged = c.diverged;
        else {
          o.accs.push(scoreOf(c));
          o.losses.push(c.valLoss);
          o.epochs.push(c.bestEpoch);
        }
      });
    }
    return out;
  };
  /** Per configuration (index into `order`): its fold outcomes, or the divergence that ended it; undefined until tried. */
  const outcomes: (Outcome | undefined)[] = order.map(() => undefined);
  const rowOf = (i: number, o: Outcome): Omit<LeaderboardRow, 'rank'> => ({
    config: order[i]!,
    epochs: Math.max(1, Math.round(median(o.epochs))),
    mean: mean(o.accs),
    sd: sd(o.accs),
    folds: o.accs,
    meanLoss: mean(o.losses),
    seconds: o.seconds,
  });
  let done = 0;
  for (const members of lockstepGroups(order)) {
    if (s.options.seconds !== undefined && (performance.now() - started) / 1000 > s.options.seconds) {
      stoppedBy = 'time';
      break;
    }
    throwIfAborted(s.signal);
    const t0 = performance.now();
    const together = members.length > 1 && s.lockstep !== false ? await foldsInLockstep(members.map((i) => order[i]!)) : undefined;
    if (together !== undefined) {
      // A lockstep group's time is shared: each member gets an equal part.
      const seconds = (performance.now() - t0) / 1000 / members.length;
      members.forEach((i, j) => (outcomes[i] = { ...together[j]!, seconds }));
    } else {
      for (const i of members) {
        const t1 = performance.now();
        outcomes[i] = { ...(await foldsOneByOne(order[i]!)), seconds: 0 };
        outcomes[i]!.seconds = (performance.now() - t1) / 1000;
      }
    }
    for (const i of members) {
      const o = outcomes[i]!;
      s.onTrial?.(++done, order.length, o.diverged === undefined ? { rank: 0, ...rowOf(i, o) } : undefined);
    }
  }
  // Rows in the seeded order, whatever order the groups ran in.
  outcomes.forEach((o, i) => {
    if (o === undefined) return;
    if (o.diverged !== undefined) diverged.push({ config: order[i]!, message: o.diverged });
    else rows.push(rowOf(i, o));
  });
  // Ties keep the seeded trial order: the ranking is a pure function of the fold scores.
  const leaderboard = rows
    .map((r, i) => ({ r, i }))
    .sort((a, b) => b.r.mean - a.r.mean || a.r.meanLoss - b.r.meanLoss || a.i - b.i)
    .map(({ r }, i) => ({ rank: i + 1, ...r }));
  const top = leaderboard[0];
  if (!top) throw new SplitfitError('SPLITFIT_NUMERIC', `every configuration of the search diverged (${diverged.length}); give a smaller \`learningRate\``, { option: 'learningRate' });
  return {
    format: 'splitfit-search/1',
    metric: SEARCH_METRIC[task],
    folds: k,
    seed: s.seed,
    grid: grid.length,
    tried: rows.length + diverged.length,
    stoppedBy,
    leaderboard,
    diverged,
    winner: { ...top.config, epochs: s.fixed.epochs ?? top.epochs },
  };
}
