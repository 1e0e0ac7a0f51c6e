/**
 * Value format of one cached feature entry: a small header, then the raw payload.
 *
 * ```
 * offset  size      field
 * 0       4         magic "SFC1"
 * 4       2         format version (u16)          = CACHE_FORMAT_VERSION
 * 6       1         dtype (u8)                    0 float32, 1 float16
 * 7       1         rank (u8)
 * 8       4*rank    dims (u32 each)
 * 8+4r    4         CRC32 (IEEE) of the payload
 * 12+4r   …         payload, little-endian, prod(dims) elements
 * ```
 * All integers are little-endian. The header length is a multiple of 4, so the payload of
 * a freshly allocated value is aligned for a `Float32Array` view.
 */
import * as zlib from 'node:zlib';
import { SplitfitError } from '../errors.js';
import { shortFingerprint } from './keys.js';

/** Version of the value format (and of the key schema); part of every fingerprint. */
export const CACHE_FORMAT_VERSION = 1;

/** The four magic bytes that open every value: ASCII `SFC1`. */
export const CACHE_MAGIC = 'SFC1';

/** Storage dtype of cached features. Features are always returned as float32. */
export type FeatureDType = 'float32' | 'float16';

/** The storage dtypes, in the order of their header codes. */
export const FEATURE_DTYPES: readonly FeatureDType[] = ['float32', 'float16'];

/** A decoded entry: float32 data, its shape, and the dtype it was stored in. */
export interface DecodedFeatures {
  data: Float32Array;
  shape: number[];
  dtype: FeatureDType;
}

/** Where a value came from, so a corrupt-value error can name it. */
export interface CodecContext {
  fingerprint: string;
  key: string;
}

/** Why a value failed validation. */
export type CorruptReason = 'bad magic' | 'wrong version' | 'bad header' | 'truncated' | 'length mismatch' | 'crc mismatch';

const MAGIC_BYTES = new Uint8Array([0x53, 0x46, 0x43, 0x31]); // "SFC1"
const MAX_RANK = 255;
const MAX_DIM = 0xffff_ffff;
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Header length in bytes for a given rank. */
export function headerByteLength(rank: number): number {
  return 12 + 4 * rank;
}

/** Total value length in bytes for a shape and dtype. */
export function encodedByteLength(shape: readonly number[], dtype: FeatureDType): number {
  return headerByteLength(shape.length) + elementCount(shape) * bytesPerElement(dtype);
}

function bytesPerElement(dtype: FeatureDType): number {
  return dtype === 'float32' ? 4 : 2;
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------
// CRC32 (IEEE 802.3, reflected, polynomial 0xEDB88320): node:zlib's, present from Node 20.15
// (package.json `engines`). The on-disk values are this exact function, so they must not change.

/** CRC32 (IEEE) of `bytes`, continuing from `initial`. */
export function crc32(bytes: Uint8Array, initial = 0): number {
  return zlib.crc32(bytes, initial) >>> 0;
}

// ---------------------------------------------------------------------------------------
// float16 (IEEE 754 binary16) conversion, round-to-nearest-even.

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** binary16 bits of the float32 nearest to `value`, rounding half to even. */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  return halfFromFloatBits(u32Scratch[0]!);
}

/** binary16 bits nearest to the float32 with bit pattern `x`, rounding half to even. */
function halfFromFloatBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;

  if (exp === 0xff) {
    // Inf stays Inf; NaN stays a quiet NaN with the top payload bits.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → ±Inf
  if (e <= 0) {
    // Subnormal half (or zero): value = m · 2^-24 with m = M >> (14 - e), M the 24-bit significand.
    if (e < -10) return sign; // below half the smallest subnormal → ±0
    mant |= 0x800000;
    const shift = 14 - e;
    let m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) === 1)) m++; // a carry into 0x400 is the smallest normal: correct
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry may reach the exponent or Inf: correct
  return sign | h;
}

/** The float value of binary16 `bits`. */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let f16Table: Float32Array | undefined;

function float16Table(): Float32Array {
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = float16BitsToFloat32(i);
  }
  return f16Table;
}

/** Converts float32 values to binary16 bits (round-to-nearest-even). */
export function float32ToFloat16(data: Float32Array, out = new Uint16Array(data.length)): Uint16Array {
  // Read the bit patterns directly (a Float32Array is always 4-byte aligned).
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfFromFloatBits(bits[i]!);
  return out;
}

