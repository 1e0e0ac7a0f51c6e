/**
 * The pixel pipeline between a decoded image and the model's input: alpha composited on white, a
 * resize to the input size, gray ↔ RGB. Pure JavaScript with no dependencies, so training (Node,
 * after sharp decodes), `splitfit predict` and the browser module (after the browser decodes) run
 * the same arithmetic and get the same bytes from the same decoded pixels: JavaScript numbers are
 * IEEE doubles everywhere, and nothing here depends on a platform's resampler.
 *
 * The resize is a separable triangle (bilinear) filter with half-pixel centres whose support widens
 * with the downscale factor (antialiased, like PIL's `BILINEAR` and `tf.image.resize(…, antialias=True)`);
 * when upscaling it is exactly bilinear interpolation with half-pixel centres
 * (`tf.image.resizeBilinear(…, false, true)`). Results are rounded to uint8 once, at the end.
 */

/** Decoded pixels, row-major HWC: 1 = gray, 3 = RGB, 4 = RGBA (straight, not premultiplied, alpha). */
export interface DecodedPixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/** Size and channel count of the model's input image. */
export interface PixelTarget {
  height: number;
  width: number;
  /** 3 = RGB (gray inputs are replicated); 1 = gray (colour inputs become ITU-R 601-2 luma). */
  channels: 1 | 3;
}

/** What this pipeline does, for the features fingerprint and model metadata: change it with the arithmetic. */
export const PIXEL_PIPELINE = 'pixels/v2:rgba-over-white,triangle-antialias-halfpixel,round-uint8,luma601';

/** Turns decoded pixels into the model's input pixels (uint8 HWC of exactly `target` size). */
export function toInputPixels(image: DecodedPixels, target: PixelTarget): Uint8Array {
  checkImage(image);
  checkTarget(target);
  let data: Uint8Array | Uint8ClampedArray = image.data;
  let channels: 1 | 3 = image.channels === 1 ? 1 : 3;
  if (image.channels === 4) data = overWhite(data);
  // Reduce colour to gray before resizing (a third of the work); expand gray to RGB after.
  if (channels === 3 && target.channels === 1) {
    data = luma(data);
    channels = 1;
  }
  const resized = resize(data, image.width, image.height, channels, target.width, target.height);
  return channels === 1 && target.channels === 3 ? grayToRgb(resized) : resized;
}

/** RGBA → RGB composited on white: c·a + 255·(1 − a), rounded. */
function overWhite(rgba: Uint8Array | Uint8ClampedArray): Uint8Array {
  const out = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    const a = rgba[i + 3]!;
    if (a === 255) {
      out[j] = rgba[i]!;
      out[j + 1] = rgba[i + 1]!;
      out[j + 2] = rgba[i + 2]!;
    } else {
      const white = 255 * (255 - a);
      out[j] = Math.round((rgba[i]! * a + white) / 255);
      out[j + 1] = Math.round((rgba[i + 1]! * a + white) / 255);
      out[j + 2] = Math.round((rgba[i + 2]! * a + white) / 255);
    }
  }
  return out;
}

/**
 * ITU-R 601-2 luma with PIL's integer rounding (`L = R·299/1000 + G·587/1000 + B·114/1000`), the
 * gray that Keras/PIL and `tf.image.rgb_to_grayscale` use.
 */
function luma(rgb: Uint8Array | Uint8ClampedArray): Uint8Array {
  const out = new Uint8Array(rgb.length / 3);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) {
    out[i] = (rgb[j]! * 19595 + rgb[j + 1]! * 38470 + rgb[j + 2]! * 7471 + 0x8000) >>> 16;
  }
  return out;
}

function grayToRgb(gray: Uint8Array): Uint8Array {
  const out = new Uint8Array(gray.length * 3);
  for (let i = 0, j = 0; i < gray.length; i++, j += 3) out[j] = out[j + 1] = out[j + 2] = gray[i]!;
  return out;
}

/** One axis of the separable filter: for each output index, its first input index and weights. */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  /** `count[i]` weights of output `i` start at `i * width`. */
  weights: Float64Array;
  width: number;
}

