// The shared test helpers: the tensor assertions must be able to fail (a leak check that never
// fires, or a bound never applied, would make every test using them pass by accident), and the
// toy data must stay the data the tests were tuned on.
import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toyImages } from './helpers/data.js';
import { expectNoTensorLeak, expectTensorsClose, maxAbsDiff, maxRelDiff } from './helpers/tensors.js';

describe('expectNoTensorLeak', () => {
  it('returns what a sync or async fn returns when it disposes what it makes', async () => {
    expect(expectNoTensorLeak(() => tf.tidy(() => tf.ones([3]).sum().arraySync()))).toBe(3);
    await expect(expectNoTensorLeak(async () => tf.tidy(() => tf.ones([2]).sum().arraySync()))).resolves.toBe(2);
  });

  it('fails on a tensor left alive, sync and async', async () => {
    let leaked: tf.Tensor | undefined;
    expect(() => expectNoTensorLeak(() => (leaked = tf.ones([1])))).toThrow(/leak check/);
    leaked!.dispose();
    await expect(expectNoTensorLeak(async () => (leaked = tf.zeros([1])))).rejects.toThrow(/leak check/);
    leaked!.dispose();
  });
});

describe('expectTensorsClose', () => {
  it('passes at the bound and fails just above it, naming the bound and the worst difference', () => {
    const a = tf.tensor([1, 2, 3]);
    const b = tf.tensor([1, 2.5, 3]);
    expect(maxAbsDiff(a, b)).toBe(0.5);
    expectTensorsClose(a, b, 0.5);
    expect(() => expectTensorsClose(a, b, 0.4)).toThrow(/max \|actual − expected\| = 0\.5, bound 0\.4/);
    expectTensorsClose(a, a.clone(), 0);
    tf.dispose([a, b]);
  });

  it('relative: divides by max |expected|', () => {
    const a = tf.tensor([100, 201]);
    const b = tf.tensor([100, 200]);
    expect(maxRelDiff(a, b)).toBe(1 / 200);
    expectTensorsClose(a, b, 0.005, { relative: true });
    expect(() => expectTensorsClose(a, b, 0.004, { relative: true })).toThrow(/max \|actual − expected\| \/ max \|expected\| = 0\.005, bound 0\.004/);
    tf.dispose([a, b]);
  });

  it('fails on a shape mismatch instead of broadcasting', () => {
    const a = tf.zeros([2, 1]);
    const b = tf.zeros([2, 3]);
    expect(() => expectTensorsClose(a, b, 1)).toThrow(/tensor shapes/);
    tf.dispose([a, b]);
  });
});

describe('toyImages', () => {
  it('gives the bytes the inline generators of lock-batchnorm and compare-modes gave for seed 7', () => {
    const { x, y } = toyImages(96, 7);
    const sha = (t: tf.Tensor): string => createHash('sha256').update(Buffer.from((t.dataSync() as Float32Array).buffer)).digest('hex');
    expect(x.shape).toEqual([96, 8, 8, 3]);
    expect(y.shape).toEqual([96, 3]);
    expect(sha(x)).toBe('5f8ac673f3680fa5978f810bf38935ced84178f68db2291b6554a17646e931d1');
    expect(sha(y)).toBe('2c74b113f1bd670b55be2d386a8dbf875b0552f4c4ec852a50eba1ef7bcfa8a0');
    tf.dispose([x, y]);
  });
});
