import * as tf from '@tensorflow/tfjs';
import { openDataSource } from '../data/sources.js';
import type { DataSource } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { loadImages, loadPredictor, type Predictor, predictSamples } from './predictor.js';
import { type CompareModesResult, compareModes } from '../train/compare-modes.js';
import { classificationMetrics, type Metrics } from '../train/metrics.js';
import { type ClassMetrics, classReport } from '../train/class-metrics.js';
import { multiLabelMetrics, type MultiLabelMetrics, regressionMetrics, type RegressionMetrics } from '../train/task-metrics.js';
import { compareMultiLabelModes, compareRegressionModes, type MultiLabelModes, type RegressionModes } from '../train/task-modes.js';
import { evaluationSection } from '../report/evaluation.js';
import { assertReportFolder, writeEvaluationReport } from '../report/write.js';
import type { TaskReportSection } from '../report/data.js';

export interface EvaluateOptions {
  /** A stitched model (`model.json`, with `splitfit.json` beside it) or any tfjs LayersModel. */
  model: string | tf.LayersModel;
  data: string | DataSource;
  /** @default 32 */
  batchSize?: number;
  /** Also run the model in training mode on the same data (on a copy) and report the gap. */
  compareModes?: boolean;
  /** Preprocessing when the model has no splitfit.json. @default 'unit' */
  preprocess?: string;
  /** IDX only: names for numeric labels. */
  classNames?: readonly string[];
  /** Stops between batches (`SPLITFIT_INTERRUPTED`). */
  signal?: AbortSignal;
  /**
   * Also write an HTML report here. When it is the `report.html` of the evaluated train-head output
   * folder, the evaluation is added to that report (the folder is re-committed, the model kept as it
   * is); anywhere else a standalone report is written, with the folder's curves when there are some.
   */
  report?: string;
}

/**
 * For a classifier: loss, accuracy and AUC as `classificationMetrics` gives them. For a multilabel model
 * (`task: 'multilabel'`): `loss` is the binary cross-entropy, `accuracy` the per-label accuracy
 * (1 − Hamming loss) at the model's thresholds, `auc` the macro AUC, and `multilabel` holds the rest.
 * For a regression model (`task: 'regress'`): `loss` is the MSE, `accuracy` R², and `regression` holds
 * the rest. `confusion` and `perClass` are empty for both.
 */
export interface EvaluateResult extends Metrics {
  n: number;
  labels: string[];
  /** Absent for classification. */
  task?: 'multilabel' | 'regress';
  regression?: RegressionMetrics;
  multilabel?: MultiLabelMetrics;
  /** With `compareModes` on a regression model: MSE and Spearman in both modes. */
  regressionModes?: RegressionModes;
  /** With `compareModes` on a multilabel model: per-label accuracy and AUC in both modes. */
  multiLabelModes?: MultiLabelModes;
  /** `confusion[actual][predicted]`: sample counts, rows and columns in `labels` order. */
  confusion: number[][];
  /** Precision, recall, F1, support and one-vs-rest AUC of each class, in `labels` order. */
  perClass: ClassMetrics[];
  modes?: CompareModesResult;
  /** The report written (`report` option). */
  report?: string;
}

export async function evaluate(options: EvaluateOptions): Promise<EvaluateResult> {
  if (options.report !== undefined) await assertReportFolder(options.report);
  const predictor = await loadPredictor(options.model, options.preprocess === undefined ? {} : { preprocess: options.preprocess });
  if (predictor.task !== undefined && predictor.task.task !== 'classify') return evaluateTask(options, predictor, predictor.task.task);
  const source = typeof options.data === 'string' ? await openDataSource(options.data, options.classNames ? { classNames: options.classNames } : {}) : options.data;
  const labels = predictor.labels ?? source.labels;
  const samples = source.samples.filter((s) => s.label !== undefined);
  if (samples.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `no labeled samples in ${source.root}`);
  const y = samples.map((s) => {
    const i = labels.indexOf(s.label!);
    if (i < 0) throw new SplitfitError('SPLITFIT_USAGE', `class "${s.label}" in ${source.root} is not one the model knows (${labels.join(', ')})`);
    return i;
  });
  // Checked before the forward pass: a mismatch is known without running the model.
  const outputs = predictor.model.outputs[0]!.shape.at(-1);
  if (outputs !== labels.length) {
    throw new SplitfitError('SPLITFIT_USAGE', `the model has ${String(outputs)} outputs but the data has ${labels.length} classes (${labels.join(', ')})`);
  }
  const { probs, k } = await predictSamples(predictor, samples, options.batchSize ?? 32, options.signal);
  const metrics = classificationMetrics(probs, y, k);
  const classes = classReport(probs, y, labels);
  const result: EvaluateResult = { n: samples.length, labels, ...metrics, confusion: classes.confusion, perClass: classes.perClass };
  if (options.compareModes) result.modes = await modesOn(predictor, samples, y, k, options.batchSize ?? 32);
  if (options.report !== undefined) {
    const section = await evaluationSection({
      kind: 'evaluate',
      title: 'Evaluation',
      on: `the data ${source.root} (${samples.length} labeled samples)`,
      labels,
      probs,
      actual: y,
      metrics,
      classes,
      sampleOf: (row) => samples[row],
      channels: predictor.channels,
      ...(result.modes ? { modes: { ...result.modes, verdict: verdict(result.modes.accuracyGap) } } : {}),
    });
    result.report = (await writeEvaluationReport(options.report, section, typeof options.model === 'string' ? options.model : undefined)).file;
  }
  return result;
}