/** Converts binary16 bits to float32 values (exact). */
export function float16ToFloat32(bits: Uint16Array, out = new Float32Array(bits.length)): Float32Array {
  const table = float16Table();
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

// ---------------------------------------------------------------------------------------
// Encode / decode.

function validateShape(data: Float32Array, shape: readonly number[], dtype: FeatureDType): void {
  if (!(data instanceof Float32Array)) {
    throw new TypeError(`features must be a Float32Array, received ${describe(data)}`);
  }
  if (!Array.isArray(shape) || shape.length > MAX_RANK) {
    throw new TypeError(`shape must be an array of at most ${MAX_RANK} dimensions, received ${describe(shape)}`);
  }
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0 || d > MAX_DIM) {
      throw new TypeError(`shape [${shape.join(', ')}] must hold integers in [0, ${MAX_DIM}], received ${String(d)}`);
    }
  }
  const n = elementCount(shape);
  if (n !== data.length) {
    throw new TypeError(`shape [${shape.join(', ')}] has ${n} elements but the features have ${data.length}`);
  }
  if (!FEATURE_DTYPES.includes(dtype)) {
    throw new TypeError(`dtype must be one of ${FEATURE_DTYPES.join(', ')}, received ${String(dtype)}`);
  }
}

/**
 * Encodes features as one cache value: header (magic, version, dtype, shape, CRC32) then the
 * payload in `dtype`, little-endian. float16 rounds to nearest even (values beyond ±65504
 * become ±Infinity).
 *
 * @throws TypeError when `shape` does not match `data.length` or `dtype` is unknown.
 */
export function encodeFeatures(data: Float32Array, shape: readonly number[], dtype: FeatureDType): Uint8Array {
  validateShape(data, shape, dtype);
  const headerLength = headerByteLength(shape.length);
  const payloadLength = data.length * bytesPerElement(dtype);
  const out = new Uint8Array(headerLength + payloadLength);
  const view = new DataView(out.buffer);

  out.set(MAGIC_BYTES, 0);
  view.setUint16(4, CACHE_FORMAT_VERSION, true);
  view.setUint8(6, FEATURE_DTYPES.indexOf(dtype));
  view.setUint8(7, shape.length);
  shape.forEach((d, i) => view.setUint32(8 + 4 * i, d, true));

  // headerLength is a multiple of 4 and `out` starts at offset 0: typed views are aligned.
  if (dtype === 'float32') {
    if (IS_LITTLE_ENDIAN) new Float32Array(out.buffer, headerLength, data.length).set(data);
    else for (let i = 0; i < data.length; i++) view.setFloat32(headerLength + 4 * i, data[i]!, true);
  } else if (IS_LITTLE_ENDIAN) {
    float32ToFloat16(data, new Uint16Array(out.buffer, headerLength, data.length));
  } else {
    for (let i = 0; i < data.length; i++) view.setUint16(headerLength + 2 * i, float32ToFloat16Bits(data[i]!), true);
  }

  const payload = out.subarray(headerLength);
  view.setUint32(headerLength - 4, crc32(payload), true);
  return out;
}

interface ParsedValue {
  dtype: FeatureDType;
  shape: number[];
  payload: Uint8Array;
}

type ParseResult = { ok: true; value: ParsedValue } | { ok: false; reason: CorruptReason; detail: string };

function fail(reason: CorruptReason, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

function parseValue(bytes: Uint8Array): ParseResult {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`cache value must be a Uint8Array, received ${describe(bytes)}`);
  }
  if (bytes.length < 12) return fail('truncated', `${bytes.length} bytes, shorter than the smallest header (12)`);
  for (let i = 0; i < 4; i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) return fail('bad magic', `expected "${CACHE_MAGIC}"`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint16(4, true);
  if (version !== CACHE_FORMAT_VERSION) {
    return fail('wrong version', `format version ${version}, this splitfit reads version ${CACHE_FORMAT_VERSION}`);
  }
  const dtypeCode = view.getUint8(6);
  const dtype = FEATURE_DTYPES[dtypeCode];
  if (dtype === undefined) return fail('bad header', `unknown dtype code ${dtypeCode}`);
  const rank = view.getUint8(7);
  const headerLength = headerByteLength(rank);
  if (bytes.length < headerLength) {
    return fail('truncated', `${bytes.length} bytes, shorter than the rank-${rank} header (${headerLength})`);
  }
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(8 + 4 * i, true));
  const expected = headerLength + elementCount(shape) * bytesPerElement(dtype);
  if (bytes.length < expected) {
    return fail('truncated', `${bytes.length} bytes, expected ${expected} for ${dtype} [${shape.join(', ')}]`);
  }
  if (bytes.length > expected) {
    return fail('length mismatch', `${bytes.length} bytes, expected ${expected} for ${dtype} [${shape.join(', ')}]`);
  }
  const payload = bytes.subarray(headerLength);
  const stored = view.getUint32(headerLength - 4, true);
  const actual = crc32(payload);
  if (stored !== actual) return fail('crc mismatch', `stored ${hex32(stored)}, computed ${hex32(actual)}`);
  return { ok: true, value: { dtype, shape, payload } };
}

