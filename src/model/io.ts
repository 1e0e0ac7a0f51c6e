import * as tf from '@tensorflow/tfjs';
import { constants } from 'node:fs';
import { mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { SplitfitError } from '../errors.js';
import { bundledModelArtifacts, isBundledModel } from './bundled.js';
import { checkTopology } from './graph.js';
import { parseModelDocument, type WeightGroup } from './model-json.js';
import { type Quantize, quantizeWeights } from './quantize.js';

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

/** Largest model.json read: real topologies are a few MB; this stops `--model /dev/zero`-like input early. */
export const MAX_MODEL_JSON_BYTES = 256 * 2 ** 20;
/** Largest total of weight bytes: a Node Buffer holds at most 4 GiB. */
export const MAX_WEIGHT_BYTES = 2 ** 32 - 1;

/**
 * Reads and checks `model.json` and its shards: the document's fields and topology are checked
 * before tfjs sees them (no hang, no crash deep inside tfjs), every shard must be a regular file
 * inside the model's folder (after symlinks), and each weight group's shards must hold exactly the
 * bytes its manifest declares, so a truncated or mixed-up weights.bin never loads.
 */
export async function readArtifacts(path: string): Promise<tf.io.ModelArtifacts> {
  const jsonPath = resolve(path.endsWith('.json') ? path : join(path, 'model.json'));
  let text: string;
  try {
    text = (await readRegularFile(jsonPath, MAX_MODEL_JSON_BYTES)).toString('utf8');
  } catch (err) {
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `cannot read model ${jsonPath}: ${describeReadError(err)}; pass a tfjs model.json or a bundled model name (see \`splitfit models\`)`,
      { cause: err },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `cannot read model ${jsonPath}: not JSON (${message(err)}); pass a tfjs LayersModel model.json`, { cause: err });
  }
  const doc = parseModelDocument(json, jsonPath);
  // Kept as tfjs keeps it (a plain object, else dropped): splitfit's own part is checked by readModelMetadata.
  const udm = (json as Record<string, unknown>)['userDefinedMetadata'];
  const userDefinedMetadata = typeof udm === 'object' && udm !== null && !Array.isArray(udm) ? (udm as Record<string, object>) : undefined;
  checkTopology(doc.modelTopology, jsonPath);
  const folder = await realpath(dirname(jsonPath));
  const buffers: Uint8Array[] = [];
  let total = 0;
  for (const [i, group] of doc.groups.entries()) {
    // One at a time: a manifest may list thousands of shards, and each check opens the file.
    const shards: Shard[] = [];
    for (const p of group.paths) shards.push(await locateShard(jsonPath, folder, p));
    const actual = shards.reduce((n, s) => n + s.size, 0);
    if (actual !== group.bytes) throw shardSizeError(jsonPath, i, group, shards, actual);
    total += actual;
    if (total > MAX_WEIGHT_BYTES) throw new SplitfitError('SPLITFIT_MODEL_LOAD', `model ${jsonPath}: its weights exceed ${MAX_WEIGHT_BYTES} bytes, more than splitfit can hold in memory`);
    for (const s of shards) {
      let bytes: Buffer;
      try {
        bytes = await readRegularFile(s.real, s.size);
      } catch (err) {
        throw new SplitfitError('SPLITFIT_MODEL_LOAD', `model ${jsonPath} names weight shard ${s.path}, which cannot be read: ${describeReadError(err)}`, { cause: err });
      }
      // The shard changed between the size check and the read (another process rewrote it).
      if (bytes.byteLength !== s.size) throw shardSizeError(jsonPath, i, group, [{ ...s, size: bytes.byteLength }], bytes.byteLength);
      buffers.push(bytes);
    }
  }
  return {
    modelTopology: doc.modelTopology,
    weightSpecs: doc.groups.flatMap((g) => g.weights),
    weightData: concat(buffers),
    ...(userDefinedMetadata ? { userDefinedMetadata } : {}),
  };
}

