import { epochSeed, rng, shuffled } from '../random.js';

/**
 * Stratified, seeded fold assignment: each class's samples are shuffled and dealt round-robin into
 * `k` folds (one running deal across classes, so fold sizes differ by at most one). Returns the fold
 * of each sample, in input order. The stream is distinct from the validation split's and the epochs'.
 */
export function stratifiedFolds(labels: readonly number[], k: number, seed: number): number[] {
  const byClass = new Map<number, number[]>();
  labels.forEach((y, i) => byClass.set(y, [...(byClass.get(y) ?? []), i]));
  const random = rng(epochSeed(seed, -2));
  const fold = new Array<number>(labels.length).fill(0);
  let deal = 0;
  for (const y of [...byClass.keys()].sort((a, b) => a - b)) {
    for (const i of shuffled(byClass.get(y)!, random)) fold[i] = deal++ % k;
  }
  return fold;
}

/** Row indices in fold `f` and not in it. */
export function foldRows(folds: readonly number[], f: number): { train: number[]; val: number[] } {
  const train: number[] = [];
  const val: number[] = [];
  folds.forEach((g, i) => (g === f ? val : train).push(i));
  return { train, val };
}
