import { describe, expect, it } from 'vitest';
import { CACHE_FORMAT_VERSION, isSplitfitError, SplitfitError } from '../src/index.js';
import {
  checkFeatures,
  crc32,
  decodeFeatures,
  decodeFeaturesInto,
  encodedByteLength,
  encodeFeatures,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  headerByteLength,
} from '../src/cache/codec.js';
import {
  augKey,
  featureKey,
  featureRange,
  featuresSublevelName,
  MAX_INDEX,
  NO_AUG,
  parseFeatureKey,
  parseFeaturesSublevelName,
  shortFingerprint,
} from '../src/cache/keys.js';
import { rng } from '../src/random.js';

const context = { fingerprint: 'f'.repeat(64), key: '-!000000!sample-1!000000' };

function randomFeatures(n: number, seed: number, scale = 10): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

function corruptError(fn: () => unknown): SplitfitError {
  try {
    fn();
  } catch (err) {
    if (isSplitfitError(err, 'SPLITFIT_CACHE_CORRUPT')) return err;
    throw err;
  }
  throw new Error('expected SPLITFIT_CACHE_CORRUPT, nothing was thrown');
}

/**
 * An independent table-driven CRC32 (IEEE): the JS implementation the cache used before it
 * required Node 20.15. Cache values written then carry these CRCs, so zlib's must equal it.
 */
function crc32Reference(bytes: Uint8Array, initial = 0): number {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  let c = (initial ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

describe('crc32', () => {
  it('matches the IEEE check value and the JS reference the cache used before', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Reference(check)).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const bytes = new Uint8Array(randomFeatures(4099, 7).buffer);
    expect(crc32Reference(bytes)).toBe(crc32(bytes));
    // Continuation: crc(a ++ b) = crc(b, crc(a)).
    expect(crc32(bytes.subarray(1000), crc32(bytes.subarray(0, 1000)))).toBe(crc32(bytes));
  });

  it('keeps the CRC of an encoded value byte-identical to the pre-20.15 encoding', () => {
    // A value encoded by the old JS fallback: its header's CRC must still verify.
    const data = randomFeatures(1280, 3);
    const bytes = encodeFeatures(data, [1280], 'float32');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const header = headerByteLength(1);
    expect(view.getUint32(header - 4, true)).toBe(crc32Reference(bytes.subarray(header)));
  });
});

describe('float16 conversion', () => {
  it('round-trips every finite binary16 value exactly', () => {
    const wrong: number[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const exp = (bits >>> 10) & 0x1f;
      if (exp === 0x1f && (bits & 0x3ff) !== 0) continue; // NaN payloads
      if (float32ToFloat16Bits(float16BitsToFloat32(bits)) !== bits) wrong.push(bits);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds to the nearest binary16, ties to even (checked against a brute-force search)', () => {
    // Sorted positive finite halves: bits 0 … 0x7c00 (Inf) are monotone in value.
    const values = Array.from({ length: 0x7c00 }, (_, b) => float16BitsToFloat32(b));
    const next = rng(3);
    for (let i = 0; i < 20_000; i++) {
      const x = Math.fround(2 ** (next() * 44 - 28) * (1 + next()));
      let lo = 0;
      let hi = values.length - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (values[mid]! <= x) lo = mid;
        else hi = mid;
      }
      const dLo = x - values[lo]!;
      const dHi = values[hi]! - x;
      // IEEE overflow: everything from 65520 (the tie between 65504 and 2^16, rounded to even) is Inf.
      const expected = x >= 65520 ? 0x7c00 : dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
      expect(float32ToFloat16Bits(x)).toBe(expected);
      expect(float32ToFloat16Bits(-x)).toBe(expected | 0x8000);
    }
  });

  it('handles ties, subnormals, overflow, zeros, infinities and NaN', () => {
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even (1)
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (1 + 2^-9)
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // tie → even (0)
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff); // largest finite
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // overflow → Inf
    expect(float32ToFloat16Bits(1e10)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float16BitsToFloat32(float32ToFloat16Bits(NaN))).toBeNaN();
  });
});

