/**
 * Value format of one cached feature entry: a small header, then the payload.
 *
 * ```
 * offset  size      field
 * 0       4         magic "SFC1"
 * 4       2         format version (u16)          = CACHE_FORMAT_VERSION (2; version 1 is still read)
 * 6       1         dtype and encoding (u8)       low 4 bits: 0 float32, 1 float16;
 *                                                 high 4 bits: 0 dense, 1 zero-bitmap (version 2 only)
 * 7       1         rank (u8)
 * 8       4*rank    dims (u32 each)
 * 8+4r    4         CRC32 (IEEE) of the payload
 * 12+4r   …         payload, little-endian
 * ```
 * Dense payload: prod(dims) elements in `dtype`. Zero-bitmap payload: ceil(n/32) u32 words whose
 * bit j of word w says element 32w+j is stored (its bit pattern in `dtype` is not all zero), then
 * the stored elements in order, in `dtype`. The bitmap is chosen per value when it is shorter:
 * features after a ReLU are mostly exact zeros (MobileNetV2 `out_relu` measured ~4.7× smaller),
 * so LevelDB writes, compacts, reads and CRC-checks a fraction of the bytes; every value still
 * round-trips bit-exactly (−0, NaN payloads and subnormals are "not all zero" and stored).
 * All integers are little-endian. The header length is a multiple of 4, so the payload of
 * a freshly allocated value is aligned for a `Float32Array` view.
 */
import * as zlib from 'node:zlib';
import { SplitfitError } from '../errors.js';
import { shortFingerprint } from './keys.js';

/**
 * Version of the value format this splitfit writes (and the cache's `format` record). Version 1
 * values (dense only) are still read: an upgrade keeps every cached feature, and features are the
 * same numbers in either encoding, so fingerprints do not depend on it.
 */
export const CACHE_FORMAT_VERSION = 2;

/** Value format versions this splitfit reads. */
const READABLE_VERSIONS: readonly number[] = [1, 2];

/** How a value's payload stores its elements (see the module comment). */
export type PayloadEncoding = 'dense' | 'zero-bitmap';

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

const ZERO_BITMAP = 0x10;

const MAGIC_BYTES = new Uint8Array([0x53, 0x46, 0x43, 0x31]); // "SFC1"
const MAX_RANK = 255;
const MAX_DIM = 0xffff_ffff;
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Header length in bytes for a given rank. */
export function headerByteLength(rank: number): number {
  return 12 + 4 * rank;
}

/** Total length in bytes of a *dense* value for a shape and dtype (the most a value can take). */
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
 * Encodes features as one cache value: header (magic, version, dtype and encoding, shape, CRC32)
 * then the payload in `dtype`, little-endian — zero-bitmap when that is shorter, else dense.
 * float16 rounds to nearest even (values beyond ±65504 become ±Infinity).
 *
 * @throws TypeError when `shape` does not match `data.length` or `dtype` is unknown.
 */
export function encodeFeatures(data: Float32Array, shape: readonly number[], dtype: FeatureDType): Uint8Array {
  validateShape(data, shape, dtype);
  const elements = elementBits(data, dtype);
  const n = elements.length;
  const bpe = bytesPerElement(dtype);
  const words = bitmapWords(n);
  const packed = IS_LITTLE_ENDIAN ? packNonZero(elements, words) : undefined;
  const sparse = packed !== undefined && 4 * words + packed.stored * bpe < n * bpe;
  const headerLength = headerByteLength(shape.length);
  const out = new Uint8Array(headerLength + (sparse ? 4 * words + packed.stored * bpe : n * bpe));
  const view = new DataView(out.buffer);

  out.set(MAGIC_BYTES, 0);
  view.setUint16(4, CACHE_FORMAT_VERSION, true);
  view.setUint8(6, FEATURE_DTYPES.indexOf(dtype) | (sparse ? ZERO_BITMAP : 0));
  view.setUint8(7, shape.length);
  shape.forEach((d, i) => view.setUint32(8 + 4 * i, d, true));

  // headerLength and the bitmap are multiples of 4 and `out` starts at offset 0: typed views are aligned.
  if (sparse) {
    new Uint32Array(out.buffer, headerLength, words).set(packed.bitmap);
    const values = new Uint8Array(packed.values.buffer, 0, packed.stored * bpe);
    out.set(values, headerLength + 4 * words);
  } else if (IS_LITTLE_ENDIAN) {
    out.set(new Uint8Array(elements.buffer, elements.byteOffset, n * bpe), headerLength);
  } else {
    for (let i = 0; i < n; i++) {
      if (dtype === 'float32') view.setUint32(headerLength + 4 * i, elements[i]!, true);
      else view.setUint16(headerLength + 2 * i, elements[i]!, true);
    }
  }

  const payload = out.subarray(headerLength);
  view.setUint32(headerLength - 4, crc32(payload), true);
  return out;
}

