/**
 * `predictSamples` (behind `evaluate` and `predict`) runs a compiled copy of the stitched model for
 * COMPILE_MIN_SAMPLES images or more on native TensorFlow: on a real MobileNetV2 model trained by
 * train-head, its probabilities equal `predict`'s within float32 rounding and every top-1 is the
 * same; fewer images, `compiled: false` and the other backends take `predict`. (CI runs on native
 * TensorFlow; on another backend the counts below are 0 and the outputs still agree.)
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { openDataSource } from '../src/data/sources.js';
import type { Sample } from '../src/data/types.js';
import { extractFeatures } from '../src/extract/extract.js';
import { COMPILE_MIN_SAMPLES, loadPredictor, type Predictor, predictSamples } from '../src/infer/predictor.js';
import { trainHead } from '../src/job/train-head.js';

const compiles = vi.hoisted(() => ({ count: 0 }));
vi.mock('../src/model/compile/index.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../src/model/compile/index.js')>();
  return {
    ...m,
    compileBase: (...args: Parameters<typeof m.compileBase>) => {
      compiles.count++;
      return m.compileBase(...args);
    },
  };
});

let predictor: Predictor;
let samples: Sample[];
beforeAll(async () => {
  const root = await mkdtemp(join(tmpdir(), 'splitfit-predict-compiled-'));
  await makeEmojiDataset({ out: join(root, 'data'), categories: ['Animals & Nature', 'Food & Drink'], perClass: 8, testFraction: 0, seed: 3 });
  const data = await openDataSource(join(root, 'data', 'train'));
  await extractFeatures({ model: 'mobilenet_v2', data, cache: join(root, 'cache') });
  await trainHead({ cache: join(root, 'cache'), out: join(root, 'model'), epochs: 3, learningRate: 0.01, seed: 0 });
  predictor = await loadPredictor(join(root, 'model'));
  // The same 16 images over and over: enough of them to take the compiled path.
  samples = Array.from({ length: COMPILE_MIN_SAMPLES + 5 }, (_, i) => data.samples[i % data.samples.length]!);
}, 240_000);

describe('predictSamples on a compiled copy of the stitched model', () => {
  it('gives predict’s probabilities (≤ 1e-5) and the same top-1 for every image, compiling once', async () => {
    // Native TensorFlow compiles (CI runs it); any other backend takes predict, and the outputs are the same.
    const compilesHere = tf.getBackend() === 'tensorflow' ? 1 : 0;
    compiles.count = 0;
    const compiled = await predictSamples(predictor, samples, 32);
    expect(compiles.count).toBe(compilesHere);
    const plain = await predictSamples(predictor, samples, 32, undefined, { compiled: false });
    expect(compiles.count).toBe(compilesHere);
    expect(compiled.k).toBe(2);
    expect(compiled.probs.length).toBe(samples.length * 2);
    let worst = 0;
    for (let i = 0; i < compiled.probs.length; i++) worst = Math.max(worst, Math.abs(compiled.probs[i]! - plain.probs[i]!));
    expect(worst).toBeLessThanOrEqual(1e-5);
    for (let i = 0; i < samples.length; i++) expect(compiled.probs[2 * i]! > compiled.probs[2 * i + 1]!).toBe(plain.probs[2 * i]! > plain.probs[2 * i + 1]!);
  }, 120_000);

  it('takes predict below COMPILE_MIN_SAMPLES images, and leaks no tensor either way', async () => {
    compiles.count = 0;
    const before = tf.memory().numTensors;
    await predictSamples(predictor, samples.slice(0, COMPILE_MIN_SAMPLES - 1), 32);
    expect(compiles.count).toBe(0);
    await predictSamples(predictor, samples, 32);
    expect(compiles.count).toBe(tf.getBackend() === 'tensorflow' ? 1 : 0);
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);
});
