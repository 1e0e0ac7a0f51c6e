import { SplitfitError } from '../errors.js';
import { DEFAULT_LABEL_THRESHOLD } from '../model/metadata.js';
import { rocAuc } from './metrics.js';

/**
 * Metrics of the regression and multi-label tasks. Inputs are row-major [n × k] arrays: predictions
 * (regression values, or sigmoid probabilities) and targets (values, or 0/1 per label), as the head
 * emits and the run record stores them. Pure functions, no tensors.
 */

/** How one regression target is predicted. Correlations and R² are absent when a side is constant (they are undefined). */
export interface TargetMetrics {
  name: string;
  /** Mean absolute error, in the target's units. */
  mae: number;
  /** Root mean squared error, in the target's units. */
  rmse: number;
  /** 1 − SS_res / SS_tot: 1 is perfect, 0 is the mean predictor, below 0 is worse than it. */
  r2?: number;
  /** Pearson correlation of the average ranks (ties share the mean of their ranks). */
  spearman?: number;
  pearson?: number;
}

/** Regression metrics: per target, and their unweighted means over the targets (over those defined, for R² and the correlations). */
export interface RegressionMetrics {
  mae: number;
  rmse: number;
  /** Mean squared error averaged over the targets, in squared target units. */
  mse: number;
  r2?: number;
  spearman?: number;
  pearson?: number;
  perTarget: TargetMetrics[];
}

/** Per-label scores of a multi-label classifier; a label is predicted when its probability is ≥ its threshold. */
export interface LabelMetrics {
  label: string;
  threshold: number;
  /** Samples that have the label. */
  support: number;
  /** Fraction of samples whose decision for this label is right. */
  accuracy: number;
  /** Fraction of samples without the label (the accuracy of always answering "no"); the majority rate is max(this, 1 − this). */
  negativeRate: number;
  precision: number;
  recall: number;
  f1: number;
  /** ROC AUC of this label's probability; absent when every sample has it or none does. */
  auc?: number;
}

export interface MultiLabelMetrics {
  /** Mean binary cross-entropy over samples and labels (probabilities clipped to [1e-7, 1 − 1e-7]). */
  loss: number;
  perLabel: LabelMetrics[];
  /** Mean of the defined per-label AUCs; absent when none is defined. */
  macroAuc?: number;
  /** AUC of every (sample, label) probability against its 0/1 target, pooled. */
  microAuc?: number;
  /** Mean per-label F1 at the thresholds. */
  macroF1: number;
  /** F1 of the pooled true/false positives and negatives. */
  microF1: number;
  /** Fraction of samples whose whole predicted label set is exactly right. */
  subsetAccuracy: number;
  /** Fraction of (sample, label) decisions that are wrong. */
  hammingLoss: number;
}

function checkShape(name: string, a: ArrayLike<number>, b: ArrayLike<number>, k: number): number {
  if (!Number.isInteger(k) || k < 1) throw new TypeError(`${name}: k must be a positive integer, got ${k}`);
  if (a.length !== b.length || a.length % k !== 0) throw new TypeError(`${name}: expected two [n × ${k}] arrays, got ${a.length} and ${b.length} values`);
  return a.length / k;
}

/** Scores of a diverged model are NaN: every metric of them would be meaningless. */
function assertFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new SplitfitError('SPLITFIT_NUMERIC', `the model's ${what} hold ${values[i]} (value ${i}): its weights diverged or its input is not finite; no metric can be computed`);
    }
  }
}

function column(values: ArrayLike<number>, k: number, j: number): number[] {
  const out: number[] = [];
  for (let i = j; i < values.length; i += k) out.push(values[i]!);
  return out;
}

const mean = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
/** Mean of the defined values; undefined when none is. */
const meanDefined = (xs: readonly (number | undefined)[]): number | undefined => {
  const d = xs.filter((x): x is number => x !== undefined);
  return d.length === 0 ? undefined : mean(d);
};

