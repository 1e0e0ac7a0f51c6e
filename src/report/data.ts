import type { ClassMetrics } from '../train/class-metrics.js';
import type { History } from '../train/fit.js';
import type { MultiLabelMetrics, RegressionMetrics } from '../train/task-metrics.js';

export { REPORT_HTML, REPORT_JSON } from '../output/folder.js';

/**
 * What `report.html` shows, kept as `report.json` beside it in the output folder so that
 * `splitfit report <out>` can render it again (with a newer renderer, or after `evaluate --report`
 * added a section) without the cache or the data.
 */
export const REPORT_FORMAT = 'splitfit-report/1';

export interface ReportData {
  format: typeof REPORT_FORMAT;
  title: string;
  createdAt: string;
  /** The run's configuration as label/value rows, in reading order. */
  config: [string, string][];
  /** Timings as label/value rows (`job`, `epochs`, `mean epoch`, …). */
  timings: [string, string][];
  /** Per-epoch training history, when the report is of a training run. */
  history?: ReportHistory;
  /** One section per data set the model was measured on (train-head's validation data, evaluate's data). */
  evaluations: EvaluationSection[];
  /** Multilabel and regression runs: their validation sections (a scatter of predicted vs true; a per-label table). */
  tasks?: TaskReportSection[];
  /** Plain sentences shown at the top (e.g. why there is no confusion matrix). */
  notes: string[];
  /** `train-head --search`: the leaderboard as rows (rank, head, settings, epochs, mean ± sd of the fold accuracy), best first. */
  leaderboard?: { header: string[]; rows: string[][]; note: string };
}

/** The curves of `History` (train/fit.ts), with the epochs the report marks. */
export interface ReportHistory extends Pick<History, 'loss' | 'acc' | 'valLoss' | 'valAcc' | 'valAuc' | 'seconds'> {
  /** 1-based epoch with the lowest monitored loss (`valLoss` when there is validation, else `loss`). */
  bestEpoch: number;
  bestBy: 'val loss' | 'loss';
  /** 1-based epoch whose weights the saved model has: the last, unless training restored the best (`history.bestEpoch`). */
  savedEpoch: number;
}

export interface EvaluationSection {
  /** `validation` (train-head) or `evaluate` (a later `evaluate --report`): a new section of a kind replaces the old one. */
  kind: 'validation' | 'evaluate';
  title: string;
  /** What the numbers were measured on, said plainly ("the internal 20 % validation split (seed 0): 24 samples"). */
  on: string;
  n: number;
  loss: number;
  accuracy: number;
  /** Macro one-vs-rest ROC AUC (binary AUC for two classes). */
  auc?: number;
  labels: string[];
  /** `confusion[actual][predicted]`. */
  confusion: number[][];
  perClass: ClassMetrics[];
  macro: { precision: number; recall: number; f1: number };
  /** The most confidently wrong samples, worst first. */
  worst: ReportSample[];
  misclassified: number;
  modes?: ModesSection;
}

/** What the report shows of a multilabel or regression model on a data set. */
export type TaskReportSection =
  | {
      task: 'regress';
      /** As `EvaluationSection.kind`: a new section of a kind replaces the old one. */
      kind: 'validation' | 'evaluate';
      title: string;
      on: string;
      n: number;
      metrics: RegressionMetrics;
      /** Per target: true and predicted values of every sample, in the target's units. */
      points: { name: string; actual: number[]; predicted: number[] }[];
    }
  | { task: 'multilabel'; kind: 'validation' | 'evaluate'; title: string; on: string; n: number; metrics: MultiLabelMetrics };

export interface ReportSample {
  /** File name (or `images.idx#12`) as the data source names it; the id when the file is no longer found. */
  file: string;
  actual: string;
  predicted: string;
  confidence: number;
  trueProbability: number;
  /** A small PNG as a `data:` URI (the report opens from disk with no network). */
  thumbnail?: string;
}

export interface ModesSection {
  training: { loss: number; accuracy: number };
  inference: { loss: number; accuracy: number };
  accuracyGap: number;
  verdict: string;
}

/** The epoch to mark as best: lowest validation loss when there is one, else lowest training loss (first on ties). */
export function bestEpoch(h: { loss: readonly number[]; valLoss?: readonly number[] | undefined }): { bestEpoch: number; bestBy: 'val loss' | 'loss' } {
  const series = h.valLoss && h.valLoss.length > 0 ? h.valLoss : h.loss;
  let best = 0;
  series.forEach((v, i) => {
    if (v < series[best]!) best = i;
  });
  return { bestEpoch: best + 1, bestBy: series === h.loss ? 'loss' : 'val loss' };
}

/** Replaces the task section of the same kind, or adds it (the notes go, as for `withEvaluation`). */
export function withTaskSection(data: ReportData, section: TaskReportSection): ReportData {
  return { ...data, tasks: [...(data.tasks ?? []).filter((t) => t.kind !== section.kind), section], notes: [] };
}

/** Titles of every section of a report, in order. */
export function sectionTitles(data: ReportData): string[] {
  return [...data.evaluations.map((e) => e.title), ...(data.tasks ?? []).map((t) => t.title)];
}

/** Replaces the section of the same kind, or adds it (the notes say why sections are missing: they go). */
export function withEvaluation(data: ReportData, section: EvaluationSection): ReportData {
  return { ...data, evaluations: [...data.evaluations.filter((e) => e.kind !== section.kind), section], notes: [] };
}
