import * as tf from '@tensorflow/tfjs';
import { openDataSource } from '../data/sources.js';
import type { Sample } from '../data/types.js';
import type { RunMeta } from '../extract/run-meta.js';
import type { SplitfitManifest } from '../output/manifest.js';
import type { EvaluationSection, TaskReportSection } from '../report/data.js';
import type { TaskRecord } from '../output/manifest.js';
import { multiLabelMetrics, regressionMetrics } from '../train/task-metrics.js';
import { evaluationSection } from '../report/evaluation.js';
import { renderReport } from '../report/html.js';
import { trainingReport } from '../report/training.js';
import type { FeatureSet } from '../train/feature-set.js';
import type { History } from '../train/fit.js';
import { classificationMetrics } from '../train/metrics.js';
import type { ResolvedTrainHeadOptions } from './options.js';
import type { SearchReport } from './search.js';

export interface TrainReportInput {
  head: tf.LayersModel;
  run: RunMeta;
  options: ResolvedTrainHeadOptions;
  manifest: SplitfitManifest;
  history: History;
  /** The validation features the last epoch was scored on (absent without validation). */
  valSet: FeatureSet | undefined;
  jobSeconds: number;
  /** `--search`'s report, shown as the leaderboard. */
  search?: SearchReport;
  /** Multilabel and regress runs: the task record (the target scale to undo on `valSet`'s targets, the thresholds). */
  task?: TaskRecord;
}

/** `report.html` and `report.json` of a train-head run: the trained head scored on its validation data. */
export async function trainReportFiles(input: TrainReportInput): Promise<{ html: string; json: string }> {
  const hasVal = input.valSet !== undefined && input.valSet.ids.length > 0;
  const isTask = input.task !== undefined && input.task.task !== 'classify';
  const evaluation = hasVal && !isTask ? await validationSection(input, input.valSet!) : undefined;
  const taskSection = hasVal && isTask ? taskValidationSection(input, input.valSet!, input.task!) : undefined;
  const data = trainingReport({
    manifest: input.manifest,
    history: input.history,
    jobSeconds: input.jobSeconds,
    ...(evaluation ? { evaluation } : {}),
    ...(taskSection ? { taskSection } : {}),
    ...(input.search ? { leaderboard: leaderboardOf(input.search) } : {}),
  });
  return { html: await renderReport(data), json: JSON.stringify(data, null, 2) };
}

async function validationSection(input: TrainReportInput, set: FeatureSet): Promise<EvaluationSection> {
  const { run, options: o, head } = input;
  const k = run.labels.length;
  const probs = tf.tidy(() => (head.predict(tf.tensor(set.x, [set.ids.length, ...set.featureShape]), { batchSize: 256 }) as tf.Tensor).dataSync() as Float32Array);
  const metrics = classificationMetrics(probs, set.labels, k);
  const separate = o.validationData !== undefined;
  const on = separate
    ? `the validation data ${o.validationData} (${set.ids.length} samples, not trained on), scored with the saved head`
    : `the internal validation split: ${(o.validationSplit * 100).toFixed(0)} % of the cached training data held out with seed ${o.seed} (${set.ids.length} samples, not trained on)` +
      `${run.augment === undefined ? '' : run.plainView0 ? ', un-augmented view' : ', first augmented view'}, scored with the saved head`;
  // Files are found by content id in the data set as it is now; only the worst few are looked up.
  let byId: Promise<Map<string, Sample>> | undefined;
  const lookup = (): Promise<Map<string, Sample>> =>
    (byId ??= openDataSource(separate ? o.validationData! : run.data, !separate && run.classNames ? { classNames: run.classNames } : {})
      .then((source) => new Map(source.samples.map((s) => [s.id, s])))
      .catch(() => new Map()));
  return evaluationSection({
    kind: 'validation',
    title: separate ? 'Validation data' : 'Validation (internal split)',
    on,
    labels: run.labels,
    probs,
    actual: set.labels,
    metrics,
    sampleOf: async (row) => (await lookup()).get(set.ids[row]!),
    nameOf: (row) => `sample ${set.ids[row]!.slice(0, 12)} (file not found in ${separate ? o.validationData : run.data})`,
    channels: run.channels,
  });
}

/**
 * The validation section of a multilabel or regression run, from the saved head (its outputs are in the
 * targets' units: the scale is folded in) and the validation targets (standardised for training: undone here).
 */
function taskValidationSection(input: TrainReportInput, set: FeatureSet, task: TaskRecord): TaskReportSection {
  const { run, options: o, head } = input;
  const k = run.labels.length;
  const n = set.ids.length;
  const out = tf.tidy(() => (head.predict(tf.tensor(set.x, [n, ...set.featureShape]), { batchSize: 256 }) as tf.Tensor).dataSync() as Float32Array);
  const scale = task.targetScale;
  const targets = Array.from(set.targets!, (y, i) => (scale ? y * scale.std[i % k]! + scale.mean[i % k]! : y));
  const on = o.validationData !== undefined ? `the validation data ${o.validationData} (${n} samples, not trained on)` : `the internal validation split (${n} samples held out with seed ${o.seed}, not trained on)`;
  if (task.task === 'regress') {
    const column = (values: ArrayLike<number>, j: number): number[] => Array.from({ length: n }, (_, i) => values[i * k + j]!);
    return {
      task: 'regress',
      kind: 'validation',
      title: 'Validation: predicted vs true',
      on,
      n,
      metrics: regressionMetrics(out, targets, run.labels),
      points: run.labels.map((name, j) => ({ name, actual: column(targets, j), predicted: column(out, j) })),
    };
  }
  return { task: 'multilabel', kind: 'validation', title: 'Validation: per label', on, n, metrics: multiLabelMetrics(out, targets, run.labels, task.thresholds) };
}

/** The search's leaderboard as report rows, best first (the winner is the model beside the report). */
function leaderboardOf(search: SearchReport): NonNullable<ReturnType<typeof trainingReport>['leaderboard']> {
  return {
    header: ['rank', 'head', 'learning rate', 'weight decay', 'label smoothing', 'epochs', `${search.metric} (mean ± sd)`],
    rows: search.leaderboard.map((r) => [
      String(r.rank),
      r.config.head,
      String(r.config.learningRate),
      String(r.config.weightDecay),
      String(r.config.labelSmoothing),
      String(r.epochs),
      `${r.mean.toFixed(4)} ± ${r.sd.toFixed(4)}`,
    ]),
    note: `${search.folds}-fold cross-validation (seed ${search.seed}) on the cached training data: ${search.tried} of ${search.grid} configurations tried (stopped by ${search.stoppedBy}); the winner, rank 1, was trained on all the training data.`,
  };
}
