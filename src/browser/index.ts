/**
 * splitfit in the browser: load a stitched model folder and answer for images exactly as
 * `splitfit predict` does in Node (classification, multi-label or regression, by the model's task). Built by `npm run build` into `dist/browser/splitfit.js`, one
 * ES module with tfjs bundled; the wasm backend's binaries sit beside it and are found relative to
 * the module, so nothing is fetched from elsewhere.
 *
 * The browser decodes the image (a canvas gives its straight-alpha RGBA pixels at the image's own
 * size, EXIF orientation applied, colour in sRGB); from there the arithmetic is splitfit's own
 * shared code — alpha on white, the resize, the preset — the same functions Node runs after sharp
 * decodes. `tf.browser.fromPixels` is not used: it drops alpha (transparent → black) and leaves the
 * resize to the caller.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { type DecodedPixels, PIXEL_PIPELINE, toInputPixels } from '../data/pixels.js';
import { preprocess } from '../data/preprocess.js';
import { SplitfitError } from '../errors.js';
import { type TaskResult, taskResult } from '../infer/result.js';
import { type ModelMetadata, readModelMetadata } from '../model/metadata.js';

export type { ClassificationResult, MultiLabelResult, RegressionResult, TaskResult } from '../infer/result.js';
export type { ModelMetadata } from '../model/metadata.js';
export { SplitfitError } from '../errors.js';
/** The bundled tfjs, so a page that needs tf does not load a second copy. */
export { tf };

/** What `classify` accepts: anything a 2D canvas can draw, or pixels already read. */
export type ImageInput = HTMLImageElement | ImageBitmap | ImageData | HTMLCanvasElement | OffscreenCanvas;

export const BROWSER_BACKENDS = ['wasm', 'cpu', 'webgl'] as const;
export type BrowserBackend = (typeof BROWSER_BACKENDS)[number];

export interface LoadOptions {
  /** The tfjs backend; wasm is the fastest on CPUs (measured numbers in the README). @default 'wasm' */
  backend?: BrowserBackend;
}

export interface Classifier {
  /** Output names in output order: class names (classify), label names (multilabel), target names (regress). */
  labels: string[];
  metadata: ModelMetadata;
  model: tf.LayersModel;
  /**
   * The model's answer for one image, by its task (`metadata.task`): `{ label, probability,
   * probabilities }` for a classifier, `{ labels, probabilities }` for multi-label (thresholds from
   * the metadata), `{ value, values }` for regression (in the targets' own units).
   */
  classify(input: ImageInput): Promise<TaskResult>;
  /** The pixels `classify` feeds the model (uint8 HWC at the input size), for checking parity. */
  inputPixels(input: ImageInput): Uint8Array;
  dispose(): void;
}

/**
 * Loads a model folder written by splitfit (`train-head` or `export`): `modelUrl` is its model.json.
 * Labels, input size and preprocessing come from model.json's `userDefinedMetadata`.
 */
export async function loadClassifier(modelUrl: string, options: LoadOptions = {}): Promise<Classifier> {
  await useBackend(options.backend ?? 'wasm');
  const model = await tf.loadLayersModel(modelUrl);
  const metadata = readModelMetadata(model.getUserDefinedMetadata(), modelUrl);
  if (metadata === undefined) {
    model.dispose();
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${modelUrl} carries no splitfit metadata (labels, input size, preprocessing); re-export it with \`splitfit export\``);
  }
  if (metadata.preprocessing.pixels !== PIXEL_PIPELINE) {
    model.dispose();
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `${modelUrl} was trained with pixel pipeline ${metadata.preprocessing.pixels}, this module implements ${PIXEL_PIPELINE}; use the splitfit version that trained it, or retrain`,
    );
  }
  const { height, width, channels } = metadata.input;
  const inputPixels = (input: ImageInput): Uint8Array => toInputPixels(decodedPixels(input), { height, width, channels });
  return {
    labels: metadata.labels,
    metadata,
    model,
    inputPixels,
    async classify(input) {
      const x = preprocess(inputPixels(input), channels, metadata.preprocessing.preset);
      const probs = tf.tidy(() => model.predict(tf.tensor4d(x, [1, height, width, channels])) as tf.Tensor);
      try {
        return taskResult(await probs.data(), { task: metadata.task, labels: metadata.labels, thresholds: metadata.task === 'multilabel' ? metadata.thresholds : undefined });
      } finally {
        probs.dispose();
      }
    },
    dispose: () => model.dispose(),
  };
}

async function useBackend(backend: BrowserBackend): Promise<void> {
  if (!(BROWSER_BACKENDS as readonly string[]).includes(backend)) {
    throw new SplitfitError('SPLITFIT_USAGE', `unknown backend ${JSON.stringify(backend)}; valid choices: ${BROWSER_BACKENDS.join(', ')}`, { option: 'backend' });
  }
  // The wasm binaries are shipped beside this module (dist/browser/).
  if (backend === 'wasm') setWasmPaths(new URL('./', import.meta.url).href);
  if (tf.getBackend() === backend) return;
  if (!(await tf.setBackend(backend))) throw new SplitfitError('SPLITFIT_BACKEND_UNAVAILABLE', `the ${backend} backend cannot start in this browser; try backend: 'cpu'`);
  await tf.ready();
}

/** The image's own pixels as straight-alpha RGBA, read through a 2D canvas of the image's size. */
function decodedPixels(input: ImageInput): DecodedPixels {
  if (isImageData(input)) return { data: input.data, width: input.width, height: input.height, channels: 4 };
  const [width, height] = naturalSize(input);
  if (width === 0 || height === 0) {
    throw new SplitfitError('SPLITFIT_DATA_DECODE', 'the image has no pixels (0 × 0): wait for it to load (`await img.decode()`) before classifying it');
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
  if (ctx === null) throw new SplitfitError('SPLITFIT_BACKEND_UNAVAILABLE', 'this browser gives no 2D canvas context; splitfit reads pixels through one');
  ctx.drawImage(input, 0, 0);
  const data = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data;
  return { data, width, height, channels: 4 };
}

function isImageData(input: ImageInput): input is ImageData {
  return typeof ImageData !== 'undefined' && input instanceof ImageData;
}

function naturalSize(input: Exclude<ImageInput, ImageData>): [number, number] {
  if (typeof HTMLImageElement !== 'undefined' && input instanceof HTMLImageElement) return [input.naturalWidth, input.naturalHeight];
  return [input.width, input.height];
}
