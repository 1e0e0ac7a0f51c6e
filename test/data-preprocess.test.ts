import { describe, expect, it } from 'vitest';
import { parsePreprocess, preprocess, PREPROCESS_PRESETS } from '../src/index.js';
import { describePreprocess, preprocessInto } from '../src/data/preprocess.js';

const pixels = new Uint8Array([0, 51, 255, 127, 128, 10]);

describe('preprocess presets', () => {
  it('unit scales to [0, 1]', () => {
    const out = preprocess(pixels, 3, 'unit');
    expect(out).toBeInstanceOf(Float32Array);
    expect(Array.from(out)).toEqual(Array.from(pixels, (v) => Math.fround(v / 255)));
    expect(out[0]).toBe(0);
    expect(out[2]).toBe(1);
  });

  it('symmetric scales to [-1, 1]', () => {
    const out = preprocess(pixels, 1, 'symmetric');
    expect(Array.from(out)).toEqual(Array.from(pixels, (v) => Math.fround(v / 127.5 - 1)));
    expect(out[0]).toBe(-1);
    expect(out[2]).toBe(1);
  });

  it('caffe reorders RGB to BGR and subtracts the ImageNet BGR means, without scaling', () => {
    const out = preprocess(pixels, 3, 'caffe');
    const expected = [255 - 103.939, 51 - 116.779, 0 - 123.68, 10 - 103.939, 128 - 116.779, 127 - 123.68];
    expect(Array.from(out)).toEqual(expected.map(Math.fround));
  });

  it('caffe needs 3 channels; a length that does not fit the channels is a TypeError', () => {
    expect(() => preprocess(pixels, 1, 'caffe')).toThrow(expect.objectContaining({ code: 'SPLITFIT_USAGE' }));
    expect(() => preprocess(new Uint8Array(4), 3, 'unit')).toThrow(TypeError);
  });
});

describe('preprocessInto (what every preset writes into a batch buffer)', () => {
  // Every byte value in every channel position, twice over (RGB triples of 0..255 rotated).
  const all = Uint8Array.from({ length: 256 * 3 * 2 }, (_, i) => (i + Math.floor(i / 768)) % 256);
  const reference = {
    unit: (px: Uint8Array) => Array.from(px, (v) => Math.fround(v / 255)),
    symmetric: (px: Uint8Array) => Array.from(px, (v) => Math.fround(v / 127.5 - 1)),
    caffe: (px: Uint8Array) => Array.from(px, (_, i) => {
      const c = i % 3;
      const src = px[i - c + 2 - c]!;
      return Math.fround(src - [103.939, 116.779, 123.68][c]!);
    }),
    torch: (px: Uint8Array) => Array.from(px, (v, i) => Math.fround((v / 255 - [0.485, 0.456, 0.406][i % 3]!) / [0.229, 0.224, 0.225][i % 3]!)),
  } as const;

  it('gives, for all 256 values in each channel, exactly what the preset\'s arithmetic gives', () => {
    for (const preset of PREPROCESS_PRESETS) {
      expect(Array.from(preprocess(all, 3, preset)), preset).toEqual(reference[preset](all));
    }
  });

  it('writes from the offset into a shared buffer and nowhere else', () => {
    const out = new Float32Array(all.length + 10).fill(42);
    preprocessInto(all, 3, 'symmetric', out, 5);
    expect(Array.from(out.subarray(0, 5))).toEqual([42, 42, 42, 42, 42]);
    expect(Array.from(out.subarray(5, 5 + all.length))).toEqual(reference.symmetric(all));
    expect(Array.from(out.subarray(5 + all.length))).toEqual([42, 42, 42, 42, 42]);
    expect(() => preprocessInto(all, 3, 'unit', out, 11)).toThrow(/do not fit an output of/);
    expect(() => preprocessInto(all, 3, 'unit', out, -1)).toThrow(TypeError);
  });
});

describe('parsePreprocess / describePreprocess', () => {
  it('accepts the presets and the range aliases, case- and space-insensitively', () => {
    expect(PREPROCESS_PRESETS).toEqual(['unit', 'symmetric', 'caffe', 'torch']);
    expect(['unit', 'Unit', '[0,1]', '[0, 1]', '0,1'].map(parsePreprocess)).toEqual(new Array(5).fill('unit'));
    expect(['symmetric', '[-1,1]', ' [-1, 1] ', '-1,1'].map(parsePreprocess)).toEqual(new Array(4).fill('symmetric'));
    expect(parsePreprocess('CAFFE')).toBe('caffe');
  });

  it('an unknown name is SPLITFIT_USAGE listing the valid choices', () => {
    expect(() => parsePreprocess('symetric')).toThrow(
      expect.objectContaining({
        code: 'SPLITFIT_USAGE',
        message: expect.stringMatching(/did you mean symmetric\?.*valid choices: unit, symmetric, caffe/),
      }),
    );
  });

  it('describes each preset with a distinct, stable string', () => {
    expect(PREPROCESS_PRESETS.map(describePreprocess)).toEqual([
      'preprocess/v1:unit:x/255',
      'preprocess/v1:symmetric:x/127.5-1',
      'preprocess/v1:caffe:rgb-to-bgr,minus[103.939,116.779,123.68]',
      'preprocess/v1:torch:(x/255-[0.485,0.456,0.406])/[0.229,0.224,0.225]',
    ]);
  });
});