/** Scratch of the packing pass, reused across calls (encoding is synchronous). */
const scratch = { bitmap: new Uint32Array(0), values32: new Uint32Array(0), values16: new Uint16Array(0) };

/**
 * The zero bitmap and the non-zero elements packed in order, in one branch-free pass (feature zeros
 * fall at random, so a branch per element mispredicts): every element is written at the packed end
 * and the end moves on only past a non-zero one. Views of reused scratch, valid until the next call.
 */
function packNonZero(elements: Uint32Array | Uint16Array, words: number): { bitmap: Uint32Array; values: Uint32Array | Uint16Array; stored: number } {
  const n = elements.length;
  if (scratch.bitmap.length < words) scratch.bitmap = new Uint32Array(words);
  const wide = elements instanceof Uint32Array;
  // One slot of slack: the last zero element is written just past the packed values.
  if (wide && scratch.values32.length < n + 1) scratch.values32 = new Uint32Array(n + 1);
  if (!wide && scratch.values16.length < n + 1) scratch.values16 = new Uint16Array(n + 1);
  const values = wide ? scratch.values32 : scratch.values16;
  const bitmap = scratch.bitmap;
  let j = 0;
  for (let w = 0; w < words; w++) {
    const first = w << 5;
    const end = Math.min(n, first + 32);
    let word = 0;
    for (let i = first; i < end; i++) {
      const bits = elements[i]!;
      const nz = bits === 0 ? 0 : 1;
      word |= nz << (i - first);
      values[j] = bits;
      j += nz;
    }
    bitmap[w] = word;
  }
  return { bitmap: bitmap.subarray(0, words), values, stored: j };
}

/** The elements' bit patterns in `dtype`: a view of float32 data, a converted copy for float16. */
function elementBits(data: Float32Array, dtype: FeatureDType): Uint32Array | Uint16Array {
  return dtype === 'float32' ? new Uint32Array(data.buffer, data.byteOffset, data.length) : float32ToFloat16(data);
}

