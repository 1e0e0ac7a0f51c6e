import type * as tf from '@tensorflow/tfjs';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FEATURE_DTYPES } from '../cache/codec.js';
import { describeDecode } from '../data/decode.js';
import { openDataSource } from '../data/sources.js';
import type { DataSource } from '../data/types.js';
import { describePreprocess, parsePreprocess } from '../data/preprocess.js';
import { SplitfitError, throwIfAborted } from '../errors.js';
import { evaluate } from '../infer/evaluate.js';
import { fingerprint } from '../model/fingerprint.js';
import { loadModel, message, modelFiles } from '../model/io.js';
import { readModelMetadata, type ModelMetadata } from '../model/metadata.js';
import { QUANTIZE_CHOICES, type Quantize } from '../model/quantize.js';
import { splitBase } from '../model/split.js';
import { exportBase } from '../model/fold.js';
import { stitch } from '../model/stitch.js';
import { shortFingerprint } from '../cache/keys.js';
import { COMMIT_FILE, commitFiles, readRecord } from '../output/commit.js';
import { readOutputFolder, stitchedModelFiles } from '../output/folder.js';
import { MANIFEST_FILE, type SplitfitManifest } from '../output/manifest.js';
import { checkMetadataAgrees, userDefinedMetadataOf } from '../output/metadata.js';
import { checkChoice, checkString, withDefaults } from '../options.js';

export interface ExportOptions {
  /** The model folder to export (a `train-head` or `splitfit export` output folder, or its model.json). */
  model: string;
  /** Output folder: created whole in one step (a kill leaves no folder or a complete one), or an earlier export there replaced in one step. */
  out: string;
  /** Store the float32 weights as `uint8` (affine per tensor) or `float16`; stock `tf.loadLayersModel` dequantizes them. @default none (float32) */
  quantize?: Quantize;
  /**
   * Export the frozen base with BatchNormalization folded (see `exportBase`). A folder trained with
   * `foldBatchNorm: false` is folded from its own files; a folded folder is unfolded by re-stitching
   * its `head/` onto the source model it was cut from, which must still give the same base. @default true
   */
  foldBatchNorm?: boolean;
  /** The source model (path or bundled name), when unfolding and `splitfit.json`'s `model` has moved. @default the recorded one */
  sourceModel?: string;
  /** Labeled data (folder, manifest or IDX) to score the source and the exported model on: the accuracy change of the export. */
  validationData?: string | DataSource;
  signal?: AbortSignal;
}

export interface ExportResult {
  out: string;
  from: string;
  quantize: Quantize | 'float32';
  /** How the exported base is stored (`unknown`: a folder without splitfit.json, written as it is). */
  baseExport: BaseForm | 'unknown';
  /** `as-is`: the folder's model, re-encoded; else the form `head/` was re-stitched in. */
  rebuilt: 'as-is' | BaseForm;
  /** File sizes in bytes: model.json + weights.bin of the source and of the export. */
  bytes: { source: { modelJson: number; weights: number }; exported: { modelJson: number; weights: number } };
  /** With `validationData`: accuracy of the source and the exported model, and the change (exported − source). */
  accuracy?: { n: number; source: number; exported: number; change: number };
  /** Everything written, relative to `out`. */
  files: string[];
}

const DEFAULTS = { foldBatchNorm: true };

export function validateExportOptions(options: ExportOptions) {
  if (typeof options !== 'object' || options === null) throw new TypeError('exportModel needs an options object');
  const o = withDefaults(DEFAULTS, options);
  checkString('model', o.model);
  checkString('out', o.out);
  if (o.quantize !== undefined) checkChoice('quantize', o.quantize, QUANTIZE_CHOICES);
  if (typeof o.foldBatchNorm !== 'boolean') throw new TypeError(`foldBatchNorm must be a boolean, received ${typeof o.foldBatchNorm}`);
  if (o.sourceModel !== undefined) checkString('sourceModel', o.sourceModel);
  if (typeof o.validationData === 'string') checkString('validationData', o.validationData);
  return o;
}

