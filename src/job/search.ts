import { SplitfitError, throwIfAborted } from '../errors.js';
import { epochSeed, rng, shuffled } from '../random.js';
import { featureSize, firstView, subsetFeatureSet } from '../train/feature-set.js';
import type { FitOptions, LrSchedule } from '../train/fit.js';
import type { LossOptions, OptimizerName } from '../train/step.js';
import type { Task } from '../data/types.js';
import { OUTPUT_ACTIVATION } from '../model/head-spec.js';
import { foldRows, stratifiedFolds } from './folds.js';
import { type HeadContext, planHead, runTrial, type TrainingSets } from './head-trainer.js';

/**
 * `search`: a seeded k-fold search over head configurations on the cached training features only
 * (the base never runs). Each configuration is trained on k − 1 folds and scored on the k-th, k times,
 * with early stopping on the fold loss and the best epoch restored (as the automatic defaults do); the
 * leaderboard ranks by mean fold accuracy at those epochs, ties by the lower mean loss. The winner is then trained on all training data, with its median best epoch, by the
 * ordinary fit — so the printed explicit command reproduces it.
 */
export interface SearchOptions {
  /** @default 3 */
  folds?: number;
  /**
   * Configurations tried (a seeded sample of the grid). Deterministic, unlike a time budget. On 1,000
   * MobileNetV2 samples, 8 took 111 CPU core·s and 12 took 152 (bench/heads.ts, loaded machine). @default 8
   */
  trials?: number;
  /** Stop starting new configurations after this many seconds. The result then depends on the machine's speed. @default no limit */
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
  for (const [i, config] of order.entries()) {
    if (s.options.seconds !== undefined && (performance.now() - started) / 1000 > s.options.seconds) {
      stoppedBy = 'time';
      break;
    }
    throwIfAborted(s.signal);
    const t0 = performance.now();
    const plan = planHead(config.head, s.ctx.featureShape, s.poolFeatures);
    const all = s.sets.for(plan);
    const fit: FitOptions = {
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
    };
    const accs: number[] = [];
    const losses: number[] = [];
    const epochs: number[] = [];
    try {
      for (let f = 0; f < k; f++) {
        const r = foldRows(folds, f);
        const t = await runTrial(s.ctx, plan, subsetFeatureSet(all, r.train), firstView(subsetFeatureSet(all, r.val)), s.seed, fit);
        // Multilabel ranks by the fold's macro AUC at the kept epoch (per-label accuracy at 0.5 moves in coarse steps).
        accs.push(task === 'multilabel' ? (t.history.valAuc?.[t.bestEpoch - 1] ?? t.valAcc) : t.valAcc);
        losses.push(t.valLoss);
        epochs.push(t.bestEpoch);
      }
    } catch (err) {
      if (!(err instanceof SplitfitError && err.code === 'SPLITFIT_NUMERIC')) throw err;
      diverged.push({ config, message: err.message });
      s.onTrial?.(i + 1, order.length, undefined);
      continue;
    }
    const row = { config, epochs: Math.max(1, Math.round(median(epochs))), mean: mean(accs), sd: sd(accs), folds: accs, meanLoss: mean(losses), seconds: (performance.now() - t0) / 1000 };
    rows.push(row);
    s.onTrial?.(i + 1, order.length, { rank: 0, ...row });
  }
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
