/**
 * Tensor assertions shared by every test (tfjs-layers' habit: one `expectTensorsClose`, one leak
 * check on `tf.memory().numTensors`), so a bound or a leak is checked the same way everywhere.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';

/** max |a − b| over all elements (shapes must match). */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  if (!tf.util.arraysEqual(a.shape, b.shape)) throw new TypeError(`maxAbsDiff: shapes differ: [${a.shape}] vs [${b.shape}]`);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

/** max |a − b| / max |b|: a parity bound that holds for features of any scale. */
export function maxRelDiff(a: tf.Tensor, b: tf.Tensor): number {
  const scale = tf.tidy(() => tf.max(tf.abs(b)).dataSync()[0]!);
  return maxAbsDiff(a, b) / Math.max(scale, 1e-12);
}

export interface CloseOptions {
  /** Bound max |actual − expected| / max |expected| instead of max |actual − expected|. @default false */
  relative?: boolean;
}

/**
 * Asserts `actual` has `expected`'s shape and max |actual − expected| ≤ `tolerance` (divided by
 * max |expected| when `relative`); the failure message names the bound and the worst difference.
 */
export function expectTensorsClose(actual: tf.Tensor, expected: tf.Tensor, tolerance: number, options: CloseOptions = {}): void {
  expect(actual.shape, 'tensor shapes').toEqual(expected.shape);
  const what = options.relative ? 'max |actual − expected| / max |expected|' : 'max |actual − expected|';
  const worst = options.relative ? maxRelDiff(actual, expected) : maxAbsDiff(actual, expected);
  expect(worst, `${what} = ${worst}, bound ${tolerance}`).toBeLessThanOrEqual(tolerance);
}

/**
 * Runs `fn` and asserts it leaves as many live tensors as there were before (the tensors it
 * returns count as a leak, so `fn` disposes what it creates); returns `fn`'s result.
 */
export function expectNoTensorLeak<T>(fn: () => Promise<T>): Promise<T>;
export function expectNoTensorLeak<T>(fn: () => T): T;
export function expectNoTensorLeak<T>(fn: () => T | Promise<T>): T | Promise<T> {
  const before = tf.memory().numTensors;
  const check = (): void => expect(tf.memory().numTensors, 'live tensors after the call (leak check)').toBe(before);
  const result = fn();
  if (result instanceof Promise) {
    return result.then((value) => {
      check();
      return value;
    });
  }
  check();
  return result;
}