/**
 * `splitfit export`: writes a model folder again, optionally quantized and/or with the base folded
 * or unfolded, as a committed output folder (model.json with its metadata, weights.bin, `head/`
 * and `splitfit.json` when the source has them). The report and history stay with the source:
 * they describe the float32 model's training, not this file.
 */
export async function exportModel(options: ExportOptions): Promise<ExportResult> {
  const o = validateExportOptions(options);
  const folder = await readOutputFolder(o.model);
  const out = resolve(o.out);
  if (out === folder.dir) throw new SplitfitError('SPLITFIT_USAGE', `\`out\` ${o.out} is the folder being exported; choose another folder`, { option: 'out' });
  await checkExportFolder(out);
  // Opened (and so checked) before any work: a wrong path must not cost an export.
  const validation = typeof o.validationData === 'string' ? await openDataSource(o.validationData) : o.validationData;
  const source = await loadModel(folder.modelJson);
  try {
    const metadata = readModelMetadata(source.getUserDefinedMetadata(), folder.modelJson);
    const manifest = folder.manifest;
    if (metadata && manifest) checkMetadataAgrees(metadata, manifest, folder.modelJson);
    if (!metadata && !manifest) {
      throw new SplitfitError(
        'SPLITFIT_MODEL_LOAD',
        `${folder.modelJson} has neither a ${MANIFEST_FILE} beside it nor userDefinedMetadata.splitfit, so its labels and preprocessing are unknown; export the folder train-head wrote`,
      );
    }
    throwIfAborted(o.signal);
    const built = await buildExport(source, folder.dir, manifest, o);
    try {
      throwIfAborted(o.signal);
      const files = await exportFiles(built.model, folder.dir, manifest, metadata, o, built.baseExport);
      // A new `out` is committed whole in a hidden sibling and renamed into place (output/commit.ts).
      await commitFiles(out, files);
      const written = new Map([...files].map(([p, d]) => [p, typeof d === 'string' ? Buffer.byteLength(d) : d.byteLength]));
      const result: ExportResult = {
        out,
        from: folder.modelJson,
        quantize: o.quantize ?? 'float32',
        baseExport: built.baseExport,
        rebuilt: built.rebuilt,
        bytes: {
          source: await sourceBytes(folder.dir, folder.modelJson),
          exported: { modelJson: written.get('model.json')!, weights: written.get('weights.bin')! },
        },
        files: [...files.keys()].sort(),
      };
      if (validation !== undefined) {
        // The export is scored as a reader loads it: from the committed folder, weights dequantized by tfjs.
        const before = await evaluate({ model: folder.modelJson, data: validation, ...(o.signal ? { signal: o.signal } : {}) });
        const after = await evaluate({ model: join(out, 'model.json'), data: validation, ...(o.signal ? { signal: o.signal } : {}) });
        result.accuracy = { n: after.n, source: before.accuracy, exported: after.accuracy, change: after.accuracy - before.accuracy };
      }
      return result;
    } finally {
      for (const m of built.owned) m.dispose();
    }
  } finally {
    source.dispose();
  }
}

type Resolved = ReturnType<typeof validateExportOptions>;

/** How an export stores its frozen base (see `SplitfitManifest.baseExport`). */
export type BaseForm = 'folded' | 'affine' | 'original';

/**
 * The base form an export writes. Quantized weights need BN as per-channel affine layers: a folded
 * kernel scales each output channel by its own BN factor, which one per-tensor uint8 grid cannot hold
 * (measured on MobileNetV2: uint8 folded −30 points, affine ±0; float16 folded flips 3 of 120 top-1 labels, affine none).
 */
export function baseFormOf(foldBatchNorm: boolean, quantize: Quantize | undefined): BaseForm {
  return !foldBatchNorm ? 'original' : quantize !== undefined ? 'affine' : 'folded';
}

