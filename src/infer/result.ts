/**
 * The answer for one image, one type per task: the same shape from the library's `predict()`,
 * `splitfit predict --json` and the browser module's `classify()`. Pure types (the browser bundle
 * includes this file).
 */
export interface ClassificationResult {
  label: string;
  probability: number;
  /** Every class's probability, keyed by label. */
  probabilities: Record<string, number>;
}

/** Builds a result from one row of probabilities in label order. */
export function classificationResult(row: ArrayLike<number>, labels: readonly string[]): ClassificationResult {
  let best = 0;
  for (let j = 1; j < labels.length; j++) if (row[j]! > row[best]!) best = j;
  return {
    label: labels[best]!,
    probability: row[best]!,
    probabilities: Object.fromEntries(labels.map((l, j) => [l, row[j]!])),
  };
}
