import * as tf from '@tensorflow/tfjs';
import type { Task } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import type { RunMeta } from '../extract/run-meta.js';
import { fitTargetScale, foldTargetScale, standardize, type TargetScale } from '../model/target-scale.js';
import type { FeatureSet } from '../train/feature-set.js';
import { positiveWeightsOf, type RegressionLoss } from '../train/losses.js';
import { DEFAULT_THRESHOLD, tuneThresholds } from '../train/task-metrics.js';
import type { TaskRecord } from '../output/manifest.js';
import type { ResolvedTrainHeadOptions } from './options.js';
import type { LabeledId } from './validation.js';

/**
 * What train-head does differently per task: which options apply, how targets are prepared before
 * the fit (regression targets standardised on the training data, multi-label positive weights), and
 * what happens to the head after it (the scale folded in, thresholds tuned).
 */

/** The task of a run record; records written before tasks existed are classification. */
export function taskOfRun(run: Pick<RunMeta, 'task'>): Task {
  return run.task ?? 'classify';
}

/** Options that only one task reads are refused for the others, naming the run's task. */
export function checkTaskOptions(task: Task, o: ResolvedTrainHeadOptions, data: string): void {
  const refuse = (option: string, forTask: string): never => {
    throw new SplitfitError('SPLITFIT_USAGE', `\`${option}\` applies to ${forTask} runs; the cached data set ${data} is a ${task} run`, { option });
  };
  if (o.loss !== undefined && task !== 'regress') refuse('loss', 'regress');
  if (o.positiveWeights && task !== 'multilabel') refuse('positiveWeights', 'multilabel');
  if (o.tuneThresholds && task !== 'multilabel') refuse('tuneThresholds', 'multilabel');
  if (task === 'classify') return;
  if (o.classWeights !== undefined) refuse('classWeights', task === 'multilabel' ? 'classify runs (use `positiveWeights` for multilabel)' : 'classify');
  if (o.labelSmoothing !== undefined && o.labelSmoothing > 0) refuse('labelSmoothing', 'classify');
}

/** The targets as the head trains on them, and what the job needs to undo or weigh them. */
export interface PreparedTargets {
  train: LabeledId[];
  validation: LabeledId[];
  /** Regress: μ and σ of the training targets (folded into the head after training). */
  scale?: TargetScale;
  /** Multilabel with `positiveWeights`: `neg / pos` per label on the training data. */
  positiveWeights?: number[];
}

/** Regress: both sets in standardised units of the *training* targets. Multilabel: positive weights when asked. */
export function prepareTargets(task: Task, train: readonly LabeledId[], validation: readonly LabeledId[], k: number, o: ResolvedTrainHeadOptions): PreparedTargets {
  if (task === 'classify') return { train: [...train], validation: [...validation] };
  const flat = (set: readonly LabeledId[]): number[] => set.flatMap((s) => s.y ?? []);
  if (task === 'multilabel') {
    return { train: [...train], validation: [...validation], ...(o.positiveWeights ? { positiveWeights: positiveWeightsOf(flat(train), k) } : {}) };
  }
  const scale = fitTargetScale(flat(train), k);
  const scaled = (set: readonly LabeledId[]): LabeledId[] => set.map((s) => ({ ...s, y: standardize(s.y!, scale) }));
  return { train: scaled(train), validation: scaled(validation), scale };
}

/** The loss options of the fit for a task. */
export function taskLossOptions(task: Task, o: ResolvedTrainHeadOptions, targets: PreparedTargets): { task: Task; regressionLoss?: RegressionLoss; positiveWeights?: number[] } {
  return {
    task,
    ...(task === 'regress' ? { regressionLoss: o.loss ?? 'mse' } : {}),
    ...(targets.positiveWeights ? { positiveWeights: targets.positiveWeights } : {}),
  };
}

export type { TaskRecord };

/**
 * After the fit: a regression head gets the target scale folded into its last layer (so the exported
 * model predicts in the target's units); a multi-label head gets its thresholds (tuned on `valSet`
 * when asked, which holds unscaled 0/1 targets).
 */
export function finishTaskHead(task: Task, head: tf.LayersModel, targets: PreparedTargets, valSet: FeatureSet | undefined, k: number, o: ResolvedTrainHeadOptions): TaskRecord {
  if (task === 'classify') return { task };
  if (task === 'regress') {
    foldTargetScale(head, targets.scale!);
    return { task, loss: o.loss ?? 'mse', targetScale: targets.scale! };
  }
  const positive = targets.positiveWeights ? { positiveWeights: targets.positiveWeights } : {};
  if (!o.tuneThresholds || valSet === undefined || valSet.targets === undefined) return { task, thresholds: new Array<number>(k).fill(DEFAULT_THRESHOLD), thresholdsTuned: false, ...positive };
  const probs = tf.tidy(() => (head.predict(tf.tensor(valSet.x, [valSet.ids.length, ...valSet.featureShape]), { batchSize: 256 }) as tf.Tensor).dataSync() as Float32Array);
  return { task, thresholds: tuneThresholds(probs, valSet.targets, k), thresholdsTuned: true, ...positive };
}