/**
 * The sign matters: a positive gap is the frozen-BN `fit` signature (fit reported more than predict
 * delivers); a negative one means inference is right but the model's frozen BN layers would use batch
 * statistics under a further `fit` (as every stitched pretrained base does): lock them first.
 */
export function verdict(gap: number): string {
  if (Math.abs(gap) <= 0.02) return 'training and inference mode agree';
  if (gap > 0)
    return 'training mode scores higher than inference: the BatchNorm/`fit` discrepancy (moving statistics drifted or frozen BN trained on batch statistics); retrain with splitfit or lockBatchNorm';
  return 'inference scores higher than training mode: predictions are fine, but frozen BatchNorm layers would see batch statistics under a further `fit`; call lockBatchNorm(model) before fine-tuning it';
}

async function modesOn(p: Predictor, samples: DataSource['samples'], y: number[], k: number, batchSize: number): Promise<CompareModesResult> {
  const pixels = await loadImages(samples, p);
  const x = tf.tensor4d(pixels, [samples.length, p.inputSize[0], p.inputSize[1], p.channels]);
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(y, 'int32'), k).toFloat());
  try {
    // Frozen BN alone: a head's own dropout or `bn` is training behaviour the user chose, not the trap.
    return await compareModes(p.model, x, labels, { batchSize, dropout: false, trainableBatchNorm: false });
  } finally {
    x.dispose();
    labels.dispose();
  }
}

/** evaluate() of a multilabel or regression model: the task's metrics, and with `compareModes` its detector. */
async function evaluateTask(options: EvaluateOptions, p: Predictor, task: 'multilabel' | 'regress'): Promise<EvaluateResult> {
  const labels = p.labels!;
  const source =
    typeof options.data === 'string' ? await openDataSource(options.data, { task, ...(task === 'multilabel' ? { knownLabels: labels } : {}) }) : options.data;
  if ((source.task ?? 'classify') !== task) {
    throw new SplitfitError('SPLITFIT_USAGE', `the model is a ${task} model but ${source.root} holds ${source.task ?? 'classify'} data; give a manifest with ${task === 'regress' ? 'target columns' : 'a labels column'}`);
  }
  if (task === 'regress' && source.labels.join('\u0000') !== labels.join('\u0000')) {
    throw new SplitfitError('SPLITFIT_USAGE', `the model predicts the targets [${labels.join(', ')}] but ${source.root} has [${source.labels.join(', ')}]; give the same target columns`);
  }
  const samples = source.samples;
  if (samples.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `no samples in ${source.root}`);
  const targets = task === 'regress' ? samples.flatMap((s) => s.values!) : samples.flatMap((s) => labels.map((l) => (s.labelSet!.includes(l) ? 1 : 0)));
  const { probs } = await predictSamples(p, samples, options.batchSize ?? 32, options.signal);
  const thresholds = p.task?.thresholds;
  const base = { n: samples.length, labels, task, confusion: [], perClass: [] };
  let result: EvaluateResult;
  if (task === 'regress') {
    const m = regressionMetrics(probs, targets, labels);
    result = { ...base, loss: m.mse, accuracy: m.r2 ?? 0, regression: m };
  } else {
    const m = multiLabelMetrics(probs, targets, labels, thresholds);
    result = { ...base, loss: m.loss, accuracy: 1 - m.hammingLoss, ...(m.macroAuc === undefined ? {} : { auc: m.macroAuc }), multilabel: m };
  }
  if (options.compareModes) {
    const pixels = await loadImages(samples, p);
    const x = tf.tensor4d(pixels, [samples.length, p.inputSize[0], p.inputSize[1], p.channels]);
    try {
      // Frozen BN alone, as for classification: a head's own dropout or `bn` is training the user chose.
      const o = { batchSize: options.batchSize ?? 32, dropout: false, trainableBatchNorm: false };
      if (task === 'regress') result.regressionModes = await compareRegressionModes(p.model, x, targets, labels, o);
      else result.multiLabelModes = await compareMultiLabelModes(p.model, x, targets, labels, thresholds, o);
    } finally {
      x.dispose();
    }
  }
  if (options.report !== undefined) {
    const on = `the data ${source.root} (${samples.length} samples)`;
    const k = labels.length;
    const column = (values: ArrayLike<number>, j: number): number[] => Array.from({ length: samples.length }, (_, i) => values[i * k + j]!);
    const section: TaskReportSection =
      task === 'regress'
        ? { task, kind: 'evaluate', title: 'Evaluation: predicted vs true', on, n: samples.length, metrics: result.regression!, points: labels.map((name, j) => ({ name, actual: column(targets, j), predicted: column(probs, j) })) }
        : { task, kind: 'evaluate', title: 'Evaluation: per label', on, n: samples.length, metrics: result.multilabel! };
    result.report = (await writeEvaluationReport(options.report, section, typeof options.model === 'string' ? options.model : undefined)).file;
  }
  return result;
}
