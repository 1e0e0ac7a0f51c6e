import { SplitfitError } from '../errors.js';
import { PREPROCESS_PRESETS, type PreprocessPreset } from '../data/preprocess.js';
import { TASKS } from '../data/task.js';

/**
 * What a stitched model needs to be used without `splitfit.json`: written into model.json's
 * `userDefinedMetadata.splitfit`, read by `splitfit predict` and the browser module. Pure (no Node
 * imports): the browser bundle includes this file.
 */
export type ModelMetadata = ClassifyMetadata | MultiLabelMetadata | RegressMetadata;

interface CommonMetadata {
  format: typeof MODEL_METADATA_FORMAT;
  /** Output names in output order: class names (classify), label names (multilabel), target names (regress). */
  labels: string[];
  input: { height: number; width: number; channels: 1 | 3 };
  /** How to build the input tensor from an image: the shared pixel pipeline, then the preset. */
  preprocessing: { pixels: string; preset: PreprocessPreset };
}

/** One class per image: a softmax over `labels`. */
export interface ClassifyMetadata extends CommonMetadata {
  task: 'classify';
}

/** Any set of `labels` per image: one sigmoid probability per label. */
export interface MultiLabelMetadata extends CommonMetadata {
  task: 'multilabel';
  /** Per label, in label order: the label is predicted when its probability is ≥ this (0.5 unless tuned). */
  thresholds: number[];
}

/** Numbers per image: the outputs are the targets `labels`, already in their own units (the target scale is folded into the model). */
export interface RegressMetadata extends CommonMetadata {
  task: 'regress';
  /** The unit of each target, in label order (e.g. `deg`), when known. */
  units?: string[];
}

export const MODEL_METADATA_FORMAT = 'splitfit-model/1';
/** A multi-label model's decision threshold for a label unless tuned: predicted when its probability is ≥ 0.5. */
export const DEFAULT_LABEL_THRESHOLD = 0.5;
/** The key under model.json's `userDefinedMetadata`. */
export const METADATA_KEY = 'splitfit';

/** Parses `userDefinedMetadata` (as tfjs returns it) into metadata; `undefined` when splitfit wrote none. */
export function readModelMetadata(userDefined: unknown, source: string): ModelMetadata | undefined {
  if (userDefined === undefined || userDefined === null) return undefined;
  const raw = (userDefined as Record<string, unknown>)[METADATA_KEY];
  if (raw === undefined) return undefined;
  const bad = (what: string): never => {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${source}: userDefinedMetadata.${METADATA_KEY} is not splitfit model metadata: ${what}; re-export the model with splitfit`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('expected an object');
  const m = raw as Record<string, unknown>;
  if (m['format'] !== MODEL_METADATA_FORMAT) return bad(`format ${JSON.stringify(m['format'])}, expected ${MODEL_METADATA_FORMAT}`);
  const task = m['task'];
  if (!(TASKS as readonly unknown[]).includes(task)) return bad(`task ${JSON.stringify(task)}, expected one of ${TASKS.join(', ')}`);
  const labels = m['labels'];
  if (!Array.isArray(labels) || labels.length === 0 || !labels.every((l) => typeof l === 'string')) return bad('"labels" must be a non-empty list of names');
  if (task === 'multilabel') {
    const t = m['thresholds'];
    if (!Array.isArray(t) || t.length !== labels.length || !t.every((v) => typeof v === 'number' && v >= 0 && v <= 1)) return bad(`"thresholds" must hold ${labels.length} numbers in [0, 1], one per label`);
  }
  if (task === 'regress' && m['units'] !== undefined) {
    const u = m['units'];
    if (!Array.isArray(u) || u.length !== labels.length || !u.every((v) => typeof v === 'string')) return bad(`"units" must hold ${labels.length} strings, one per target`);
  }
  const input = m['input'] as Record<string, unknown> | undefined;
  const positive = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) > 0;
  if (typeof input !== 'object' || input === null || !positive(input['height']) || !positive(input['width']) || (input['channels'] !== 1 && input['channels'] !== 3)) {
    return bad('"input" must be {height, width, channels: 1 or 3}');
  }
  const pre = m['preprocessing'] as Record<string, unknown> | undefined;
  if (typeof pre !== 'object' || pre === null || typeof pre['pixels'] !== 'string' || !(PREPROCESS_PRESETS as readonly unknown[]).includes(pre['preset'])) {
    return bad(`"preprocessing" must be {pixels, preset: one of ${PREPROCESS_PRESETS.join(', ')}}`);
  }
  return m as unknown as ModelMetadata;
}
