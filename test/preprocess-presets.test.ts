// The preprocessing presets added for InceptionV3 and torchvision-trained bases: `tf` alias, `torch`.
import { describe, expect, it } from 'vitest';
import { isSplitfitError, parsePreprocess, preprocess, PREPROCESS_PRESETS } from '../src/index.js';
import { describePreprocess } from '../src/data/preprocess.js';

describe('preprocessing presets', () => {
  it('accepts `tf` (Keras preprocess_input mode name) as an alias of symmetric', () => {
    expect(parsePreprocess('tf')).toBe('symmetric');
    expect(parsePreprocess(' TF ')).toBe('symmetric');
    expect(PREPROCESS_PRESETS).toEqual(['unit', 'symmetric', 'caffe', 'torch']);
  });

  it('torch: (x/255 − ImageNet mean) / ImageNet std per RGB channel', () => {
    const out = preprocess(Uint8Array.from([0, 128, 255, 255, 0, 128]), 3, 'torch');
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    const want = [0, 128, 255, 255, 0, 128].map((v, i) => (v / 255 - mean[i % 3]!) / std[i % 3]!);
    want.forEach((w, i) => expect(out[i]).toBeCloseTo(w, 5));
    expect(out[0]).toBeCloseTo(-2.1179, 4);
  });

  it('torch needs RGB and says so with SPLITFIT_USAGE', () => {
    let err: unknown;
    try {
      preprocess(Uint8Array.from([1, 2]), 1, 'torch');
    } catch (e) {
      err = e;
    }
    expect(isSplitfitError(err, 'SPLITFIT_USAGE')).toBe(true);
    expect((err as Error).message).toMatch(/3-channel/);
  });

  it('each preset has its own fingerprint description; unknown names list the choices and the tf alias', () => {
    const descriptions = PREPROCESS_PRESETS.map(describePreprocess);
    expect(new Set(descriptions).size).toBe(PREPROCESS_PRESETS.length);
    expect(describePreprocess('torch')).toBe('preprocess/v1:torch:(x/255-[0.485,0.456,0.406])/[0.229,0.224,0.225]');
    expect(() => parsePreprocess('torchh')).toThrow(/did you mean torch.*valid choices: unit, symmetric, caffe, torch.*tf = symmetric/);
  });
});
