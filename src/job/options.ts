import type * as tf from '@tensorflow/tfjs';
import type { FeatureCache } from '../cache/feature-cache.js';
import { MAX_INDEX } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';
import { checkFraction, checkNonNegativeInt, checkPositiveInt, checkPositiveNumber, checkChoice, checkString, withDefaults } from '../options.js';
import { type EpochLog, LR_SCHEDULES, type LrSchedule } from '../train/fit.js';
import type { AutoTrial } from './auto.js';
import type { LeaderboardRow, SearchOptions } from './search.js';
import { OPTIMIZERS, type OptimizerName } from '../train/step.js';
import { REGRESSION_LOSSES, type RegressionLoss } from '../train/losses.js';
import { QUANTIZE_CHOICES, type Quantize } from '../model/quantize.js';

export interface TrainHeadOptions {
  /** Cache directory (or open cache) written by `cache-features`. @default './cache' */
  cache?: string | FeatureCache;
  /** Output folder for the stitched model, head, history.json and splitfit.json. */
  out: string;
  /** Which cached run to train on: a fingerprint or any unique prefix of one. @default the last `cache-features` run */
  fingerprint?: string;
  /** Head spec (see `parseHeadSpec`). @default 'gap,dense:N:softmax' for feature maps, 'dense:N:softmax' for vectors */
  head?: string;
  /**
   * Epochs of the final fit. @default chosen automatically: the best epoch of a seeded sweep on an
   * internal hold-out of the training data (see `AUTO` in job/auto.ts); given, it is exactly what runs.
   */
  epochs?: number;
  /** @default 32 */
  batchSize?: number;
  /** @default 'adam' */
  optimizer?: OptimizerName;
  /** @default chosen automatically, with `epochs`, on an internal hold-out of the training data; given, it is exactly what runs. */
  learningRate?: number;
  /** L2 penalty `weightDecay · Σ w²` on the head's kernels. @default 0 */
  weightDecay?: number;
  /** Smooths the one-hot targets to `(1 − ε) · y + ε / k`. @default 0 */
  labelSmoothing?: number;
  /** Learning-rate schedule over the epochs: `cosine` decay to 0, or `plateau` (halve after 3 epochs without a better monitored loss). @default 'constant' */
  lrSchedule?: LrSchedule;
  /**
   * A k-fold cross-validated search (seeded) over learning rate, weight decay, dropout, label smoothing
   * and head shapes on the cached training features; the winner is trained on all of them and the
   * leaderboard written to `search.json`. Options given explicitly (`head`, `learningRate`, `epochs`,
   * `weightDecay`, `labelSmoothing`) are kept fixed. `true` = the default budget. @default false
   */
  search?: boolean | SearchOptions;
  /** Train a head that starts with `gap` on features pooled once, not on every step (same result within float32 rounding). @default true */
  poolFeatures?: boolean;
  /** Fraction of samples held out (seeded) for validation. @default 0 */
  validationSplit?: number;
  /** A separate validation data set (folder, manifest or IDX); its features are extracted into the same cache. */
  validationData?: string;
  /**
   * Stop when the monitored loss (validation loss if any, else training loss) has not improved for
   * `patience` epochs, and keep the weights of the best epoch (`history.bestEpoch`).
   */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Per-class loss weights, or 'balanced' (n / (k · count)); classification only. @default equal weights */
  classWeights?: 'balanced' | readonly number[];
  /**
   * Regression runs only (the cached run's task is `regress`): the loss on the standardised targets,
   * `mse`, `mae` or `huber` (δ = 1 standard deviation). @default 'mse'
   */
  loss?: RegressionLoss;
  /** Multi-label runs only: weigh each label's positives by `neg / pos` of the training data, so rare labels count. @default false */
  positiveWeights?: boolean;
  /**
   * Multi-label runs only: tune each label's decision threshold for the best F1 on the validation data
   * (needs `validationSplit` or `validationData`); recorded in splitfit.json and the model metadata.
   * @default false — every threshold 0.5
   */
  tuneThresholds?: boolean;
  /** Seeds the head's initial weights, the validation split and every epoch's shuffle. @default 0 */
  seed?: number;
  /** Hold features in memory when they fit this many bytes, else stream them from LevelDB. @default 1 GiB */
  memoryBudget?: number;
  /**
   * Freeze the BatchNormalization layers an `original:` head takes from the source model and run
   * them in inference mode (`lockBatchNorm`), as Keras advises for fine-tuning on small data;
   * the other layers still train. @default false
   */
  lockBatchNorm?: boolean;
  /**
   * With an augmented cache: every R epochs, train on the next generation of views (extracted while
   * training). Every run starts at the cached generation and walks the same generations, so the same
   * command and seed give the same head.
   */
  refreshEvery?: number;
  /** Batch size of the base during refresh and validation extractions. @default the prepared base's suggestion */
  extractBatchSize?: number;
  /**
   * Export the frozen base with every BatchNormalization folded into the preceding conv/dense (or a
   * fixed per-channel affine map) and its Dropout removed: the stitched model then gives the same
   * output under `training: true` as under `training: false`, so a further plain `fit` cannot fall
   * into the frozen-BN trap. `false` exports the source's original layers (e.g. to unfreeze and
   * fine-tune its BN later, with `lockBatchNorm`). Predictions are the same either way (≤ 1e-4).
   * @default true
   */
  foldBatchNorm?: boolean;
  /**
   * Store the stitched model's float32 weights quantized: `uint8` (affine per tensor, ~¼ the size) or
   * `float16` (½), in the stock tfjs weights-manifest format that `tf.loadLayersModel` dequantizes on
   * load. `head/` stays float32. @default none (float32)
   */
  quantize?: Quantize;
  /** The source model, when `cache-features` ran on an in-memory model. */
  model?: tf.LayersModel;
  /** Stops training between steps (`SPLITFIT_INTERRUPTED`); nothing is written to `out`, the cache stays consistent. */
  signal?: AbortSignal;
  onProgress?: (event: TrainEvent) => void;
}