/** Pearson correlation; undefined when either side has zero variance (or fewer than 2 points). */
export function pearson(a: readonly number[], b: readonly number[]): number | undefined {
  if (a.length !== b.length) throw new TypeError(`pearson: ${a.length} and ${b.length} values`);
  if (a.length < 2) return undefined;
  const ma = mean(a);
  const mb = mean(b);
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return undefined;
  // Clamped: rounding can put a perfect correlation a hair beyond ±1.
  return Math.max(-1, Math.min(1, sab / Math.sqrt(saa * sbb)));
}

/** 1-based ranks; tied values share the mean of the ranks they span (so [5, 7, 7, 9] → [1, 2.5, 2.5, 4]). */
export function averageRanks(values: readonly number[]): number[] {
  const order = values.map((_, i) => i).sort((x, y) => values[x]! - values[y]!);
  const ranks = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && values[order[j + 1]!] === values[order[i]!]) j++;
    for (let t = i; t <= j; t++) ranks[order[t]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return ranks;
}

/** Spearman's rank correlation with ties averaged (the Pearson correlation of the average ranks). */
export function spearman(a: readonly number[], b: readonly number[]): number | undefined {
  return pearson(averageRanks(a), averageRanks(b));
}

/** MAE, RMSE, R², Spearman and Pearson per target (in `names` order) and averaged over the targets. */
export function regressionMetrics(predicted: ArrayLike<number>, actual: ArrayLike<number>, names: readonly string[]): RegressionMetrics {
  const k = names.length;
  const n = checkShape('regressionMetrics', predicted, actual, k);
  if (n === 0) throw new TypeError('regressionMetrics: no samples');
  assertFinite(predicted, 'outputs');
  const perTarget = names.map((name, j): TargetMetrics => {
    const p = column(predicted, k, j);
    const y = column(actual, k, j);
    const my = mean(y);
    let abs = 0;
    let sq = 0;
    let tot = 0;
    for (let i = 0; i < n; i++) {
      abs += Math.abs(p[i]! - y[i]!);
      sq += (p[i]! - y[i]!) ** 2;
      tot += (y[i]! - my) ** 2;
    }
    const r = pearson(p, y);
    const s = spearman(p, y);
    return { name, mae: abs / n, rmse: Math.sqrt(sq / n), ...(tot === 0 ? {} : { r2: 1 - sq / tot }), ...(s === undefined ? {} : { spearman: s }), ...(r === undefined ? {} : { pearson: r }) };
  });
  const r2 = meanDefined(perTarget.map((m) => m.r2));
  const s = meanDefined(perTarget.map((m) => m.spearman));
  const r = meanDefined(perTarget.map((m) => m.pearson));
  return {
    mae: mean(perTarget.map((m) => m.mae)),
    rmse: mean(perTarget.map((m) => m.rmse)),
    mse: mean(perTarget.map((m) => m.rmse ** 2)),
    ...(r2 === undefined ? {} : { r2 }),
    ...(s === undefined ? {} : { spearman: s }),
    ...(r === undefined ? {} : { pearson: r }),
    perTarget,
  };
}

/** The default decision threshold of a multi-label head (one home: `model/metadata.ts`). */
export const DEFAULT_THRESHOLD = DEFAULT_LABEL_THRESHOLD;

function checkTargets01(actual: ArrayLike<number>): void {
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== 0 && actual[i] !== 1) throw new TypeError(`multi-label targets must be 0 or 1, got ${actual[i]} at ${i}`);
  }
}

const f1Of = (tp: number, fp: number, fn: number): number => (tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn));

/**
 * Multi-label metrics of sigmoid probabilities against 0/1 targets, a label being predicted when its
 * probability is ≥ its threshold (`thresholds[j]`, default 0.5 for every label).
 */
