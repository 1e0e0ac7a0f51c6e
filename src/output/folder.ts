import type * as tf from '@tensorflow/tfjs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SplitfitError } from '../errors.js';
import { message, modelFiles } from '../model/io.js';
import type { Quantize } from '../model/quantize.js';
import type { History } from '../train/fit.js';
import { COMMIT_FILE, type CommitRecord, commitFiles, verifyFolder } from './commit.js';
import { MANIFEST_FILE, parseManifest, type SplitfitManifest } from './manifest.js';
import { modelMetadataOf, userDefinedMetadataOf } from './metadata.js';

/** The report (see `report/`): `report.html` opens from disk; `report.json` is its data, for `splitfit report` to render again. */
export const REPORT_HTML = 'report.html';
export const REPORT_JSON = 'report.json';

/**
 * The output folder of `train-head`, format `splitfit/2`: the stitched model (`model.json` +
 * `weights.bin`, stock tfjs), the trained head alone (`head/`), `history.json`, the manifest
 * `splitfit.json`, and the commit record `splitfit.commit.json` that makes them one unit (see
 * `commit.ts`). Training writes it here; inference, evaluation and export read it here.
 */
export const OUTPUT_FILES = ['model.json', 'weights.bin', 'head/model.json', 'head/weights.bin', 'history.json', MANIFEST_FILE, REPORT_HTML, REPORT_JSON] as const;

/** The leaderboard of `train-head --search`, written next to the model when the search ran. */
export const SEARCH_FILE = 'search.json';

export interface TrainingOutput {
  model: tf.LayersModel;
  head: tf.LayersModel;
  history: History;
  manifest: SplitfitManifest;
  /** The rendered report and its data; committed with the model, so a report always describes the model beside it. */
  report?: { html: string; json: string };
  /** Further files of the same commit (e.g. `search.json`), path → JSON text. */
  extra?: ReadonlyMap<string, string>;
  /** Quantize the stitched model's weights; `head/` stays float32 (it is what `splitfit export` re-stitches from). @default none */
  quantize?: Quantize;
}

/**
 * The stitched model's files: model.json carries `userDefinedMetadata.splitfit` (labels, input,
 * preprocessing) so it can be used without `splitfit.json`; weights quantized when asked.
 */
export function stitchedModelFiles(model: tf.LayersModel, manifest: SplitfitManifest, quantize: Quantize | undefined, pixels?: string) {
  return modelFiles(model, { userDefinedMetadata: userDefinedMetadataOf(modelMetadataOf(manifest, pixels)), ...(quantize ? { quantize } : {}) });
}

/**
 * Writes a training run's output folder as one commit. The metadata lives inside model.json, so the
 * one-step commit covers it: no reader ever sees a model.json whose metadata belongs to another run.
 */
export async function writeOutputFolder(out: string, o: TrainingOutput): Promise<CommitRecord> {
  const stitched = await stitchedModelFiles(o.model, o.manifest, o.quantize);
  const head = await modelFiles(o.head);
  const files = new Map<string, string | Uint8Array>([
    ['weights.bin', stitched.weights],
    ['model.json', stitched.json],
    ['head/weights.bin', head.weights],
    ['head/model.json', head.json],
    ['history.json', JSON.stringify(o.history, null, 2)],
    [MANIFEST_FILE, JSON.stringify(o.manifest, null, 2)],
    ...(o.report
      ? ([
          [REPORT_JSON, o.report.json],
          [REPORT_HTML, o.report.html],
        ] as const)
      : []),
    ...(o.extra ?? []),
  ]);
  return commitFiles(out, files);
}

/**
 * Fails before any work when `out` cannot take a training output: a path splitfit will write
 * exists as the wrong kind (a folder where a file goes, or a file where `head/` goes).
 */
export async function checkOutputFolder(out: string): Promise<void> {
  const kinds = new Map<string, 'file' | 'folder'>([...OUTPUT_FILES.map((f) => [f, 'file'] as const), ['head', 'folder'], [COMMIT_FILE, 'file'], [SEARCH_FILE, 'file']]);
  for (const [path, kind] of kinds) {
    const info = await stat(join(out, path)).catch(() => undefined);
    if (info && (kind === 'folder') !== info.isDirectory()) {
      throw new SplitfitError('SPLITFIT_IO', `--out ${out}: ${path} exists and is not a ${kind}; splitfit writes a ${kind} there — move it away or choose another --out`);
    }
  }
}

export interface OutputFolder {
  dir: string;
  modelJson: string;
  manifest?: SplitfitManifest;
  /** Absent for a folder splitfit did not commit (a plain model.json + shards). */
  record?: CommitRecord;
}

/**
 * Opens the folder of a model.json for reading: finishes an interrupted commit, checks every
 * committed file against the commit record, and reads the manifest when there is one.
 */
export async function readOutputFolder(modelRef: string): Promise<OutputFolder> {
  const modelJson = resolve(modelRef.endsWith('.json') ? modelRef : join(modelRef, 'model.json'));
  const dir = dirname(modelJson);
  const record = basename(modelJson) === 'model.json' ? await verifyFolder(dir) : undefined;
  const file = join(dir, MANIFEST_FILE);
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SplitfitError('SPLITFIT_MODEL_LOAD', `cannot read ${file}: ${message(err)}`, { cause: err });
  }
  let manifest: SplitfitManifest | undefined;
  if (text !== undefined) {
    try {
      manifest = parseManifest(JSON.parse(text), file);
    } catch (err) {
      if (err instanceof SplitfitError) throw err;
      throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${file} is not valid JSON (${message(err)}); rerun train-head, or remove it to load model.json alone`, { cause: err });
    }
  }
  return { dir, modelJson, ...(manifest ? { manifest } : {}), ...(record ? { record } : {}) };
}