describe('encodeFeatures / decodeFeatures', () => {
  it('writes the documented header: magic, version, dtype, rank, dims, CRC of the payload', () => {
    const data = randomFeatures(2 * 3 * 4, 1);
    const bytes = encodeFeatures(data, [2, 3, 4], 'float16');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('SFC1');
    expect(view.getUint16(4, true)).toBe(CACHE_FORMAT_VERSION);
    expect(view.getUint8(6)).toBe(1); // float16
    expect(view.getUint8(7)).toBe(3);
    expect([view.getUint32(8, true), view.getUint32(12, true), view.getUint32(16, true)]).toEqual([2, 3, 4]);
    expect(headerByteLength(3)).toBe(24);
    expect(bytes.byteLength).toBe(24 + 24 * 2);
    expect(bytes.byteLength).toBe(encodedByteLength([2, 3, 4], 'float16'));
    expect(view.getUint32(20, true)).toBe(crc32(bytes.subarray(24)));
  });

  it('round-trips float32 bit-exactly, including -0, ±Inf, NaN and subnormals', () => {
    const data = new Float32Array([...randomFeatures(1277, 2, 1e6), -0, Infinity, -Infinity, NaN, 1e-45, -3.4e38]);
    const decoded = decodeFeatures(encodeFeatures(data, [data.length], 'float32'), context);
    expect(decoded.shape).toEqual([data.length]);
    expect(decoded.dtype).toBe('float32');
    expect(new Uint32Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.length)).toEqual(
      new Uint32Array(data.buffer),
    );
  });

  it('round-trips float16 within 2^-11 relative error in the normal range', () => {
    const next = rng(4);
    const data = Float32Array.from({ length: 7 * 7 * 1280 }, () => (next() < 0.5 ? -1 : 1) * 2 ** (next() * 29 - 14));
    const bytes = encodeFeatures(data, [7, 7, 1280], 'float16');
    expect(bytes.byteLength).toBe(headerByteLength(3) + data.length * 2);
    const decoded = decodeFeatures(bytes, context);
    expect(decoded.dtype).toBe('float16');
    expect(decoded.shape).toEqual([7, 7, 1280]);
    let worst = 0;
    for (let i = 0; i < data.length; i++) worst = Math.max(worst, Math.abs(decoded.data[i]! - data[i]!) / Math.abs(data[i]!));
    expect(worst).toBeLessThanOrEqual(2 ** -11);
    expect(worst).toBeGreaterThan(0); // it did round
  });

  it('is deterministic: the same features give the same bytes', () => {
    const data = randomFeatures(1280, 5);
    expect(encodeFeatures(data, [1280], 'float16')).toEqual(encodeFeatures(Float32Array.from(data), [1280], 'float16'));
  });

  it('decodes a value that sits at an odd byte offset (as LevelDB buffers may)', () => {
    const data = randomFeatures(100, 6);
    const bytes = encodeFeatures(data, [10, 10], 'float32');
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    expect(decodeFeatures(shifted.subarray(1), context).data).toEqual(data);
  });

  it('handles rank 0 (a scalar) and empty shapes', () => {
    expect(decodeFeatures(encodeFeatures(new Float32Array([3.5]), [], 'float32'), context)).toEqual({
      data: new Float32Array([3.5]),
      shape: [],
      dtype: 'float32',
    });
    expect(decodeFeatures(encodeFeatures(new Float32Array(0), [0, 1280], 'float16'), context).shape).toEqual([0, 1280]);
  });

  it('rejects mismatched shapes and unknown dtypes with a TypeError', () => {
    expect(() => encodeFeatures(new Float32Array(6), [2, 2], 'float32')).toThrow(/shape \[2, 2\] has 4 elements but the features have 6/);
    expect(() => encodeFeatures(new Float32Array(4), [2, 2.5], 'float32')).toThrow(TypeError);
    expect(() => encodeFeatures(new Float32Array(4), [4], 'int8' as 'float32')).toThrow(/dtype must be one of float32, float16/);
  });

  it('a flipped payload byte is SPLITFIT_CACHE_CORRUPT (crc mismatch) naming the key and fingerprint', () => {
    const bytes = encodeFeatures(randomFeatures(1280, 8), [1280], 'float32');
    bytes[headerByteLength(1) + 777]! ^= 0x01;
    const err = corruptError(() => decodeFeatures(bytes, context));
    expect(err.message).toContain('crc mismatch');
    expect(err.message).toContain(context.key);
    expect(err.message).toContain(shortFingerprint(context.fingerprint));
    expect(checkFeatures(bytes)?.reason).toBe('crc mismatch');
  });

  it('a truncated value is SPLITFIT_CACHE_CORRUPT (truncated), whether cut in the payload or in the header', () => {
    const bytes = encodeFeatures(randomFeatures(1280, 9), [1280], 'float16');
    expect(corruptError(() => decodeFeatures(bytes.subarray(0, bytes.length - 1), context)).message).toContain('truncated');
    expect(corruptError(() => decodeFeatures(bytes.subarray(0, 14), context)).message).toContain('truncated');
    expect(corruptError(() => decodeFeatures(bytes.subarray(0, 3), context)).message).toContain('truncated');
    const longer = new Uint8Array(bytes.length + 2);
    longer.set(bytes);
    expect(checkFeatures(longer)?.reason).toBe('length mismatch');
  });

  it('a wrong format version or magic is SPLITFIT_CACHE_CORRUPT saying so', () => {
    const bytes = encodeFeatures(randomFeatures(16, 10), [16], 'float32');
    const v2 = Uint8Array.from(bytes);
    new DataView(v2.buffer).setUint16(4, CACHE_FORMAT_VERSION + 1, true);
    const err = corruptError(() => decodeFeatures(v2, context));
    expect(err.message).toContain('wrong version');
    expect(err.message).toContain(`format version ${CACHE_FORMAT_VERSION + 1}`);
    const magic = Uint8Array.from(bytes);
    magic[0] = 0x58;
    expect(checkFeatures(magic)?.reason).toBe('bad magic');
    const dtype = Uint8Array.from(bytes);
    dtype[6] = 9;
    expect(checkFeatures(dtype)).toEqual({ reason: 'bad header', detail: 'unknown dtype code 9' });
    expect(checkFeatures(bytes)).toBeUndefined();
  });
});

