// The shared tensor assertions must be able to fail: a leak check that never fires, or a bound
// that is never applied, would make every test that uses them pass by accident.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
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
