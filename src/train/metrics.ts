import { SplitfitError } from '../errors.js';

/** Classification metrics on softmax outputs `probs` ([n × k], row-major) and integer labels. */
export interface Metrics {
  loss: number;
  accuracy: number;
  /** ROC AUC: binary for k = 2, macro one-vs-rest for k > 2; undefined when a class has no positives or negatives. */
  auc?: number;
}

const EPS = 1e-7;

export function classificationMetrics(probs: Float32Array, labels: readonly number[], k: number): Metrics {
  const n = labels.length;
  if (probs.length !== n * k) throw new TypeError(`expected ${n}×${k} probabilities, got ${probs.length}`);
  assertFiniteScores(probs);
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const row = probs.subarray(i * k, (i + 1) * k);
    const y = labels[i]!;
    loss -= Math.log(Math.min(1 - EPS, Math.max(EPS, row[y]!)));
    let best = 0;
    for (let j = 1; j < k; j++) if (row[j]! > row[best]!) best = j;
    if (best === y) correct++;
  }
  const auc = k === 2 ? rocAuc(column(probs, k, 1), labels.map((y) => y === 1)) : macroAuc(probs, labels, k);
  return { loss: loss / n, accuracy: correct / n, ...(auc === undefined ? {} : { auc }) };
}

function column(probs: Float32Array, k: number, j: number): number[] {
  const out: number[] = [];
  for (let i = j; i < probs.length; i += k) out.push(probs[i]!);
  return out;
}

function macroAuc(probs: Float32Array, labels: readonly number[], k: number): number | undefined {
  const aucs: number[] = [];
  for (let j = 0; j < k; j++) {
    const a = rocAuc(column(probs, k, j), labels.map((y) => y === j));
    if (a === undefined) return undefined;
    aucs.push(a);
  }
  return aucs.reduce((s, a) => s + a, 0) / k;
}

/** Scores of a diverged model are NaN: every metric of them would be meaningless (an AUC of NaN scores sorts to 1). */
function assertFiniteScores(scores: ArrayLike<number>): void {
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i])) {
      throw new SplitfitError('SPLITFIT_NUMERIC', `the model's outputs hold ${scores[i]} (output ${i}): its weights diverged or its input is not finite; no metric can be computed`);
    }
  }
}

/** Mann–Whitney form of ROC AUC, with ties counted as half. Non-finite scores are `SPLITFIT_NUMERIC`. */
export function rocAuc(scores: readonly number[], positive: readonly boolean[]): number | undefined {
  assertFiniteScores(scores);
  const idx = scores.map((_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]!] === scores[idx[i]!]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) {
      if (positive[idx[t]!]) {
        pos++;
        rankSum += avgRank;
      }
    }
    i = j + 1;
  }
  const neg = scores.length - pos;
  if (pos === 0 || neg === 0) return undefined;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

/** argmax per row. */
export function argmaxRows(probs: Float32Array, k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < probs.length; i += k) {
    let best = 0;
    for (let j = 1; j < k; j++) if (probs[i + j]! > probs[i + best]!) best = j;
    out.push(best);
  }
  return out;
}