describe('keys', () => {
  it('builds and parses aug!generation!sampleId!view with zero-padded indices', () => {
    const key = featureKey({ augKey: NO_AUG, generation: 3, sampleId: 'ab12', view: 17 });
    expect(key).toBe('-!000003!ab12!000017');
    expect(parseFeatureKey(key)).toEqual({ augKey: '-', generation: 3, sampleId: 'ab12', view: 17 });
    expect(parseFeatureKey('-!3!ab12!17')).toBeUndefined();
    expect(parseFeatureKey('-!000003!ab12')).toBeUndefined();
  });

  it('orders keys lexicographically as (aug, generation, sample, view) numerically', () => {
    const parts = [
      { generation: 10, sampleId: 'a', view: 0 },
      { generation: 2, sampleId: 'b', view: 11 },
      { generation: 2, sampleId: 'b', view: 9 },
      { generation: 2, sampleId: 'a', view: 100 },
      { generation: MAX_INDEX, sampleId: 'a', view: 0 },
    ];
    const keys = parts.map((p) => featureKey({ augKey: NO_AUG, ...p })).sort();
    expect(keys.map((k) => parseFeatureKey(k))).toEqual([
      { augKey: '-', generation: 2, sampleId: 'a', view: 100 },
      { augKey: '-', generation: 2, sampleId: 'b', view: 9 },
      { augKey: '-', generation: 2, sampleId: 'b', view: 11 },
      { augKey: '-', generation: 10, sampleId: 'a', view: 0 },
      { augKey: '-', generation: MAX_INDEX, sampleId: 'a', view: 0 },
    ]);
  });

  it('ranges cover exactly one augmentation or one generation', () => {
    const aug = augKey('flip,crop:0.9');
    const inRange = (k: string, r: { gte: string; lt: string }): boolean => k >= r.gte && k < r.lt;
    const r = featureRange(aug, 2);
    expect(inRange(featureKey({ augKey: aug, generation: 2, sampleId: 'zz', view: MAX_INDEX }), r)).toBe(true);
    expect(inRange(featureKey({ augKey: aug, generation: 3, sampleId: 'a', view: 0 }), r)).toBe(false);
    expect(inRange(featureKey({ augKey: aug, generation: 1, sampleId: '~~~', view: 0 }), r)).toBe(false);
    expect(inRange(featureKey({ augKey: NO_AUG, generation: 2, sampleId: 'a', view: 0 }), r)).toBe(false);
    expect(inRange(featureKey({ augKey: aug, generation: 3, sampleId: 'a', view: 0 }), featureRange(aug))).toBe(true);
  });

  it('hashes augmentation specs to 12 hex digits and uses "-" for none', () => {
    expect(augKey(undefined)).toBe('-');
    expect(augKey('')).toBe('-');
    expect(augKey('flip')).toMatch(/^[0-9a-f]{12}$/);
    expect(augKey('flip')).toBe(augKey('flip'));
    expect(augKey('flip')).not.toBe(augKey('flip,noise:0.1'));
  });

  it('names feature sublevels f:<fingerprint> and rejects bad parts with TypeError', () => {
    expect(featuresSublevelName('ab'.repeat(32))).toBe(`f:${'ab'.repeat(32)}`);
    expect(parseFeaturesSublevelName(`f:${'ab'.repeat(32)}`)).toBe('ab'.repeat(32));
    expect(parseFeaturesSublevelName('meta')).toBeUndefined();
    expect(() => featuresSublevelName('has space')).toThrow(TypeError);
    expect(() => featureKey({ augKey: NO_AUG, generation: 0, sampleId: 'a!b', view: 0 })).toThrow(/sample id/);
    expect(() => featureKey({ augKey: NO_AUG, generation: MAX_INDEX + 1, sampleId: 'a', view: 0 })).toThrow(/generation must be an integer/);
    expect(() => featureKey({ augKey: NO_AUG, generation: 0, sampleId: 'a', view: -1 })).toThrow(/view must be an integer/);
    expect(() => featureKey({ augKey: 'flip', generation: 0, sampleId: 'a', view: 0 })).toThrow(/aug key/);
  });
});

