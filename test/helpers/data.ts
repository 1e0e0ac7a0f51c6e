/** Seeded toy data sets built in the tests (the data a frozen-BN test trains on). */
import * as tf from '@tensorflow/tfjs';
import { rng } from '../../src/random.js';

export interface ToyImagesOptions {
  /** Image height and width. @default 8 */
  size?: number;
  /** Number of classes; sample i has class i mod `classes`. @default 3 */
  classes?: number;
}

/**
 * `n` RGB images where class k = channel k brighter by 1, plus uniform noise in [−0.5, 0.5), with
 * one-hot labels; the same `seed` gives the same values on every backend.
 */
export function toyImages(n: number, seed: number, options: ToyImagesOptions = {}): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const { size = 8, classes = 3 } = options;
  const r = rng(seed);
  const xs = new Float32Array(n * size * size * 3);
  const ys = new Float32Array(n * classes);
  for (let i = 0; i < n; i++) {
    const k = i % classes;
    ys[i * classes + k] = 1;
    for (let p = 0; p < size * size; p++) {
      for (let c = 0; c < 3; c++) xs[(i * size * size + p) * 3 + c] = r() - 0.5 + (c === k ? 1 : 0);
    }
  }
  return { x: tf.tensor4d(xs, [n, size, size, 3]), y: tf.tensor2d(ys, [n, classes]) };
}
