import * as tf from '@tensorflow/tfjs';
import PQueue from 'p-queue';
import { decodeImage } from '../data/decode.js';
import { parsePreprocess, preprocessInto, type PreprocessPreset } from '../data/preprocess.js';
import type { Sample } from '../data/types.js';
import { SplitfitError, throwIfAborted } from '../errors.js';
import { bundledModel, isBundledModel } from '../model/bundled.js';
import { type CompiledBase, compileBase } from '../model/compile/index.js';
import { loadModel } from '../model/io.js';
import { METADATA_KEY, type ModelMetadata, readModelMetadata } from '../model/metadata.js';
import { readOutputFolder } from '../output/folder.js';
import { checkMetadataAgrees } from '../output/metadata.js';
import { MANIFEST_FILE, type TaskRecord } from '../output/manifest.js';

/**
 * A model plus how to feed it: from the `splitfit.json` beside a stitched model, or from the
 * `userDefinedMetadata.splitfit` inside its model.json (so model.json + weights alone are enough), or defaults.
 */
export interface Predictor {
  model: tf.LayersModel;
  labels?: string[];
  /** What the outputs mean (from splitfit.json): absent for classification and for a model without one. */
  task?: TaskRecord;
  preset: PreprocessPreset;
  inputSize: [number, number];
  channels: 1 | 3;
  /** The model.json metadata splitfit wrote (absent for other models): its task, labels and preprocessing. */
  metadata?: ModelMetadata;
}

/**
 * Loads a model and how to feed it. A splitfit output folder is checked first (an interrupted commit is
 * finished, every file matches the commit record) and its labels must match the model's outputs.
 * Labels and preset come from `splitfit.json`, else from model.json's metadata; when both are there
 * they must agree (`SPLITFIT_MODEL_LOAD` otherwise).
 */
export async function loadPredictor(ref: string | tf.LayersModel, overrides: { preprocess?: string } = {}): Promise<Predictor> {
  const folder = typeof ref === 'string' && !isBundledModel(ref) ? await readOutputFolder(ref) : undefined;
  const model = typeof ref === 'string' ? await loadModel(folder?.modelJson ?? ref) : ref;
  const source = folder?.modelJson ?? (typeof ref === 'string' ? ref : 'the model');
  const manifest = folder?.manifest;
  const metadata = readModelMetadata(model.getUserDefinedMetadata(), source);
  if (metadata && manifest) checkMetadataAgrees(metadata, manifest, source);
  const shape = model.inputs[0]!.shape;
  const [h, w, c] = shape.slice(1);
  if (shape.length !== 4 || typeof h !== 'number' || typeof w !== 'number' || (c !== 1 && c !== 3)) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `the model's input is ${JSON.stringify(shape)}; splitfit needs fixed-size images [h, w, 1 or 3]`);
  }
  if (metadata && (metadata.input.height !== h || metadata.input.width !== w || metadata.input.channels !== c)) {
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `${source}: userDefinedMetadata.${METADATA_KEY} says the input is ${metadata.input.height}x${metadata.input.width}x${metadata.input.channels}, the model's input layer is ${h}x${w}x${c}; the file was edited — re-export the model with splitfit`,
    );
  }
  const labels = manifest?.labels ?? metadata?.labels;
  const outputs = model.outputs[0]!.shape.at(-1);
  if (labels && outputs !== labels.length) {
    const from = manifest ? `its ${MANIFEST_FILE}` : `its userDefinedMetadata.${METADATA_KEY}`;
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `${source} has ${String(outputs)} outputs but ${from} names ${labels.length} classes (${labels.join(', ')}); the folder mixes two runs — rerun train-head`,
    );
  }
  const preset = parsePreprocess(overrides.preprocess ?? manifest?.preprocess ?? metadata?.preprocessing.preset ?? (typeof ref === 'string' ? bundledModel(ref)?.preprocess : undefined) ?? 'unit');
  return { model, preset, inputSize: [h, w], channels: c, ...(labels ? { labels } : {}), ...(metadata ? { metadata } : {}), ...(manifest?.task ? { task: manifest.task } : {}) };
}

/** Decodes and preprocesses samples into one [n, h, w, c] batch (decodes run concurrently). */
export async function loadImages(samples: readonly Sample[], p: Predictor, concurrency = 4): Promise<Float32Array> {
  const [h, w] = p.inputSize;
  const per = h * w * p.channels;
  const out = new Float32Array(samples.length * per);
  const queue = new PQueue({ concurrency });
  await Promise.all(
    samples.map((s, i) =>
      queue.add(async () => {
        const pixels = await decodeImage(await s.load(), { height: h, width: w, channels: p.channels }, s.source);
        preprocessInto(pixels, p.channels, p.preset, out, i * per);
      }),
    ),
  );
  return out;
}

/**
 * From this many images on, {@link predictSamples} runs a compiled copy of the model on native
 * TensorFlow (`compileBase`: the whole stitched model as one graph, its outputs equal to `predict`'s
 * within float32 rounding — 9e-8 on a MobileNetV2 model). Compiling costs 0.4–1.3 s for MobileNetV2
 * and saves about 14 ms per 224² image (10.6 against 24.6 ms, measured under load), so fewer images
 * run through `predict`.
 */
export const COMPILE_MIN_SAMPLES = 128;

export interface PredictSamplesOptions {
  /** Run a compiled copy of the model for {@link COMPILE_MIN_SAMPLES} images or more on native TensorFlow. @default true */
  compiled?: boolean;
}

/** Softmax outputs for samples, `batchSize` images at a time, in inference mode; `signal` stops between batches. */
export async function predictSamples(p: Predictor, samples: readonly Sample[], batchSize = 32, signal?: AbortSignal, options: PredictSamplesOptions = {}): Promise<{ probs: Float32Array; k: number }> {
  const chunks: Float32Array[] = [];
  let k = 0;
  const forward = forwardOf(p.model, samples.length, options.compiled ?? true);
  try {
    for (let i = 0; i < samples.length; i += batchSize) {
      throwIfAborted(signal);
      const part = samples.slice(i, i + batchSize);
      const pixels = await loadImages(part, p);
      const probs = tf.tidy(() => {
        const y = forward.run(tf.tensor4d(pixels, [part.length, p.inputSize[0], p.inputSize[1], p.channels]));
        k = y.shape.at(-1)!;
        return y.dataSync() as Float32Array;
      });
      chunks.push(probs);
    }
  } finally {
    forward.dispose();
  }
  const all = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  return { probs: all, k };
}

/** The model's inference-mode forward pass for a job of `n` images: a compiled graph when it pays (see {@link COMPILE_MIN_SAMPLES}), else `predict`. */
function forwardOf(model: tf.LayersModel, n: number, compiled: boolean): { run(x: tf.Tensor4D): tf.Tensor; dispose(): void } {
  const plain = { run: (x: tf.Tensor4D) => model.predict(x) as tf.Tensor, dispose: () => undefined };
  if (!compiled || n < COMPILE_MIN_SAMPLES || tf.getBackend() !== 'tensorflow') return plain;
  let c: CompiledBase;
  try {
    c = compileBase(model);
  } catch {
    // A structure the compiler does not know: `predict` computes the same outputs.
    return plain;
  }
  if (c.mode !== 'graph') {
    // Op by op through tfjs is no faster than `predict`.
    c.dispose();
    return plain;
  }
  return { run: (x) => c.predict(x), dispose: () => c.dispose() };
}