/** ReLU-like features: about `zeros` of the values exactly 0, the rest positive. */
function sparseFeatures(n: number, seed: number, zeros = 0.8): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: n }, () => (next() < zeros ? 0 : next() * 6));
}

function bitsOf(data: Float32Array): Uint32Array {
  return new Uint32Array(data.buffer, data.byteOffset, data.length);
}

describe('shortFingerprint', () => {
  it('is the first 12 characters, and keeps a derived namespace\'s suffix', () => {
    expect(shortFingerprint('0123456789abcdef'.repeat(4))).toBe('0123456789ab');
    expect(shortFingerprint(`${'0123456789abcdef'.repeat(4)}.gap`)).toBe('0123456789ab.gap');
  });
});

describe('zero-bitmap encoding', () => {
  const n = 7 * 7 * 1280;

  it('is chosen when shorter: bitmap of ceil(n/32) words then the stored elements, code 0x10 | dtype', () => {
    const data = sparseFeatures(n, 1);
    const stored = data.filter((v) => v !== 0).length;
    const bytes = encodeFeatures(data, [7, 7, 1280], 'float32');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(view.getUint16(4, true)).toBe(2);
    expect(view.getUint8(6)).toBe(0x10);
    const header = headerByteLength(3);
    expect(bytes.byteLength).toBe(header + 4 * Math.ceil(n / 32) + 4 * stored);
    expect(bytes.byteLength).toBeLessThan(encodedByteLength([7, 7, 1280], 'float32') / 3);
    expect(view.getUint32(header - 4, true)).toBe(crc32(bytes.subarray(header)));
    // Word 0 bit j says element j is stored.
    const word0 = view.getUint32(header, true);
    for (let j = 0; j < 32; j++) expect(((word0 >>> j) & 1) === 1).toBe(data[j] !== 0);
  });

  it('stays dense when a bitmap would not pay (few zeros)', () => {
    const bytes = encodeFeatures(sparseFeatures(n, 2, 0.02), [n], 'float32');
    expect(new DataView(bytes.buffer, bytes.byteOffset).getUint8(6)).toBe(0);
    expect(bytes.byteLength).toBe(encodedByteLength([n], 'float32'));
  });

  it('round-trips bit-exactly: -0, NaN, ±Inf and subnormals are stored, not taken for zero', () => {
    const data = sparseFeatures(1000, 3, 0.9);
    data.set([-0, NaN, Infinity, -Infinity, 1e-45, -1e-45], 500);
    const bytes = encodeFeatures(data, [1000], 'float32');
    expect(new DataView(bytes.buffer, bytes.byteOffset).getUint8(6)).toBe(0x10);
    expect(bitsOf(decodeFeatures(bytes, context).data)).toEqual(bitsOf(data));
    const into = new Float32Array(1000).fill(7); // stale values are overwritten, zeros included
    decodeFeaturesInto(bytes, context, into);
    expect(bitsOf(into)).toEqual(bitsOf(data));
  });

  it('round-trips at any element count (a bitmap tail shorter than 32) and at an odd byte offset', () => {
    for (const count of [1, 31, 32, 33, 95, 1281]) {
      const data = sparseFeatures(count, count, 0.9);
      const bytes = encodeFeatures(data, [count], 'float32');
      const shifted = new Uint8Array(bytes.byteLength + 1);
      shifted.set(bytes, 1);
      expect(bitsOf(decodeFeatures(shifted.subarray(1), context).data)).toEqual(bitsOf(data));
    }
  });

  it('float16: the same bitmap over binary16 bits, equal to the dense float16 decode', () => {
    const data = sparseFeatures(n, 4);
    const bytes = encodeFeatures(data, [n], 'float16');
    expect(new DataView(bytes.buffer, bytes.byteOffset).getUint8(6)).toBe(0x11);
    const stored = data.filter((v) => v !== 0).length;
    expect(bytes.byteLength).toBe(headerByteLength(1) + 4 * Math.ceil(n / 32) + 2 * stored);
    const decoded = decodeFeatures(bytes, context);
    expect(decoded.dtype).toBe('float16');
    for (let i = 0; i < n; i++) expect(Math.abs(decoded.data[i]! - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -11);
  });

  it('every corruption is caught: a flipped bitmap bit changes the stored count (truncated / length mismatch), a flipped value byte the CRC', () => {
    const data = sparseFeatures(4096, 5);
    const bytes = encodeFeatures(data, [4096], 'float32');
    const header = headerByteLength(1);
    const setBit = Uint8Array.from(bytes);
    const zeroAt = data.findIndex((v) => v === 0);
    setBit[header + (zeroAt >>> 3)]! ^= 1 << (zeroAt & 7);
    expect(checkFeatures(setBit)?.reason).toBe('truncated');
    const clearedBit = Uint8Array.from(bytes);
    const storedAt = data.findIndex((v) => v !== 0);
    clearedBit[header + (storedAt >>> 3)]! ^= 1 << (storedAt & 7);
    expect(checkFeatures(clearedBit)?.reason).toBe('length mismatch');
    const value = Uint8Array.from(bytes);
    value[bytes.length - 3]! ^= 0x40;
    expect(corruptError(() => decodeFeatures(value, context)).message).toContain('crc mismatch');
    // A bit beyond the last element (the tail of the last word) is a bad header, whatever the length says.
    const tail = encodeFeatures(sparseFeatures(40, 6, 0.9), [40], 'float32');
    const t = Uint8Array.from(tail);
    t[header + 7]! |= 0x80; // bit 63 of a 40-element bitmap
    expect(checkFeatures(t)?.reason).toBe('bad header');
  });

  it('reads version-1 values (dense, dtype code alone), so an upgrade keeps every cached entry', () => {
    const data = randomFeatures(300, 7);
    const v1 = Uint8Array.from(encodeFeatures(data, [300], 'float32'));
    new DataView(v1.buffer).setUint16(4, 1, true);
    expect(bitsOf(decodeFeatures(v1, context).data)).toEqual(bitsOf(data));
    const v1half = Uint8Array.from(encodeFeatures(data, [300], 'float16'));
    new DataView(v1half.buffer).setUint16(4, 1, true);
    expect(decodeFeatures(v1half, context).dtype).toBe('float16');
    // Version 1 had no encodings: a zero-bitmap code in a version-1 value is a bad header.
    const sparse = Uint8Array.from(encodeFeatures(sparseFeatures(300, 8), [300], 'float32'));
    new DataView(sparse.buffer).setUint16(4, 1, true);
    expect(checkFeatures(sparse)).toEqual({ reason: 'bad header', detail: 'unknown dtype code 16' });
  });
});