/**
 * Checks a value (magic, version, header, length, CRC) without decoding the payload.
 * @returns `undefined` when the value is sound, else the reason and a detail.
 */
export function checkFeatures(bytes: Uint8Array): { reason: CorruptReason; detail: string } | undefined {
  const parsed = parseValue(bytes);
  return parsed.ok ? undefined : { reason: parsed.reason, detail: parsed.detail };
}

/**
 * Decodes one cache value to float32 features, verifying magic, version, length and CRC.
 *
 * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` naming the entry key, the fingerprint and
 *   what was wrong (`wrong version`, `truncated`, `crc mismatch`, …).
 */
export function decodeFeatures(bytes: Uint8Array, context: CodecContext): DecodedFeatures {
  const parsed = parseValue(bytes);
  if (!parsed.ok) throw corruptError(parsed.reason, parsed.detail, context);
  const { dtype, shape, payload } = parsed.value;
  const n = elementCount(shape);
  let data: Float32Array;
  if (dtype === 'float32') {
    if (IS_LITTLE_ENDIAN) {
      // Copy into a fresh, aligned buffer: LevelDB values may sit at any byte offset.
      data = new Float32Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength));
    } else {
      const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = dv.getFloat32(4 * i, true);
    }
  } else {
    let bits: Uint16Array;
    if (IS_LITTLE_ENDIAN) {
      bits = new Uint16Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength));
    } else {
      const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      bits = new Uint16Array(n);
      for (let i = 0; i < n; i++) bits[i] = dv.getUint16(2 * i, true);
    }
    data = float16ToFloat32(bits);
  }
  return { data, shape, dtype };
}

/**
 * Decodes one cache value straight into `out` (its length must be the entry's element count):
 * the same checks as {@link decodeFeatures} — magic, version, length, CRC — and one copy, so a
 * batch of entries fills one `Float32Array` without a per-entry buffer.
 *
 * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` as {@link decodeFeatures};
 *   `SPLITFIT_CACHE_MISMATCH` when the entry is sound but holds a different number of values.
 */
export function decodeFeaturesInto(bytes: Uint8Array, context: CodecContext, out: Float32Array): number[] {
  const parsed = parseValue(bytes);
  if (!parsed.ok) throw corruptError(parsed.reason, parsed.detail, context);
  const { dtype, shape, payload } = parsed.value;
  const n = elementCount(shape);
  if (n !== out.length) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `feature entry "${context.key}" in cache namespace ${shortFingerprint(context.fingerprint)} holds ${n} values ([${shape.join(', ')}]), expected ${out.length}; ` +
        'the run record and its entries disagree — rerun `splitfit cache-features`.',
    );
  }
  if (!IS_LITTLE_ENDIAN) {
    out.set(decodeFeatures(bytes, context).data);
  } else if (dtype === 'float32') {
    // Byte-wise into the (aligned) target: the LevelDB value may sit at any offset.
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(payload);
  } else {
    const table = float16Table();
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(2 * i, true)]!;
  }
  return shape;
}

function corruptError(reason: CorruptReason, detail: string, context: CodecContext): SplitfitError {
  return new SplitfitError(
    'SPLITFIT_CACHE_CORRUPT',
    `corrupt feature entry "${context.key}" in cache namespace ${shortFingerprint(context.fingerprint)}: ${reason} ` +
      `(${detail}). Run \`splitfit cache verify --repair\` to drop bad entries, then re-run cache-features.`,
  );
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return typeof value;
}
