import { PIXEL_PIPELINE } from '../data/pixels.js';
import { SplitfitError } from '../errors.js';
import { DEFAULT_LABEL_THRESHOLD, METADATA_KEY, MODEL_METADATA_FORMAT, type ModelMetadata } from '../model/metadata.js';
import { MANIFEST_FILE, type SplitfitManifest } from './manifest.js';

/**
 * The model.json metadata of a stitched model, from its manifest: what a reader needs without
 * `splitfit.json` (labels, input size, pixel pipeline and preset). The one place that maps a
 * manifest to metadata; `pixels` is the pipeline the features were extracted with (the current one
 * at train-head time: the run's fingerprint, which includes it, was checked then).
 */
export function modelMetadataOf(manifest: SplitfitManifest, pixels: string = metadataPixels()): ModelMetadata {
  const common = {
    format: MODEL_METADATA_FORMAT as typeof MODEL_METADATA_FORMAT,
    labels: [...manifest.labels],
    input: { height: manifest.inputSize[0], width: manifest.inputSize[1], channels: manifest.channels },
    preprocessing: { pixels, preset: manifest.preprocess as ModelMetadata['preprocessing']['preset'] },
  };
  // The task as splitfit.json records it (absent: classification); a multilabel model carries its thresholds.
  const task = manifest.task?.task ?? 'classify';
  if (task === 'multilabel') return { ...common, task, thresholds: manifest.task?.thresholds ?? manifest.labels.map(() => DEFAULT_LABEL_THRESHOLD) };
  return task === 'regress' ? { ...common, task } : { ...common, task };
}

/**
 * The pixel-pipeline description written into new metadata: what a reader (the browser module) must
 * reproduce to build the input tensor from decoded pixels — the shared pipeline, not the decoder
 * (each platform decodes with its own). The one place that chooses it.
 */
export function metadataPixels(): string {
  return PIXEL_PIPELINE;
}

/** `userDefinedMetadata` of a stitched model.json: splitfit's part under its key. */
export function userDefinedMetadataOf(metadata: ModelMetadata): Record<string, object> {
  return { [METADATA_KEY]: metadata };
}

/**
 * Fails with `SPLITFIT_MODEL_LOAD` when a folder's model.json metadata and its `splitfit.json` say
 * different things about how to use the model (a folder mixing two runs, or a hand-edited file).
 * Every field is compared except `preprocessing.pixels`, which names the splitfit version that wrote it.
 */
export function checkMetadataAgrees(metadata: ModelMetadata, manifest: SplitfitManifest, modelJson: string): void {
  const expected = modelMetadataOf(manifest, metadata.preprocessing.pixels);
  const differ = (Object.keys({ ...expected, ...metadata }) as (keyof ModelMetadata)[]).filter((k) => canonical(expected[k]) !== canonical(metadata[k]));
  if (differ.length === 0) return;
  const show = (m: ModelMetadata): string => differ.map((k) => `${k} ${JSON.stringify(m[k])}`).join(', ');
  throw new SplitfitError(
    'SPLITFIT_MODEL_LOAD',
    `${modelJson} and the ${MANIFEST_FILE} beside it disagree: model.json's userDefinedMetadata.${METADATA_KEY} says ${show(metadata)}, ${MANIFEST_FILE} says ${show(expected)}; the folder mixes two runs or was edited — rerun train-head (or \`splitfit export\` the folder it came from)`,
  );
}

/** JSON with object keys sorted, so key order never counts as a difference. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}
