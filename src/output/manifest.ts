import type { Task } from '../data/types.js';
import { SplitfitError } from '../errors.js';

/** What splitfit.json records about a multi-label or regression head (see `job/task.ts`). */
export interface TaskRecord {
  task: Task;
  loss?: 'mse' | 'mae' | 'huber';
  /** Regress: μ and σ of the training targets, already folded into the last Dense layer (kept for the record). */
  targetScale?: { mean: number[]; std: number[] };
  /** Multilabel: a label is predicted when its probability is ≥ its threshold. */
  thresholds?: number[];
  thresholdsTuned?: boolean;
  positiveWeights?: number[];
}

/** The sidecar `splitfit.json` describing a stitched model: what it was cut from and how to feed it. */
export const MANIFEST_FILE = 'splitfit.json';
export const MANIFEST_FORMAT = 'splitfit/2';

export interface SplitfitManifest {
  /**
   * `splitfit/2` adds `data`, `baseExport` and `training`; folders written as `splitfit/1` are read with those
   * fields absent.
   */
  format: typeof MANIFEST_FORMAT;
  model: string;
  boundary: string;
  fingerprint: string;
  /** Output names: classes, labels (multilabel) or targets (regress). */
  labels: string[];
  /** Absent for classification. Multilabel: thresholds; regress: the loss and the target scale folded into the model. */
  task?: TaskRecord;
  preprocess: string;
  inputSize: [number, number];
  channels: 1 | 3;
  featureShape: number[];
  head: string;
  seed: number;
  backend: string;
  createdAt: string;
  /** The training data source, as recorded by `cache-features`. */
  data?: string;
  /**
   * How the frozen base was exported: BN folded into the kernels, BN as fixed per-channel affine
   * layers (`affine`: what quantized exports use; neither has training-only behaviour), or the source's layers.
   */
  baseExport?: 'folded' | 'affine' | 'original';
  /** The resolved training settings. */
  training?: TrainingSettings;
  /** How model.json's float32 weights are stored (`model/quantize.ts`); absent = float32. */
  quantize?: 'uint8' | 'float16';
  /** Present in a `splitfit export` folder: the model.json it was exported from. */
  exportedFrom?: string;
}

export interface TrainingSettings {
  epochs: number;
  batchSize: number;
  optimizer: string;
  learningRate: number;
  validation: 'none' | 'split' | 'data';
  samples: number;
  validationSamples: number;
  /** Fields below were added within `splitfit/2`; absent in folders written before them. */
  weightDecay?: number;
  labelSmoothing?: number;
  lrSchedule?: string;
  /** The head trained its post-`gap` layers on features pooled once per run. */
  pooledFeatures?: boolean;
  /** With early stopping: the epoch whose weights were kept. */
  bestEpoch?: number;
  /** Present when train-head chose `learningRate` and/or `epochs` itself (details in history.json). */
  auto?: { method: 'sweep' | 'fallback'; chosen: string[]; learningRate: number; epochs: number; holdout: number };
  /** Present when `--search` chose the settings; the leaderboard is in `file`. */
  search?: { file: string; folds: number; tried: number; winnerMean: number };
}

const READABLE_FORMATS = ['splitfit/1', MANIFEST_FORMAT];

/** Parses and checks a manifest read from `file`; older formats are read as the current one. */
export function parseManifest(value: unknown, file: string): SplitfitManifest {
  const bad = (what: string): never => {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${file} is not a splitfit manifest: ${what}; rerun train-head, or remove it to load model.json alone`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('expected a JSON object');
  const m = value as Record<string, unknown>;
  if (!READABLE_FORMATS.includes(m['format'] as string)) return bad(`format ${JSON.stringify(m['format'])}, expected one of ${READABLE_FORMATS.join(', ')}`);
  const labels = m['labels'];
  if (!Array.isArray(labels) || labels.length === 0 || !labels.every((l) => typeof l === 'string')) return bad('"labels" must be a non-empty list of class names');
  const size = m['inputSize'];
  if (!Array.isArray(size) || size.length !== 2 || !size.every((n) => Number.isSafeInteger(n) && (n as number) > 0)) return bad('"inputSize" must be [height, width]');
  if (m['channels'] !== 1 && m['channels'] !== 3) return bad('"channels" must be 1 or 3');
  if (typeof m['preprocess'] !== 'string') return bad('"preprocess" must be a preset name');
  return { ...(m as unknown as SplitfitManifest), format: MANIFEST_FORMAT };
}