/** `stitch` with the base in `form`: the source's layers, BN folded into the kernels, or BN as fixed affine layers. */
export async function stitchAs(base: tf.LayersModel, head: tf.LayersModel, form: BaseForm): Promise<tf.LayersModel> {
  if (form !== 'affine') return stitch(base, head, { foldBatchNorm: form === 'folded' });
  const exported = exportBase(base, { intoKernels: false, avoidNames: head.layers.map((l) => l.name) });
  try {
    return await stitch(exported.model, head);
  } finally {
    exported.model.dispose();
  }
}

/**
 * The model to write: the source as it is, or `head/` re-stitched onto the unfolded base in the wanted
 * form — the folder's own base when it holds the source's layers, else the source model it records.
 * `owned` are the models to dispose once the export is written (stitched weights share their buffers).
 */
async function buildExport(
  source: tf.LayersModel,
  dir: string,
  manifest: SplitfitManifest | undefined,
  o: Resolved,
): Promise<{ model: tf.LayersModel; baseExport: ExportResult['baseExport']; rebuilt: ExportResult['rebuilt']; owned: tf.LayersModel[] }> {
  if (!manifest) {
    if (!o.foldBatchNorm) {
      throw new SplitfitError('SPLITFIT_USAGE', `\`foldBatchNorm: false\` needs the ${MANIFEST_FILE} beside ${dir}/model.json (its boundary and how its base was exported); export the folder train-head wrote`, { option: 'foldBatchNorm' });
    }
    return { model: source, baseExport: 'unknown', rebuilt: 'as-is', owned: [] };
  }
  // splitfit/1 folders predate folding: their base is the source's layers.
  const current = manifest.baseExport ?? 'original';
  const wanted = baseFormOf(o.foldBatchNorm, o.quantize);
  if (current === wanted) return { model: source, baseExport: current, rebuilt: 'as-is', owned: [] };
  const head = await loadHead(dir);
  if (current === 'original') {
    // The folder's own base (the source's layers, cut at the recorded boundary): no source model needed.
    const { base } = splitBase(source, manifest.boundary);
    const model = await stitchAs(base, head, wanted);
    return { model, baseExport: wanted, rebuilt: wanted, owned: [model, head] };
  }
  const base = await sourceBase(manifest, o.sourceModel, dir, current, wanted);
  const model = await stitchAs(base.base, head, wanted);
  return { model, baseExport: wanted, rebuilt: wanted, owned: [model, head, base.source] };
}

async function loadHead(dir: string): Promise<tf.LayersModel> {
  const file = join(dir, 'head', 'model.json');
  if (!(await stat(file).catch(() => undefined))) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${dir} has no head/model.json, which re-exporting its base needs; export the folder train-head wrote (it keeps head/)`);
  }
  return loadModel(file);
}

/**
 * The unfolded base: the recorded source model cut at the boundary. A folded base cannot be unfolded
 * from its own weights (the BN statistics are gone), so the source must still give the base the head
 * was trained on: the features fingerprint is checked.
 */
async function sourceBase(manifest: SplitfitManifest, given: string | undefined, dir: string, current: BaseForm, wanted: BaseForm): Promise<{ source: tf.LayersModel; base: tf.LayersModel }> {
  const ref = given ?? manifest.model;
  const kind = { original: 'an unfolded export', affine: 'a quantized export (BN as affine layers)', folded: 'a folded float32 export' }[wanted];
  const what = `${dir} holds its base with BatchNorm ${current === 'affine' ? 'as affine layers' : 'folded'}; ${kind} re-stitches its head/ onto the source model`;
  const fix = `pass the model it was cut from as \`sourceModel\` (CLI: --source-model), or rerun train-head with the export options you want${wanted === 'original' ? ' (`foldBatchNorm: false`, CLI: --no-fold-bn)' : ' (`quantize`, CLI: --quantize)'}`;
  if (ref === '<memory>') throw new SplitfitError('SPLITFIT_USAGE', `${what}, and it was trained from an in-memory model; ${fix}`, { option: 'sourceModel' });
  let src: tf.LayersModel;
  try {
    src = await loadModel(ref);
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${what} ${ref}, which cannot be loaded (${message(err)}); ${fix}`, { cause: err });
  }
  const b = splitBase(src, manifest.boundary);
  const preprocess = `${describeDecode()}|${describePreprocess(parsePreprocess(manifest.preprocess))}`;
  const input = { boundary: b.boundary, inputSize: manifest.inputSize, channels: manifest.channels, preprocess };
  // splitfit.json does not record the cache's feature dtype; either one names the same base.
  const found = FEATURE_DTYPES.map((dtype) => fingerprint(b.base, { ...input, dtype }));
  if (!found.includes(manifest.fingerprint)) {
    src.dispose();
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `${ref} cut at ${manifest.boundary} no longer gives the base of ${dir} (fingerprint ${shortFingerprint(found[0]!)} ≠ ${shortFingerprint(manifest.fingerprint)}: its weights, or splitfit's pixel pipeline, changed); ${fix}`,
    );
  }
  return { source: src, base: b.base };
}

