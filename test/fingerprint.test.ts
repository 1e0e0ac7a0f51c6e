import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fingerprint, type FingerprintInput, loadModel, saveModel, splitBase } from '../src/index.js';
import { residualToyModel } from './helpers/models.js';

const input: FingerprintInput = { boundary: 'block1_add', inputSize: [16, 16], channels: 3, preprocess: 'unit', dtype: 'float32' };

describe('fingerprint', () => {
  it('is equal for a reload of the same files, and changes with one weight, boundary, preprocessing', async () => {
    const model = residualToyModel();
    const dir = await mkdtemp(join(tmpdir(), 'splitfit-fp-'));
    await saveModel(model, dir);
    const a = await loadModel(join(dir, 'model.json'));
    const b = await loadModel(join(dir, 'model.json'));
    const fpA = fingerprint(splitBase(a, 'block1_add').base, input);
    expect(fingerprint(splitBase(b, 'block1_add').base, input)).toBe(fpA);

    expect(fingerprint(splitBase(a, 'block2_add').base, { ...input, boundary: 'block2_add' })).not.toBe(fpA);
    expect(fingerprint(splitBase(a, 'block1_add').base, { ...input, preprocess: 'symmetric' })).not.toBe(fpA);
    expect(fingerprint(splitBase(a, 'block1_add').base, { ...input, dtype: 'float16' })).not.toBe(fpA);

    const stem = b.getLayer('stem');
    const [kernel, bias] = stem.getWeights() as [tf.Tensor, tf.Tensor];
    const values = kernel.dataSync().slice();
    values[0] = values[0]! + 1e-3;
    stem.setWeights([tf.tensor(values, kernel.shape), bias]);
    expect(fingerprint(splitBase(b, 'block1_add').base, input)).not.toBe(fpA);
  });

  it('ignores weights above the boundary', async () => {
    const model = residualToyModel();
    const fp = fingerprint(splitBase(model, 'block1_add').base, input);
    const dense = model.getLayer('classifier');
    dense.setWeights(dense.getWeights().map((w) => tf.onesLike(w)));
    expect(fingerprint(splitBase(model, 'block1_add').base, input)).toBe(fp);
  });
});