export function multiLabelMetrics(probs: ArrayLike<number>, actual: ArrayLike<number>, labels: readonly string[], thresholds?: readonly number[]): MultiLabelMetrics {
  const k = labels.length;
  const n = checkShape('multiLabelMetrics', probs, actual, k);
  if (n === 0) throw new TypeError('multiLabelMetrics: no samples');
  if (thresholds !== undefined && thresholds.length !== k) throw new TypeError(`multiLabelMetrics: ${thresholds.length} thresholds for ${k} labels`);
  assertFinite(probs, 'outputs');
  checkTargets01(actual);
  const t = thresholds ?? labels.map(() => DEFAULT_THRESHOLD);
  let loss = 0;
  let wrong = 0;
  let exact = 0;
  const counts = labels.map(() => ({ tp: 0, fp: 0, fn: 0, tn: 0 }));
  for (let i = 0; i < n; i++) {
    let allRight = true;
    for (let j = 0; j < k; j++) {
      const p = probs[i * k + j]!;
      const y = actual[i * k + j]!;
      const q = Math.min(1 - 1e-7, Math.max(1e-7, p));
      loss -= y === 1 ? Math.log(q) : Math.log(1 - q);
      const yes = p >= t[j]!;
      const c = counts[j]!;
      if (yes && y === 1) c.tp++;
      else if (yes) c.fp++;
      else if (y === 1) c.fn++;
      else c.tn++;
      if (yes !== (y === 1)) {
        wrong++;
        allRight = false;
      }
    }
    if (allRight) exact++;
  }
  const perLabel = labels.map((label, j): LabelMetrics => {
    const { tp, fp, fn, tn } = counts[j]!;
    const auc = rocAuc(column(probs, k, j), column(actual, k, j).map((y) => y === 1));
    return {
      label,
      threshold: t[j]!,
      support: tp + fn,
      accuracy: (tp + tn) / n,
      negativeRate: (fp + tn) / n,
      precision: tp + fp === 0 ? 0 : tp / (tp + fp),
      recall: tp + fn === 0 ? 0 : tp / (tp + fn),
      f1: f1Of(tp, fp, fn),
      ...(auc === undefined ? {} : { auc }),
    };
  });
  const sum = counts.reduce((s, c) => ({ tp: s.tp + c.tp, fp: s.fp + c.fp, fn: s.fn + c.fn }), { tp: 0, fp: 0, fn: 0 });
  const macroAuc = meanDefined(perLabel.map((m) => m.auc));
  const microAuc = rocAuc(Array.from(probs), Array.from(actual, (y) => y === 1));
  return {
    loss: loss / (n * k),
    perLabel,
    ...(macroAuc === undefined ? {} : { macroAuc }),
    ...(microAuc === undefined ? {} : { microAuc }),
    macroF1: mean(perLabel.map((m) => m.f1)),
    microF1: f1Of(sum.tp, sum.fp, sum.fn),
    subsetAccuracy: exact / n,
    hammingLoss: wrong / (n * k),
  };
}

/**
 * Per-label thresholds that maximise F1 on (validation) data: for each label, every distinct
 * probability is tried as the threshold (rule `p ≥ t`), and the best F1 wins — ties go to the
 * threshold nearest 0.5, so a flat stretch keeps the default. A label without a positive or
 * without a negative in the data keeps 0.5 (F1 cannot tell thresholds apart there).
 */
export function tuneThresholds(probs: ArrayLike<number>, actual: ArrayLike<number>, k: number): number[] {
  const n = checkShape('tuneThresholds', probs, actual, k);
  assertFinite(probs, 'outputs');
  checkTargets01(actual);
  const out: number[] = [];
  for (let j = 0; j < k; j++) {
    const p = column(probs, k, j);
    const y = column(actual, k, j);
    const positives = y.filter((v) => v === 1).length;
    if (positives === 0 || positives === n) {
      out.push(DEFAULT_THRESHOLD);
      continue;
    }
    let best = { f1: -1, t: DEFAULT_THRESHOLD };
    for (const t of [...new Set(p)].sort((a, b) => a - b)) {
      let tp = 0;
      let fp = 0;
      for (let i = 0; i < n; i++) {
        if (p[i]! >= t) {
          if (y[i] === 1) tp++;
          else fp++;
        }
      }
      const f1 = f1Of(tp, fp, positives - tp);
      if (f1 > best.f1 || (f1 === best.f1 && Math.abs(t - DEFAULT_THRESHOLD) < Math.abs(best.t - DEFAULT_THRESHOLD))) best = { f1, t };
    }
    out.push(best.t);
  }
  return out;
}