export type TrainEvent =
  | { type: 'start'; samples: number; validation: number; mode: 'memory' | 'stream'; epochs: number }
  | { type: 'warning'; message: string }
  | { type: 'auto-trial'; trial: AutoTrial }
  | { type: 'search-trial'; done: number; total: number; row: LeaderboardRow | undefined }
  | ({ type: 'epoch'; epoch: number } & EpochLog)
  | { type: 'extract'; generation: number; done: number; total: number }
  | { type: 'generation'; generation: number; epoch: number; waitedSeconds: number; extractSeconds: number };

const DEFAULTS = {
  batchSize: 32,
  optimizer: 'adam' as OptimizerName,
  lrSchedule: 'constant' as LrSchedule,
  search: false as boolean | SearchOptions,
  poolFeatures: true,
  validationSplit: 0,
  seed: 0,
  memoryBudget: 2 ** 30,
  lockBatchNorm: false,
  foldBatchNorm: true,
  positiveWeights: false,
  tuneThresholds: false,
};

export type ResolvedTrainHeadOptions = ReturnType<typeof validateTrainHeadOptions>;

/** The one validator of `trainHead`'s options: defaults for `undefined`, every value and every rule spanning two options checked. */
export function validateTrainHeadOptions(options: TrainHeadOptions) {
  if (typeof options !== 'object' || options === null) throw new TypeError('trainHead needs an options object');
  const o = withDefaults(DEFAULTS, options);
  checkString('out', o.out);
  if (o.epochs !== undefined) checkPositiveInt('epochs', o.epochs, MAX_INDEX);
  checkPositiveInt('batchSize', o.batchSize);
  checkChoice('optimizer', o.optimizer, OPTIMIZERS);
  if (o.learningRate !== undefined) checkPositiveNumber('learningRate', o.learningRate);
  // No defaults spread for these two: the search must tell a given 0 from an absent value.
  if (o.weightDecay !== undefined) checkNonNegativeNumber('weightDecay', o.weightDecay);
  if (o.labelSmoothing !== undefined) checkFraction('labelSmoothing', o.labelSmoothing);
  checkChoice('lrSchedule', o.lrSchedule, LR_SCHEDULES);
  if (typeof o.poolFeatures !== 'boolean') throw new TypeError(`poolFeatures must be a boolean, received ${typeof o.poolFeatures}`);
  checkSearch(o.search);
  if (o.search !== false && o.refreshEvery !== undefined) {
    throw new SplitfitError('SPLITFIT_USAGE', '`search` runs on the cached features only and cannot be combined with `refreshEvery`; search first, then train the winner with `refreshEvery`', { option: 'search' });
  }
  checkFraction('validationSplit', o.validationSplit);
  checkNonNegativeInt('seed', o.seed);
  checkPositiveNumber('memoryBudget', o.memoryBudget);
  if (o.validationSplit > 0 && o.validationData !== undefined) {
    throw new SplitfitError('SPLITFIT_USAGE', 'give either `validationSplit` or `validationData`, not both', { option: 'validationData' });
  }
  if (o.validationData !== undefined) checkString('validationData', o.validationData);
  if (o.fingerprint !== undefined) checkString('fingerprint', o.fingerprint);
  if (o.earlyStopping !== undefined) checkPositiveInt('earlyStopping', o.earlyStopping.patience);
  if (o.refreshEvery !== undefined) checkPositiveInt('refreshEvery', o.refreshEvery);
  if (o.extractBatchSize !== undefined) checkPositiveInt('extractBatchSize', o.extractBatchSize);
  if (o.loss !== undefined) checkChoice('loss', o.loss, REGRESSION_LOSSES);
  if (typeof o.positiveWeights !== 'boolean') throw new TypeError(`positiveWeights must be a boolean, received ${typeof o.positiveWeights}`);
  if (typeof o.tuneThresholds !== 'boolean') throw new TypeError(`tuneThresholds must be a boolean, received ${typeof o.tuneThresholds}`);
  if (o.tuneThresholds && o.validationSplit === 0 && o.validationData === undefined) {
    throw new SplitfitError('SPLITFIT_USAGE', '`tuneThresholds` tunes on validation data: give `validationSplit` or `validationData` too', { option: 'tuneThresholds' });
  }
  if (o.quantize !== undefined) checkChoice('quantize', o.quantize, QUANTIZE_CHOICES);
  if (Array.isArray(o.classWeights)) {
    for (const w of o.classWeights as readonly number[]) {
      if (typeof w !== 'number') throw new TypeError('classWeights must be numbers');
      if (!(w >= 0) || !Number.isFinite(w)) throw new SplitfitError('SPLITFIT_USAGE', `\`classWeights\` must be finite numbers ≥ 0, got [${o.classWeights.join(', ')}]`, { option: 'classWeights' });
    }
  } else if (o.classWeights !== undefined && o.classWeights !== 'balanced') {
    throw new SplitfitError('SPLITFIT_USAGE', `\`classWeights\` must be "balanced" or one number per class, got ${JSON.stringify(o.classWeights)}`, { option: 'classWeights' });
  }
  return o;
}

function checkNonNegativeNumber(option: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${option} must be a number, received ${typeof v}`);
  if (!(v >= 0) || !Number.isFinite(v)) throw new SplitfitError('SPLITFIT_USAGE', `\`${option}\` must be a finite number ≥ 0, got ${v}`, { option });
  return v;
}

function checkSearch(v: unknown): void {
  if (typeof v === 'boolean') return;
  if (typeof v !== 'object' || v === null) throw new TypeError(`search must be a boolean or an options object, received ${v === null ? 'null' : typeof v}`);
  const s = v as SearchOptions;
  if (s.folds !== undefined) checkPositiveInt('search.folds', s.folds);
  if (s.folds !== undefined && s.folds < 2) throw new SplitfitError('SPLITFIT_USAGE', `\`search.folds\` must be an integer ≥ 2, got ${s.folds}`, { option: 'search.folds' });
  if (s.trials !== undefined) checkPositiveInt('search.trials', s.trials);
  if (s.seconds !== undefined) checkPositiveNumber('search.seconds', s.seconds);
}