/** The export's files: the model (metadata inside model.json), its manifest, and the float32 head when the source has one. */
async function exportFiles(
  model: tf.LayersModel,
  dir: string,
  manifest: SplitfitManifest | undefined,
  metadata: ModelMetadata | undefined,
  o: Resolved,
  baseExport: ExportResult['baseExport'],
): Promise<Map<string, string | Uint8Array>> {
  const stitched = manifest
    ? await stitchedModelFiles(model, manifest, o.quantize, metadata?.preprocessing.pixels)
    : await modelFiles(model, { userDefinedMetadata: userDefinedMetadataOf(metadata!), ...(o.quantize ? { quantize: o.quantize } : {}) });
  const files = new Map<string, string | Uint8Array>([
    ['weights.bin', stitched.weights],
    ['model.json', stitched.json],
  ]);
  const record = await readRecord(dir);
  for (const path of ['head/weights.bin', 'head/model.json']) {
    // Copied byte for byte: verified against the source's commit record by readOutputFolder.
    if (record?.files.some((f) => f.path === path)) files.set(path, await readFile(join(dir, path)));
  }
  if (manifest) {
    const { quantize: _q, exportedFrom: _e, ...rest } = manifest;
    const next: SplitfitManifest = {
      ...rest,
      ...(baseExport === 'unknown' ? {} : { baseExport }),
      ...(o.quantize ? { quantize: o.quantize } : {}),
      exportedFrom: join(dir, 'model.json'),
      createdAt: new Date().toISOString(),
    };
    files.set(MANIFEST_FILE, JSON.stringify(next, null, 2));
  }
  return files;
}

async function sourceBytes(dir: string, modelJson: string): Promise<{ modelJson: number; weights: number }> {
  const doc = JSON.parse(await readFile(modelJson, 'utf8')) as { weightsManifest?: { paths: string[] }[] };
  let weights = 0;
  for (const g of doc.weightsManifest ?? []) for (const p of g.paths) weights += (await stat(join(dir, p))).size;
  return { modelJson: (await stat(modelJson)).size, weights };
}

/** Files splitfit export writes, besides the commit record. */
const EXPORT_FILES = ['model.json', 'weights.bin', 'head/model.json', 'head/weights.bin', MANIFEST_FILE];

/** Fails before any work when a path the export writes exists as the wrong kind. */
async function checkExportFolder(out: string): Promise<void> {
  const info = await stat(out).catch(() => undefined);
  if (info && !info.isDirectory()) throw new SplitfitError('SPLITFIT_IO', `\`out\` ${out} exists and is not a folder; choose another folder`);
  for (const [path, kind] of [...EXPORT_FILES.map((f) => [f, 'file'] as const), ['head', 'folder'] as const, [COMMIT_FILE, 'file'] as const]) {
    const s = await stat(join(out, path)).catch(() => undefined);
    if (s && (kind === 'folder') !== s.isDirectory()) throw new SplitfitError('SPLITFIT_IO', `\`out\` ${out}: ${path} exists and is not a ${kind}; splitfit writes a ${kind} there — move it away or choose another folder`);
  }
}