function bitmapWords(n: number): number {
  return Math.ceil(n / 32);
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

interface ParsedValue {
  dtype: FeatureDType;
  encoding: PayloadEncoding;
  shape: number[];
  /** Elements in the value (prod(shape)); with a zero-bitmap, `stored` of them are in the payload. */
  count: number;
  stored: number;
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
  if (!READABLE_VERSIONS.includes(version)) {
    return fail('wrong version', `format version ${version}, this splitfit reads versions ${READABLE_VERSIONS.join(' and ')}`);
  }
  const code = view.getUint8(6);
  const dtype = FEATURE_DTYPES[code & 0x0f];
  const encodingCode = version === 1 ? code : code >>> 4;
  if (dtype === undefined || (version === 1 && code >= FEATURE_DTYPES.length) || encodingCode > 1) return fail('bad header', `unknown dtype code ${code}`);
  const encoding: PayloadEncoding = version === 1 || encodingCode === 0 ? 'dense' : 'zero-bitmap';
  const rank = view.getUint8(7);
  const headerLength = headerByteLength(rank);
  if (bytes.length < headerLength) {
    return fail('truncated', `${bytes.length} bytes, shorter than the rank-${rank} header (${headerLength})`);
  }
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(8 + 4 * i, true));
  const count = elementCount(shape);
  let stored = count;
  let expected = headerLength + count * bytesPerElement(dtype);
  if (encoding === 'zero-bitmap') {
    const words = bitmapWords(count);
    if (bytes.length < headerLength + 4 * words) {
      return fail('truncated', `${bytes.length} bytes, shorter than the header and zero bitmap (${headerLength + 4 * words}) of ${dtype} [${shape.join(', ')}]`);
    }
    stored = 0;
    for (let w = 0; w < words; w++) stored += popcount32(view.getUint32(headerLength + 4 * w, true));
    const tail = count % 32;
    if (tail !== 0 && view.getUint32(headerLength + 4 * (words - 1), true) >>> tail !== 0) {
      return fail('bad header', `the zero bitmap marks elements beyond the ${count} of [${shape.join(', ')}]`);
    }
    expected = headerLength + 4 * words + stored * bytesPerElement(dtype);
  }
  const what = `${dtype} [${shape.join(', ')}]${encoding === 'dense' ? '' : `, ${stored} stored`}`;
  if (bytes.length < expected) return fail('truncated', `${bytes.length} bytes, expected ${expected} for ${what}`);
  if (bytes.length > expected) return fail('length mismatch', `${bytes.length} bytes, expected ${expected} for ${what}`);
  const payload = bytes.subarray(headerLength);
  const crc = view.getUint32(headerLength - 4, true);
  const actual = crc32(payload);
  if (crc !== actual) return fail('crc mismatch', `stored ${hex32(crc)}, computed ${hex32(actual)}`);
  return { ok: true, value: { dtype, encoding, shape, count, stored, payload } };
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
  const value = parsed.value;
  const data = new Float32Array(value.count);
  writeElements(value, data);
  return { data, shape: value.shape, dtype: value.dtype };
}

/**
 * Decodes one cache value straight into `out` (its length must be the entry's element count):
 * the same checks as {@link decodeFeatures} — magic, version, length, CRC — and one pass, so a
 * batch of entries fills one `Float32Array` without a per-entry buffer.
 *
 * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` as {@link decodeFeatures};
 *   `SPLITFIT_CACHE_MISMATCH` when the entry is sound but holds a different number of values.
 */
export function decodeFeaturesInto(bytes: Uint8Array, context: CodecContext, out: Float32Array): number[] {
  const parsed = parseValue(bytes);
  if (!parsed.ok) throw corruptError(parsed.reason, parsed.detail, context);
  const value = parsed.value;
  if (value.count !== out.length) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `feature entry "${context.key}" in cache namespace ${shortFingerprint(context.fingerprint)} holds ${value.count} values ([${value.shape.join(', ')}]), expected ${out.length}; ` +
        'the run record and its entries disagree — rerun `splitfit cache-features`.',
    );
  }
  writeElements(value, out);
  return value.shape;
}

/** Writes a checked value's elements as float32 into `out` (of `value.count` elements). */
function writeElements(value: ParsedValue, out: Float32Array): void {
  const { dtype, payload, count } = value;
  if (value.encoding === 'dense') {
    if (dtype === 'float32' && IS_LITTLE_ENDIAN) {
      // Byte-wise into the (aligned) target: the LevelDB value may sit at any offset.
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(payload);
      return;
    }
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    if (dtype === 'float32') {
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
    } else {
      const table = float16Table();
      for (let i = 0; i < count; i++) out[i] = table[dv.getUint16(2 * i, true)]!;
    }
    return;
  }
  // Zero-bitmap (written on little-endian hosts only, but read anywhere): zeros, then each stored
  // element at the index of the next set bit.
  out.fill(0);
  const words = bitmapWords(count);
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const valuesAt = 4 * words;
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const table = dtype === 'float16' ? float16Table() : undefined;
  let j = 0;
  for (let w = 0; w < words; w++) {
    let m = dv.getUint32(4 * w, true);
    while (m !== 0) {
      const low = m & -m;
      const i = (w << 5) | (31 - Math.clz32(low));
      if (table === undefined) outBits[i] = dv.getUint32(valuesAt + 4 * j, true);
      else out[i] = table[dv.getUint16(valuesAt + 2 * j, true)]!;
      j++;
      m ^= low;
    }
  }
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
