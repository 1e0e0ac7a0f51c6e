import * as tf from '@tensorflow/tfjs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { SplitfitError } from '../errors.js';
import { bundledModelArtifacts, isBundledModel } from './bundled.js';

interface ModelJson {
  modelTopology?: unknown;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  format?: string;
}

/**
 * Loads a LayersModel from `model.json` + weight shards on disk, or a bundled model by name.
 * Reads the files itself, so it works on every backend (no `file://` handler needed).
 */
export async function loadModel(ref: string): Promise<tf.LayersModel> {
  const artifacts = isBundledModel(ref) ? await bundledModelArtifacts(ref) : await readArtifacts(ref);
  try {
    return await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `cannot build a LayersModel from ${ref}: ${message(err)}`, { cause: err });
  }
}

export async function readArtifacts(path: string): Promise<tf.io.ModelArtifacts> {
  const jsonPath = resolve(path.endsWith('.json') ? path : join(path, 'model.json'));
  let json: ModelJson;
  try {
    json = JSON.parse(await readFile(jsonPath, 'utf8')) as ModelJson;
  } catch (err) {
    const what = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : message(err);
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `cannot read model ${jsonPath}: ${what}; pass a tfjs model.json or a bundled model name (see \`splitfit models\`)`,
      { cause: err },
    );
  }
  if (!isLayersTopology(json.modelTopology)) {
    const hint = json.format === 'graph-model' ? ' (this is a GraphModel; splitfit needs a LayersModel)' : '';
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${jsonPath} is not a tfjs LayersModel${hint}`);
  }
  const groups = json.weightsManifest ?? [];
  const buffers: Uint8Array[] = [];
  for (const group of groups) {
    for (const p of group.paths) {
      const shard = join(dirname(jsonPath), p);
      try {
        buffers.push(await readFile(shard));
      } catch (err) {
        throw new SplitfitError('SPLITFIT_MODEL_LOAD', `model ${jsonPath} names weight shard ${p}, which cannot be read: ${message(err)}`, {
          cause: err,
        });
      }
    }
  }
  return {
    modelTopology: json.modelTopology,
    weightSpecs: groups.flatMap((g) => g.weights),
    weightData: concat(buffers),
  };
}

function isLayersTopology(t: unknown): t is tf.io.ModelJSON['modelTopology'] {
  if (typeof t !== 'object' || t === null) return false;
  const o = t as Record<string, unknown>;
  const cfg = (o['model_config'] ?? o) as Record<string, unknown>;
  return typeof cfg['class_name'] === 'string' && typeof cfg['config'] === 'object';
}

function concat(parts: Uint8Array[]): ArrayBuffer {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out.buffer;
}

/** A LayersModel as the bytes of `model.json` (naming one shard, `weights.bin`) and that shard. */
export interface ModelFiles {
  json: string;
  weights: Uint8Array;
}

/** Serialises a LayersModel to the stock layers-model format, in memory. */
export async function modelFiles(model: tf.LayersModel): Promise<ModelFiles> {
  let files: ModelFiles | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = artifacts.weightData === undefined ? new Uint8Array(0) : new Uint8Array(flatWeightData(artifacts.weightData));
      const json = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: 'splitfit',
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      files = { json: JSON.stringify(json), weights };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength } };
    }),
  );
  return files!;
}

/**
 * Saves a LayersModel as `model.json` + `weights.bin` in `dir`, loadable by stock
 * `tf.loadLayersModel('file://…/model.json')`. Each file is written under a temp name, flushed and
 * renamed into place, weights first, so `model.json` never names a half-written shard.
 * (`train-head`'s output folder is committed as one step instead: see `output/commit.ts`.)
 */
export async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new SplitfitError('SPLITFIT_IO', `cannot create output folder ${dir}: ${message(err)}`, { cause: err });
  }
  const files = await modelFiles(model);
  await writeAtomic(join(dir, 'weights.bin'), files.weights);
  await writeAtomic(join(dir, 'model.json'), files.json);
}

function flatWeightData(data: tf.io.WeightData): ArrayBuffer {
  return Array.isArray(data) ? concat(data.map((b) => new Uint8Array(b))) : data;
}

/** Writes to `path.tmp-<pid>`, flushes it to disk and renames it into place. */
export async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeDurable(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new SplitfitError('SPLITFIT_IO', `cannot write ${path}: ${message(err)}`, { cause: err });
  }
}

/** Writes a file and flushes it to disk before returning (a rename after it cannot expose an empty file). */
export async function writeDurable(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