function taps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  // The triangle's radius is one input pixel, or one output pixel (in input units) when shrinking.
  const radius = Math.max(scale, 1);
  const width = Math.ceil(radius) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * width);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    // Input pixels whose centre lies strictly inside the triangle: the others weigh exactly 0, and
    // skipping them changes no sum.
    let lo = Math.max(0, Math.floor(centre - radius));
    let hi = Math.min(inSize, Math.ceil(centre + radius));
    const weight = (x: number): number => Math.max(0, 1 - Math.abs((x + 0.5 - centre) / radius));
    while (lo < hi && weight(lo) === 0) lo++;
    while (hi > lo && weight(hi - 1) === 0) hi--;
    let sum = 0;
    let n = 0;
    for (let x = lo; x < hi; x++, n++) {
      const w = weight(x);
      weights[i * width + n] = w;
      sum += w;
    }
    for (let k = 0; k < n; k++) weights[i * width + k]! /= sum;
    first[i] = lo;
    count[i] = n;
  }
  return { first, count, weights, width };
}

/** Resizes HWC pixels with the separable triangle filter; rounds once at the end. */
function resize(src: Uint8Array | Uint8ClampedArray, w: number, h: number, c: number, outW: number, outH: number): Uint8Array {
  // A copy even when no resize is needed: the caller owns the result and may write to it.
  if (w === outW && h === outH) return new Uint8Array(src);
  // Horizontal pass into floats (h × outW), then vertical into bytes (outH × outW). The loops are
  // shaped for speed (one walk of an output pixel's taps for all its channels, whole rows at a
  // time vertically); per value the taps always add in the same order.
  const tx = taps(w, outW);
  const mid = new Float64Array(h * outW * c);
  for (let y = 0; y < h; y++) {
    const row = y * w * c;
    for (let i = 0; i < outW; i++) {
      const base = i * tx.width;
      const n = tx.count[i]!;
      const start = row + tx.first[i]! * c;
      const at = (y * outW + i) * c;
      if (c === 3) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let k = 0, x = start; k < n; k++, x += 3) {
          const wk = tx.weights[base + k]!;
          r += wk * src[x]!;
          g += wk * src[x + 1]!;
          b += wk * src[x + 2]!;
        }
        mid[at] = r;
        mid[at + 1] = g;
        mid[at + 2] = b;
      } else {
        for (let ch = 0; ch < c; ch++) {
          let sum = 0;
          for (let k = 0, x = start + ch; k < n; k++, x += c) sum += tx.weights[base + k]! * src[x]!;
          mid[at + ch] = sum;
        }
      }
    }
  }
  const ty = taps(h, outH);
  const stride = outW * c;
  const out = new Uint8Array(outH * stride);
  // Vertically, a sum starts from its first product (0 + x is x exactly, so this is the same
  // arithmetic as accumulating from 0); one and two taps — every upscale — without a row buffer.
  const acc = new Float64Array(stride);
  for (let j = 0; j < outH; j++) {
    const base = j * ty.width;
    const n = ty.count[j]!;
    const at = j * stride;
    const row0 = ty.first[j]! * stride;
    const w0 = ty.weights[base]!;
    if (n === 1) {
      for (let p = 0; p < stride; p++) out[at + p] = toByte(w0 * mid[row0 + p]!);
    } else if (n === 2) {
      const w1 = ty.weights[base + 1]!;
      const row1 = row0 + stride;
      for (let p = 0; p < stride; p++) out[at + p] = toByte(w0 * mid[row0 + p]! + w1 * mid[row1 + p]!);
    } else {
      for (let p = 0; p < stride; p++) acc[p] = w0 * mid[row0 + p]!;
      for (let k = 1; k < n; k++) {
        const wk = ty.weights[base + k]!;
        const row = row0 + k * stride;
        for (let p = 0; p < stride; p++) acc[p] = acc[p]! + wk * mid[row + p]!;
      }
      for (let p = 0; p < stride; p++) out[at + p] = toByte(acc[p]!);
    }
  }
  return out;
}

/** The one rounding of the pipeline: clamp to [0, 255], then round half up. */
function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

function checkTarget(target: PixelTarget): void {
  const { height, width, channels } = target;
  if (!Number.isSafeInteger(height) || !Number.isSafeInteger(width) || height < 1 || width < 1) {
    throw new TypeError(`target height and width must be positive integers, got ${height}×${width}`);
  }
  if (channels !== 1 && channels !== 3) throw new TypeError(`target channels must be 1 or 3, got ${String(channels)}`);
}

function checkImage(image: DecodedPixels): void {
  const { data, width, height, channels } = image;
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
    throw new TypeError(`image width and height must be positive integers, got ${width}×${height}`);
  }
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new TypeError(`image channels must be 1, 3 or 4, got ${String(channels)}`);
  if (data.length !== width * height * channels) {
    throw new TypeError(`image data holds ${data.length} bytes, expected ${width}×${height}×${channels} = ${width * height * channels}`);
  }
}
