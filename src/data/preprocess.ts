import { closestMatches, SplitfitError } from '../errors.js';

/**
 * Pixel scaling presets, named for what the base model was trained with:
 * - `unit`: x / 255 → [0, 1] (nsfwjs MobileNetV2, many tfjs models);
 * - `symmetric`: x / 127.5 − 1 → [−1, 1] (Keras `mobilenet_v2.preprocess_input`, "tf" mode);
 * - `caffe`: RGB → BGR, then minus the ImageNet channel means, no scaling (Keras ResNet50/VGG, "caffe" mode);
 * - `torch`: x / 255, minus the ImageNet mean, divided by its std, per RGB channel (torchvision,
 *   Keras DenseNet/"torch" mode).
 */
export const PREPROCESS_PRESETS = ['unit', 'symmetric', 'caffe', 'torch'] as const;
export type PreprocessPreset = (typeof PREPROCESS_PRESETS)[number];

/** Other spellings accepted by {@link parsePreprocess} (compared without spaces, case-insensitive). */
const ALIASES: Record<string, PreprocessPreset> = {
  '[0,1]': 'unit',
  '0,1': 'unit',
  '[-1,1]': 'symmetric',
  '-1,1': 'symmetric',
  // Keras `imagenet_utils.preprocess_input` calls the [-1, 1] mode "tf".
  tf: 'symmetric',
};

/** ImageNet means in BGR order, as Keras' `imagenet_utils.preprocess_input(mode='caffe')`. */
const CAFFE_BGR_MEANS = [103.939, 116.779, 123.68] as const;

/** ImageNet RGB mean and std of [0, 1] pixels, as torchvision and Keras' `mode='torch'`. */
const TORCH_MEAN = [0.485, 0.456, 0.406] as const;
const TORCH_STD = [0.229, 0.224, 0.225] as const;

/** Normalises a preset name (`Unit`, `[0, 1]`, `[-1,1]` …); unknown names throw `SPLITFIT_USAGE` listing the choices. */
export function parsePreprocess(name: string): PreprocessPreset {
  const key = String(name).replace(/\s+/g, '').toLowerCase();
  if ((PREPROCESS_PRESETS as readonly string[]).includes(key)) return key as PreprocessPreset;
  const alias = ALIASES[key];
  if (alias) return alias;
  const near = closestMatches(String(name), PREPROCESS_PRESETS);
  throw new SplitfitError(
    'SPLITFIT_USAGE',
    `unknown preprocessing ${JSON.stringify(name)}${near.length > 0 ? ` (did you mean ${near.join(', ')}?)` : ''}; ` +
      `valid choices: ${PREPROCESS_PRESETS.join(', ')} (aliases: [0,1] = unit, [-1,1] and tf = symmetric)`,
  );
}

/**
 * Scales HWC uint8 pixels to float32 for the base. `caffe` needs 3 channels (it reorders RGB → BGR).
 * @param channels Channels per pixel in `pixels` (1 or 3).
 */
export function preprocess(pixels: Uint8Array, channels: 1 | 3, preset: PreprocessPreset): Float32Array {
  const out = new Float32Array(pixels.length);
  preprocessInto(pixels, channels, preset, out, 0);
  return out;
}

/**
 * {@link preprocess} written into `out` from element `offset` on: a batch buffer, with no array
 * per image and no copy. (Plain arithmetic: a lookup table per channel measured slower.)
 */
export function preprocessInto(pixels: Uint8Array, channels: 1 | 3, preset: PreprocessPreset, out: Float32Array, offset: number): void {
  if (channels !== 1 && channels !== 3) throw new TypeError(`channels must be 1 or 3, got ${String(channels)}`);
  if (pixels.length % channels !== 0) {
    throw new TypeError(`pixel buffer length ${pixels.length} is not a multiple of ${channels} channels`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + pixels.length > out.length) {
    throw new TypeError(`preprocessInto: ${pixels.length} values from offset ${offset} do not fit an output of ${out.length}`);
  }
  const n = pixels.length;
  switch (preset) {
    case 'unit':
      for (let i = 0; i < n; i++) out[offset + i] = pixels[i]! / 255;
      return;
    case 'symmetric':
      for (let i = 0; i < n; i++) out[offset + i] = pixels[i]! / 127.5 - 1;
      return;
    case 'caffe': {
      if (channels !== 3) {
        throw new SplitfitError('SPLITFIT_USAGE', 'preprocessing "caffe" needs 3-channel (RGB) input; use unit or symmetric for grayscale');
      }
      const [b, g, r] = CAFFE_BGR_MEANS;
      for (let i = 0; i < n; i += 3) {
        out[offset + i] = pixels[i + 2]! - b;
        out[offset + i + 1] = pixels[i + 1]! - g;
        out[offset + i + 2] = pixels[i]! - r;
      }
      return;
    }
    case 'torch': {
      if (channels !== 3) {
        throw new SplitfitError('SPLITFIT_USAGE', 'preprocessing "torch" needs 3-channel (RGB) input (per-channel ImageNet mean/std); use unit or symmetric for grayscale');
      }
      for (let i = 0; i < n; i++) {
        const c = i % 3;
        out[offset + i] = (pixels[i]! / 255 - TORCH_MEAN[c]!) / TORCH_STD[c]!;
      }
      return;
    }
    default:
      throw new TypeError(`unknown preprocessing preset ${JSON.stringify(preset)}; call parsePreprocess first`);
  }
}

/** A stable description of the preset's arithmetic, for the features fingerprint. */
export function describePreprocess(preset: PreprocessPreset): string {
  switch (preset) {
    case 'unit':
      return 'preprocess/v1:unit:x/255';
    case 'symmetric':
      return 'preprocess/v1:symmetric:x/127.5-1';
    case 'caffe':
      return `preprocess/v1:caffe:rgb-to-bgr,minus[${CAFFE_BGR_MEANS.join(',')}]`;
    case 'torch':
      return `preprocess/v1:torch:(x/255-[${TORCH_MEAN.join(',')}])/[${TORCH_STD.join(',')}]`;
    default:
      throw new TypeError(`unknown preprocessing preset ${JSON.stringify(preset)}; call parsePreprocess first`);
  }
}
