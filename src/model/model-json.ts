import type * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';
import { describeJson } from './graph.js';

/**
 * The shape checks of a tfjs `model.json` document, before tfjs sees it: tfjs trusts the file and
 * fails deep inside (a TypeError, a RangeError from a huge allocation, or a silently wrong model)
 * on a wrong type, so every field splitfit reads is checked here and named in the error.
 */

export interface WeightGroup {
  paths: string[];
  weights: tf.io.WeightsManifestEntry[];
  /** Bytes the group's shards must hold together: the weights' sizes by dtype (or quantized dtype) and shape. */
  bytes: number;
}

export interface ModelDocument {
  modelTopology: Record<string, unknown>;
  format: unknown;
  groups: WeightGroup[];
}

/** Bytes per value of each weight dtype tfjs can decode from a shard (`string` has no fixed size). */
const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };
const QUANTIZED_BYTES: Record<string, number> = { uint8: 1, uint16: 2, float16: 2 };
/** Elements in one weight: 2^31 - 1 is the longest typed array V8 allows, so anything above cannot load. */
export const MAX_WEIGHT_ELEMENTS = 2 ** 31 - 1;
/** Shards one model may list. */
export const MAX_SHARDS = 10_000;

function docError(where: string, field: string, what: string): SplitfitError {
  return new SplitfitError('SPLITFIT_MODEL_LOAD', `${where}: ${field} ${what}; pass a tfjs LayersModel model.json (re-export it with model.save)`);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks the document's top-level fields and its weights manifest; the topology is checked by `checkTopology`. */
export function parseModelDocument(json: unknown, where: string): ModelDocument {
  if (!isRecord(json)) throw docError(where, 'the document', `is ${describeJson(json)}; expected a JSON object with modelTopology and weightsManifest`);
  const topology = json['modelTopology'];
  if (!isRecord(topology)) {
    const hint = json['format'] === 'graph-model' ? ' (this is a GraphModel; splitfit needs a LayersModel)' : '';
    throw docError(where, 'modelTopology', `is ${describeJson(topology)}; expected a LayersModel topology object${hint}`);
  }
  const cfg = isRecord(topology['model_config']) ? topology['model_config'] : topology;
  if (typeof cfg['class_name'] !== 'string' || typeof cfg['config'] !== 'object' || cfg['config'] === null) {
    const hint = json['format'] === 'graph-model' ? ' (this is a GraphModel; splitfit needs a LayersModel)' : '';
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${where} is not a tfjs LayersModel${hint}: modelTopology has no class_name and config`);
  }
  const manifest = json['weightsManifest'] ?? [];
  if (!Array.isArray(manifest)) throw docError(where, 'weightsManifest', `is ${describeJson(manifest)}; expected an array of {paths, weights} groups`);
  let shards = 0;
  const groups = manifest.map((g, i): WeightGroup => {
    const f = `weightsManifest[${i}]`;
    if (!isRecord(g)) throw docError(where, f, `is ${describeJson(g)}; expected an object {paths, weights}`);
    const paths = g['paths'];
    if (!Array.isArray(paths)) throw docError(where, `${f}.paths`, `is ${describeJson(paths)}; expected an array of shard file names`);
    paths.forEach((p, j) => {
      if (typeof p !== 'string' || p === '') throw docError(where, `${f}.paths[${j}]`, `is ${describeJson(p)}; expected a shard file name`);
    });
    shards += paths.length;
    if (shards > MAX_SHARDS) throw docError(where, 'weightsManifest', `lists more than ${MAX_SHARDS} shards`);
    const weights = g['weights'];
    if (!Array.isArray(weights)) throw docError(where, `${f}.weights`, `is ${describeJson(weights)}; expected an array of {name, shape, dtype}`);
    let bytes = 0;
    weights.forEach((w, j) => (bytes += weightBytes(w, where, `${f}.weights[${j}]`)));
    return { paths: paths as string[], weights: weights as tf.io.WeightsManifestEntry[], bytes };
  });
  return { modelTopology: topology, format: json['format'], groups };
}

/** Bytes one manifest entry occupies in its group's shards. */
function weightBytes(w: unknown, where: string, f: string): number {
  if (!isRecord(w)) throw docError(where, f, `is ${describeJson(w)}; expected {name, shape, dtype}`);
  const name = w['name'];
  if (typeof name !== 'string' || name === '') throw docError(where, `${f}.name`, `is ${describeJson(name)}; expected a weight name`);
  const shape = w['shape'];
  if (!Array.isArray(shape)) throw docError(where, `${f}.shape`, `(weight "${name}") is ${describeJson(shape)}; expected an array of dimensions`);
  let elements = 1;
  shape.forEach((d, k) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw docError(where, `${f}.shape[${k}]`, `(weight "${name}") is ${describeJson(d)}; expected a non-negative integer`);
    }
    elements *= d;
  });
  if (elements > MAX_WEIGHT_ELEMENTS) throw docError(where, `${f}.shape`, `(weight "${name}") [${shape.join(', ')}] has ${elements} elements; at most ${MAX_WEIGHT_ELEMENTS} fit in one tensor`);
  const dtype = w['dtype'];
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw docError(where, `${f}.dtype`, `(weight "${name}") is ${describeJson(dtype)}; expected one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
  }
  const q = w['quantization'];
  if (q === undefined) return elements * DTYPE_BYTES[dtype]!;
  if (!isRecord(q)) throw docError(where, `${f}.quantization`, `(weight "${name}") is ${describeJson(q)}; expected {dtype, scale, min}`);
  const qd = q['dtype'];
  if (typeof qd !== 'string' || !Object.hasOwn(QUANTIZED_BYTES, qd)) {
    throw docError(where, `${f}.quantization.dtype`, `(weight "${name}") is ${describeJson(qd)}; expected one of ${Object.keys(QUANTIZED_BYTES).join(', ')}`);
  }
  if (qd !== 'float16') {
    for (const k of ['scale', 'min'] as const) {
      if (typeof q[k] !== 'number' || !Number.isFinite(q[k])) throw docError(where, `${f}.quantization.${k}`, `(weight "${name}") is ${describeJson(q[k])}; expected a finite number`);
    }
  }
  return elements * QUANTIZED_BYTES[qd]!;
}
