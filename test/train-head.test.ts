import * as tf from '@tensorflow/tfjs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { extractFeatures, FeatureCache, saveModel, trainHead } from '../src/index.js';
import { residualToyModel } from './helpers/models.js';

// A toy model saved to disk stands in for a pretrained network: fast, and a real model.json.
describe('trainHead on cached features of a toy model', () => {
  let dir: string;
  let modelPath: string;
  let data: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-train-'));
    data = join(dir, 'emoji');
    await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places'], perClass: 20, testFraction: 0 });
    modelPath = join(dir, 'toy');
    await saveModel(residualToyModel(), modelPath);
  });

  it('gives bit-identical head weights for the same seed, and different ones for another seed', async () => {
    const cache = join(dir, 'cache-seed');
    await extractFeatures({ model: join(modelPath, 'model.json'), boundary: 'block2_add', data: join(data, 'train'), cache });
    const run = async (out: string, seed: number): Promise<Buffer> => {
      await trainHead({ cache, out: join(dir, out), epochs: 3, batchSize: 8, seed, validationSplit: 0.2 });
      return readFile(join(dir, out, 'head', 'weights.bin'));
    };
    const a = await run('a', 5);
    const b = await run('b', 5);
    const c = await run('c', 6);
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    const manifest = JSON.parse(await readFile(join(dir, 'a', 'splitfit.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({ format: 'splitfit/2', boundary: 'block2_add', labels: ['animals-nature', 'food-drink', 'travel-places'], head: 'gap,dense:N:softmax' });
  });

  it('streams from LevelDB when features exceed the memory budget, with the same samples per epoch', async () => {
    const cache = join(dir, 'cache-stream');
    await extractFeatures({ model: join(modelPath, 'model.json'), boundary: 'block2_add', data: join(data, 'train'), cache });
    const memory = await trainHead({ cache, out: join(dir, 'mem'), epochs: 2, batchSize: 8 });
    const stream = await trainHead({ cache, out: join(dir, 'stream'), epochs: 2, batchSize: 8, memoryBudget: 1024 });
    expect(memory.mode).toBe('memory');
    expect(stream.mode).toBe('stream');
    expect(stream.history.loss).toHaveLength(2);
    expect(stream.history.loss.every(Number.isFinite)).toBe(true);
  });

  it('puts a changed weight, boundary or preprocessing in a new namespace and never reads old entries for it', async () => {
    const cache = join(dir, 'cache-ns');
    const first = await extractFeatures({ model: join(modelPath, 'model.json'), boundary: 'block1_add', data: join(data, 'train'), cache });
    expect(first.extracted).toBe(60);

    const changed = residualToyModel();
    const stem = changed.getLayer('stem');
    const [kernel, bias] = stem.getWeights() as [tf.Tensor, tf.Tensor];
    stem.setWeights([tf.add(kernel, 1e-3), bias]);
    const changedPath = join(dir, 'toy-changed');
    await saveModel(changed, changedPath);

    const variants = [
      { model: join(changedPath, 'model.json'), boundary: 'block1_add' },
      { model: join(modelPath, 'model.json'), boundary: 'block2_add' },
      { model: join(modelPath, 'model.json'), boundary: 'block1_add', preprocess: 'symmetric' },
    ];
    const fingerprints = new Set([first.fingerprint]);
    for (const v of variants) {
      const r = await extractFeatures({ ...v, data: join(data, 'train'), cache });
      expect(r.extracted, JSON.stringify(v)).toBe(60);
      expect(r.skipped).toBe(0);
      fingerprints.add(r.fingerprint);
    }
    expect(fingerprints.size).toBe(4);
    await using c = await FeatureCache.open(cache);
    for (const fp of fingerprints) expect(await c.countEntries(fp)).toBe(60);
  });

  it('lockBatchNorm keeps the pretrained BN layers of an original: head frozen; without it they update', async () => {
    const cache = join(dir, 'cache-bn');
    await extractFeatures({ model: join(modelPath, 'model.json'), boundary: 'block1_add', data: join(data, 'train'), cache });
    const stats = async (lock: boolean): Promise<boolean> => {
      const r = await trainHead({ cache, out: join(dir, `bn-${lock}`), head: 'original:block2_add,gap,dense:N:softmax', epochs: 2, batchSize: 8, lockBatchNorm: lock });
      const trained = r.head.getLayer('block2_bn').getWeights().map((w) => w.dataSync().slice());
      const source = residualToyModel().getLayer('block2_bn').getWeights().map((w) => w.dataSync().slice());
      return trained.every((w, i) => Buffer.from(w.buffer).equals(Buffer.from(source[i]!.buffer)));
    };
    expect(await stats(true)).toBe(true);
    expect(await stats(false)).toBe(false);
  });

  it('rejects a cache without a cache-features run, and bad options, with coded errors', async () => {
    await expect(trainHead({ cache: join(dir, 'empty-cache'), out: join(dir, 'x') })).rejects.toMatchObject({ code: 'SPLITFIT_CACHE_MISMATCH' });
    await expect(trainHead({ cache: join(dir, 'empty-cache'), out: join(dir, 'x'), epochs: 0 })).rejects.toMatchObject({ code: 'SPLITFIT_USAGE' });
    await expect(trainHead({ cache: join(dir, 'empty-cache'), out: join(dir, 'x'), validationSplit: 0.2, validationData: data })).rejects.toMatchObject({
      code: 'SPLITFIT_USAGE',
    });
  });
});