interface Shard {
  /** As model.json names it. */
  path: string;
  /** Resolved, symlinks followed. */
  real: string;
  size: number;
}

/** Resolves a shard path and refuses one that leaves the model's folder (`../`, absolute, or a symlink out). */
async function locateShard(jsonPath: string, folder: string, p: string): Promise<Shard> {
  const refuse = (why: string): SplitfitError =>
    new SplitfitError('SPLITFIT_MODEL_LOAD', `model ${jsonPath} names weight shard ${JSON.stringify(p)}, ${why}; shards must be files inside the model's folder ${folder}`);
  if (isAbsolute(p)) throw refuse('an absolute path');
  let real: string;
  try {
    real = await realpath(join(folder, p));
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `model ${jsonPath} names weight shard ${p}, which cannot be read: ${describeReadError(err)}`, { cause: err });
  }
  const rel = relative(folder, real);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) throw refuse(`which resolves to ${real}, outside the model's folder`);
  let size: number;
  try {
    size = (await statRegularFile(real)).size;
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `model ${jsonPath} names weight shard ${p}, which cannot be read: ${describeReadError(err)}`, { cause: err });
  }
  return { path: p, real, size };
}

function shardSizeError(jsonPath: string, index: number, group: WeightGroup, shards: Shard[], actual: number): SplitfitError {
  const what =
    shards.length === 0
      ? 'lists no weight shard and so holds'
      : shards.length === 1
        ? `weight shard ${shards[0]!.path} holds`
        : `weight shards ${shards.map((s) => s.path).join(', ')} hold together`;
  return new SplitfitError(
    'SPLITFIT_MODEL_LOAD',
    `model ${jsonPath}: ${what} ${actual} bytes, but weightsManifest[${index}] declares ${group.bytes} bytes for its ${group.weights.length} weights (by dtype and shape); ` +
      'the shard is truncated or belongs to another model — re-export or re-copy the model folder',
  );
}

class NotRegularFileError extends Error {}

/** fstat after a non-blocking open: a FIFO or device is refused without blocking on it. */
async function statRegularFile(path: string): Promise<{ size: number }> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new NotRegularFileError(st.isDirectory() ? 'a folder, not a file' : 'not a regular file (a FIFO, device or socket)');
    return { size: st.size };
  } finally {
    await handle.close();
  }
}

/** Reads a regular file of at most `limit` bytes (refused before reading when larger). */
async function readRegularFile(path: string, limit: number): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new NotRegularFileError(st.isDirectory() ? 'a folder, not a file' : 'not a regular file (a FIFO, device or socket)');
    if (st.size > limit) throw new NotRegularFileError(`${st.size} bytes, more than the ${limit} expected`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function describeReadError(err: unknown): string {
  if (err instanceof NotRegularFileError) return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'file not found' : message(err);
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

export interface ModelFilesOptions {
  /** Quantize the float32 weights (see `model/quantize.ts`); stock `tf.loadLayersModel` dequantizes them. @default none (float32) */
  quantize?: Quantize;
  /** Merged over the model's own `userDefinedMetadata` (e.g. `{splitfit: ModelMetadata}`). */
  userDefinedMetadata?: Record<string, object>;
}

/** Serialises a LayersModel to the stock layers-model format, in memory. */
export async function modelFiles(model: tf.LayersModel, options: ModelFilesOptions = {}): Promise<ModelFiles> {
  let files: ModelFiles | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const raw = artifacts.weightData === undefined ? new Uint8Array(0) : new Uint8Array(flatWeightData(artifacts.weightData));
      const { specs, data: weights } = options.quantize === undefined ? { specs: artifacts.weightSpecs ?? [], data: raw } : quantizeWeights(artifacts.weightSpecs ?? [], raw, options.quantize);
      const userDefinedMetadata = { ...artifacts.userDefinedMetadata, ...options.userDefinedMetadata };
      const json = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: 'splitfit',
        weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
        ...(Object.keys(userDefinedMetadata).length > 0 ? { userDefinedMetadata } : {}),
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
