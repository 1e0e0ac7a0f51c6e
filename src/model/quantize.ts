import type * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';

/**
 * Post-training weight quantization in the stock tfjs weights-manifest format: each float32 weight
 * gets a `quantization` field — `{dtype: 'uint8', scale, min}` (per tensor, affine, as
 * tensorflowjs_converter writes it) or `{dtype: 'float16'}` — and stock `tf.loadLayersModel`
 * dequantizes it to float32 on load (tfjs-core 4.22 `io/io_utils.js` `decodeWeight`). int32 and
 * bool weights are written as they are: tfjs would round a dequantized int32, and a bool has no range.
 */
export const QUANTIZE_CHOICES = ['uint8', 'float16'] as const;
export type Quantize = (typeof QUANTIZE_CHOICES)[number];

/** Largest finite float16 value. */
export const FLOAT16_MAX = 65504;

export interface QuantizedWeights {
  specs: tf.io.WeightsManifestEntry[];
  data: Uint8Array;
}

/**
 * Re-encodes weights (`specs` + their concatenated bytes, as `model.save` hands them over) with
 * `mode`. With `uint8`, per-channel vectors (biases, BN parameters, affine scales: at most one
 * dimension above 1) are stored as float16: one per-tensor uint8 grid would move every channel's
 * offset by up to half a step, which costs a MobileNetV2 head 30 points of accuracy, for under 2 % of
 * the bytes. Kernels get uint8. A non-finite float32 value, or (float16) one beyond ±65504, is refused with
 * `SPLITFIT_NUMERIC` naming the weight: it would load as a different number.
 */
export function quantizeWeights(specs: readonly tf.io.WeightsManifestEntry[], data: Uint8Array, mode: Quantize): QuantizedWeights {
  if (!(QUANTIZE_CHOICES as readonly string[]).includes(mode)) throw new TypeError(`quantizeWeights: mode must be one of ${QUANTIZE_CHOICES.join(', ')}, received ${String(mode)}`);
  const parts: Uint8Array[] = [];
  const out: tf.io.WeightsManifestEntry[] = [];
  let offset = 0;
  for (const spec of specs) {
    if (spec.quantization !== undefined) throw new TypeError(`quantizeWeights: weight ${spec.name} is already quantized`);
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const width = BYTES[spec.dtype];
    if (width === undefined) throw new TypeError(`quantizeWeights: weight ${spec.name} has dtype ${spec.dtype}, which has no fixed size`);
    const bytes = data.subarray(offset, offset + n * width);
    if (bytes.byteLength !== n * width) throw new TypeError(`quantizeWeights: the weight data ends inside weight ${spec.name}`);
    offset += n * width;
    if (spec.dtype !== 'float32') {
      out.push({ ...spec });
      parts.push(bytes);
      continue;
    }
    // A copy: the float32 view needs 4-byte alignment, which a weight after a bool one lacks.
    const values = new Float32Array(bytes.slice().buffer);
    checkFinite(spec.name, values, mode);
    const target = mode === 'float16' ? 'float16' : !isPerChannel(spec.shape) ? 'uint8' : values.every((v) => Math.abs(v) <= FLOAT16_MAX) ? 'float16' : 'float32';
    if (target === 'float16') {
      out.push({ ...spec, quantization: { dtype: 'float16' } });
      parts.push(new Uint8Array(toFloat16(values).buffer));
    } else if (target === 'uint8') {
      const q = toUint8(values);
      out.push({ ...spec, quantization: { dtype: 'uint8', scale: q.scale, min: q.min } });
      parts.push(q.data);
    } else {
      out.push({ ...spec });
      parts.push(bytes);
    }
  }
  if (offset !== data.byteLength) throw new TypeError(`quantizeWeights: ${data.byteLength - offset} bytes of weight data follow the last weight`);
  return { specs: out, data: concat(parts) };
}

/** At most one dimension above 1: one value per channel (a bias, a BN parameter, a 1×1 depthwise scale). */
export function isPerChannel(shape: readonly number[]): boolean {
  return shape.filter((d) => d !== 1).length <= 1;
}

const BYTES: Partial<Record<string, number>> = { float32: 4, int32: 4, bool: 1 };

function checkFinite(name: string, values: Float32Array, mode: Quantize): void {
  const limit = mode === 'float16' ? FLOAT16_MAX : Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isFinite(v) && Math.abs(v) <= limit) continue;
    const what = Number.isFinite(v) ? `${v}, beyond float16's range ±${FLOAT16_MAX}` : String(v);
    throw new SplitfitError(
      'SPLITFIT_NUMERIC',
      `weight ${name} holds ${what} at index ${i}; it cannot be quantized to ${mode} without changing the model — ${Number.isFinite(v) ? 'use `quantize: uint8` or none' : 'the model is broken: retrain it'}`,
    );
  }
}

/**
 * Affine uint8 as tensorflowjs_converter does it (`quantization.py`): the range is widened to
 * include 0 and nudged so that 0 is exactly representable (zero padding, zero biases and pruned
 * weights stay exact); each value then loads as `q · scale + min`, within `scale / 2` of the original.
 */
export function toUint8(values: Float32Array): { data: Uint8Array; scale: number; min: number } {
  let lo = 0;
  let hi = 0;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi === lo) return { data: new Uint8Array(values.length), scale: 1, min: 0 };
  const scale = (hi - lo) / 255;
  const zeroPoint = Math.round(-lo / scale);
  const min = -zeroPoint * scale;
  const data = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = Math.min(255, Math.max(0, Math.round((values[i]! - min) / scale)));
  return { data, scale, min };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a float32 value, rounded to nearest, ties to even (subnormals kept, overflow → ±Infinity, NaN stays NaN). */
export function float16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A subnormal half m · 2^-24: m is the mantissa with its implicit bit, shifted right by 14 − e and rounded.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa moves into the exponent, which is the correctly rounded result (up to Infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

export function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]!);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}
