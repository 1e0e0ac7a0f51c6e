import type * as tf from '@tensorflow/tfjs';
import { resolve } from 'node:path';
import type { FeatureDType } from '../cache/codec.js';
import { describeDecode } from '../data/decode.js';
import { describePreprocess, parsePreprocess, type PreprocessPreset } from '../data/preprocess.js';
import { SplitfitError } from '../errors.js';
import { bundledModel, isBundledModel } from '../model/bundled.js';
import { suggestBatchSize } from '../model/batch-size.js';
import { type CompiledBase, compileBase } from '../model/compile/index.js';
import { fingerprint } from '../model/fingerprint.js';
import { loadModel } from '../model/io.js';
import { type Base, splitBase } from '../model/split.js';

export interface PrepareOptions {
  /** A `model.json` path or a bundled model name, or a model already in memory. */
  model: string | tf.LayersModel;
  /** Freeze boundary: a layer name or index that is a graph cut. @default the bundled model's suggestion */
  boundary?: string | number;
  /** [height, width] images are resized to. @default the model's input size */
  inputSize?: [number, number];
  /** Preprocessing preset. @default the bundled model's preset, else 'unit' */
  preprocess?: string;
  /** How features are stored. @default 'float32' */
  dtype?: FeatureDType;
  /**
   * Run the base inference-compiled (BN folded into convs, fused ops; one native TensorFlow graph
   * on tfjs-node, see `compileBase`) instead of `base.predict`. Same features within float32
   * rounding (≤ 1e-4), same fingerprint. @default true
   */
  compiled?: boolean;
}

export interface PreparedBase extends Base {
  source: tf.LayersModel;
  /** Model reference recorded in the cache: absolute path or bundled name; `<memory>` for in-memory models. */
  modelRef: string;
  fingerprint: string;
  inputSize: [number, number];
  channels: 1 | 3;
  preset: PreprocessPreset;
  dtype: FeatureDType;
  /**
   * Inference-mode forward pass of a batch through the base: the compiled base (built on first
   * call) when `compiled` is on, else — or when compiling fails — `base.predict`.
   */
  run(x: tf.Tensor4D): tf.Tensor;
  /** Extraction batch size when none is given: the base's largest activations stay cache-sized (see `suggestBatchSize`). */
  batchSize: number;
  /** Where the preprocessing preset came from: given, the bundled model's, or the default `unit`. */
  presetSource: 'given' | 'bundled' | 'default';
  /** How the base ran (after the first batch; `undefined` before). */
  runInfo(): BaseRunInfo | undefined;
}

/** How the frozen base computed its features: what the CLI and `ExtractResult` report. */
export interface BaseRunInfo {
  /** `graph`: one native TensorFlow graph per batch; `ops`: the compiled plan op by op; `predict`: plain `base.predict`. */
  mode: 'graph' | 'ops' | 'predict';
  /** BatchNormalization layers folded into the preceding conv/dense. */
  batchNormFolded: number;
  /** Layers the plan could not compile, run as layers. */
  fallbacks: string[];
  /** Why the compiled graph or the compiled plan was not used, when it was asked for. */
  reason?: string;
}

/** Loads the model, cuts it at the boundary and fingerprints the base with everything that shapes its features. */
export async function prepareBase(options: PrepareOptions): Promise<PreparedBase> {
  const ref = typeof options.model === 'string' ? options.model : undefined;
  const bundled = ref !== undefined ? bundledModel(ref) : undefined;
  const source = typeof options.model === 'string' ? await loadModel(options.model) : options.model;
  const boundary = options.boundary ?? bundled?.boundary;
  if (boundary === undefined) throw new SplitfitError('SPLITFIT_USAGE', 'missing --boundary <layer>; `splitfit inspect <model>` lists the valid cuts');
  const b = splitBase(source, boundary);
  const [h, w, c] = b.inputShape;
  if (b.inputShape.length !== 3 || (c !== 1 && c !== 3)) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `the model's input is [${b.inputShape.join(', ')}]; splitfit needs images [height, width, 1 or 3]`);
  }
  const inputSize = options.inputSize ?? [h!, w!];
  if (inputSize[0] !== h || inputSize[1] !== w) {
    throw new SplitfitError('SPLITFIT_USAGE', `--input-size ${inputSize.join('x')} does not match the model's fixed input ${h}x${w}`);
  }
  const preset = parsePreprocess(options.preprocess ?? bundled?.preprocess ?? 'unit');
  const dtype = options.dtype ?? 'float32';
  const channels = c;
  return {
    ...b,
    ...runner(b.base, options.compiled ?? true),
    presetSource: options.preprocess !== undefined ? 'given' : bundled?.preprocess !== undefined ? 'bundled' : 'default',
    batchSize: suggestBatchSize(b.base),
    source,
    modelRef: ref === undefined ? '<memory>' : isBundledModel(ref) ? ref : resolve(ref),
    fingerprint: fingerprint(b.base, { boundary: b.boundary, inputSize, channels, preprocess: `${describeDecode()}|${describePreprocess(preset)}`, dtype }),
    inputSize,
    channels,
    preset,
    dtype,
  };
}

/** `base.predict`, or the compiled base, compiled lazily so callers that never extract pay nothing. */
function runner(base: tf.LayersModel, compiled: boolean): Pick<PreparedBase, 'run' | 'runInfo'> {
  if (!compiled) return { run: (x) => base.predict(x) as tf.Tensor, runInfo: () => ({ mode: 'predict', batchNormFolded: 0, fallbacks: [], reason: 'compiled: false' }) };
  let c: CompiledBase | null | undefined;
  let info: BaseRunInfo | undefined;
  return {
    run: (x) => {
      if (c === undefined) {
        try {
          c = compileBase(base);
          info = {
            mode: c.mode,
            batchNormFolded: c.folded.batchNorm,
            fallbacks: c.fallbacks.map((f) => `${f.layer} (${f.className})`),
            ...(c.graphError ? { reason: c.graphError } : {}),
          };
        } catch (err) {
          // An unexpected model structure: the plain path still gives the right features — and says so.
          c = null;
          info = { mode: 'predict', batchNormFolded: 0, fallbacks: [], reason: `the base could not be compiled: ${err instanceof Error ? err.message : String(err)}` };
        }
      }
      return c === null ? (base.predict(x) as tf.Tensor) : c.predict(x);
    },
    runInfo: () => info,
  };
}

/** One line: how the base ran, e.g. `compiled graph, 52 BN folded, 0 fallbacks`. */
export function describeRun(info: BaseRunInfo | undefined): string {
  if (!info) return 'base not run (everything was cached)';
  const what = info.mode === 'graph' ? 'compiled graph' : info.mode === 'ops' ? 'compiled ops' : 'plain predict';
  const fallbacks = info.fallbacks.length === 0 ? '0 fallbacks' : `${info.fallbacks.length} fallbacks: ${info.fallbacks.join(', ')}`;
  return `${what}, ${info.batchNormFolded} BN folded, ${fallbacks}${info.reason ? ` (${info.reason})` : ''}`;
}
