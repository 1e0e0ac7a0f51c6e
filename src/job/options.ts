import type * as tf from '@tensorflow/tfjs';
import type { FeatureCache } from '../cache/feature-cache.js';
import { MAX_INDEX } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';
import { checkFraction, checkNonNegativeInt, checkPositiveInt, checkPositiveNumber, checkChoice, checkString, withDefaults } from '../options.js';
import type { EpochLog } from '../train/fit.js';
import { OPTIMIZERS, type OptimizerName } from '../train/step.js';

export interface TrainHeadOptions {
  /** Cache directory (or open cache) written by `cache-features`. @default './cache' */
  cache?: string | FeatureCache;
  /** Output folder for the stitched model, head, history.json and splitfit.json. */
  out: string;
  /** Which cached run to train on: a fingerprint or any unique prefix of one. @default the last `cache-features` run */
  fingerprint?: string;
  /** Head spec (see `parseHeadSpec`). @default 'gap,dense:N:softmax' for feature maps, 'dense:N:softmax' for vectors */
  head?: string;
  /** @default 10 */
  epochs?: number;
  /** @default 32 */
  batchSize?: number;
  /** @default 'adam' */
  optimizer?: OptimizerName;
  /** @default 0.001 */
  learningRate?: number;
  /** Fraction of samples held out (seeded) for validation. @default 0 */
  validationSplit?: number;
  /** A separate validation data set (folder, manifest or IDX); its features are extracted into the same cache. */
  validationData?: string;
  /** Stop when the monitored loss (validation loss if any, else training loss) has not improved for `patience` epochs. */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Per-class loss weights, or 'balanced' (n / (k · count)). @default equal weights */
  classWeights?: 'balanced' | readonly number[];
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
  /** The source model, when `cache-features` ran on an in-memory model. */
  model?: tf.LayersModel;
  /** Stops training between steps (`SPLITFIT_INTERRUPTED`); nothing is written to `out`, the cache stays consistent. */
  signal?: AbortSignal;
  onProgress?: (event: TrainEvent) => void;
}

export type TrainEvent =
  | { type: 'start'; samples: number; validation: number; mode: 'memory' | 'stream'; epochs: number }
  | ({ type: 'epoch'; epoch: number } & EpochLog)
  | { type: 'extract'; generation: number; done: number; total: number }
  | { type: 'generation'; generation: number; epoch: number; waitedSeconds: number; extractSeconds: number };

const DEFAULTS = {
  epochs: 10,
  batchSize: 32,
  optimizer: 'adam' as OptimizerName,
  learningRate: 1e-3,
  validationSplit: 0,
  seed: 0,
  memoryBudget: 2 ** 30,
  lockBatchNorm: false,
  foldBatchNorm: true,
};

export type ResolvedTrainHeadOptions = ReturnType<typeof validateTrainHeadOptions>;

/** The one validator of `trainHead`'s options: defaults for `undefined`, every value and every rule spanning two options checked. */
export function validateTrainHeadOptions(options: TrainHeadOptions) {
  if (typeof options !== 'object' || options === null) throw new TypeError('trainHead needs an options object');
  const o = withDefaults(DEFAULTS, options);
  checkString('out', o.out);
  checkPositiveInt('epochs', o.epochs, MAX_INDEX);
  checkPositiveInt('batchSize', o.batchSize);
  checkChoice('optimizer', o.optimizer, OPTIMIZERS);
  checkPositiveNumber('learningRate', o.learningRate);
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
