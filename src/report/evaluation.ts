import type { Sample } from '../data/types.js';
import { classReport, type ClassReport, worstMisclassified } from '../train/class-metrics.js';
import type { Metrics } from '../train/metrics.js';
import type { EvaluationSection, ModesSection } from './data.js';
import { thumbnail } from './thumbnails.js';

/** How many misclassified samples a report shows. */
export const WORST_SHOWN = 12;

export interface EvaluationInput {
  kind: EvaluationSection['kind'];
  title: string;
  on: string;
  labels: string[];
  /** Softmax outputs, `[n × k]` row-major, and the true class of each row. */
  probs: Float32Array;
  actual: readonly number[];
  /** Loss, accuracy and AUC of the same rows (computed once by the caller, who reports them too). */
  metrics: Metrics;
  /** The class report of the same rows, when the caller has it already. */
  classes?: ClassReport;
  /** The sample of row `i`, to name it and draw its thumbnail; `undefined` when it cannot be found any more. */
  sampleOf: (row: number) => Promise<Sample | undefined> | Sample | undefined;
  /** How to name a row without a sample (e.g. its cached id). */
  nameOf?: (row: number) => string;
  channels: 1 | 3;
  modes?: ModesSection;
}

/** A report section: confusion matrix, per-class scores, and the most confidently wrong samples with thumbnails. */
export async function evaluationSection(input: EvaluationInput): Promise<EvaluationSection> {
  const k = input.labels.length;
  const classes = input.classes ?? classReport(input.probs, input.actual, input.labels);
  const wrong = worstMisclassified(input.probs, input.actual, k, Number.POSITIVE_INFINITY);
  const worst = [];
  for (const w of wrong.slice(0, WORST_SHOWN)) {
    const sample = await input.sampleOf(w.index);
    const image = sample ? await thumbnail(sample, input.channels) : undefined;
    worst.push({
      file: sample?.source ?? input.nameOf?.(w.index) ?? `row ${w.index}`,
      actual: input.labels[w.actual]!,
      predicted: input.labels[w.predicted]!,
      confidence: w.confidence,
      trueProbability: w.trueProbability,
      ...(image ? { thumbnail: image } : {}),
    });
  }
  return {
    kind: input.kind,
    title: input.title,
    on: input.on,
    n: input.actual.length,
    loss: input.metrics.loss,
    accuracy: input.metrics.accuracy,
    ...(input.metrics.auc === undefined ? {} : { auc: input.metrics.auc }),
    labels: input.labels,
    confusion: classes.confusion,
    perClass: classes.perClass,
    macro: classes.macro,
    worst,
    misclassified: wrong.length,
    ...(input.modes ? { modes: input.modes } : {}),
  };
}
