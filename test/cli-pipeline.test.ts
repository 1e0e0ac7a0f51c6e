import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { FeatureCache, loadFeatureSet, loadModel } from '../src/index.js';
import { readRun } from '../src/extract/run-meta.js';
import { argmaxRows } from '../src/train/metrics.js';
import { backendArgs, runCli } from './helpers/cli.js';

// End to end through the CLI on real Twemoji PNGs with the real mobilenet_v2 cut at out_relu.
describe('cache-features → train-head → evaluate/predict', () => {
  let dir: string;
  let data: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-e2e-'));
    data = join(dir, 'emoji');
    await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink'], perClass: 24, testFraction: 0.25 });
  });

  it('extracts once, then a second identical run does zero base passes', async () => {
    const args = ['cache-features', '--model', 'mobilenet_v2', '--boundary', 'out_relu', '--data', join(data, 'train'), '--cache', join(dir, 'cache'), '--json', ...backendArgs()];
    const first = await runCli(args);
    expect(first.status, first.stderr).toBe(0);
    expect(first.json).toMatchObject({ total: 36, extracted: 36, skipped: 0, failed: 0, entries: 36, featureShape: [7, 7, 1280] });
    expect(first.json['fingerprint']).toMatch(/^[0-9a-f]{64}$/);
    for (const field of ['backend', 'seconds', 'extractSeconds']) expect(first.json).toHaveProperty(field);
    const second = await runCli(args);
    expect(second.status).toBe(0);
    expect(second.json).toMatchObject({ fingerprint: first.json['fingerprint'], total: 36, extracted: 0, skipped: 36, entries: 36 });
  });

  it('trains a head, writes the stitched model, and the stitched model agrees with the head on cached features', async () => {
    const out = join(dir, 'out');
    const train = await runCli(['train-head', '--cache', join(dir, 'cache'), '--out', out, '--epochs', '15', '--lr', '0.003', '--json', ...backendArgs()]);
    expect(train.status, train.stderr).toBe(0);
    expect(train.json).toMatchObject({ epochs: 15, generations: 1 });
    const history = train.json['history'] as { loss: number[]; acc: number[] };
    expect(history.loss).toHaveLength(15);
    expect(history.loss.at(-1)!).toBeLessThan(history.loss[0]!);

    // Head on cached features vs stitched model on the images: same predictions.
    await using cache = await FeatureCache.open(join(dir, 'cache'));
    const run = await readRun(cache);
    const set = await loadFeatureSet(cache, run.fingerprint, run.samples, run.featureShape);
    const head = await loadModel(join(out, 'head', 'model.json'));
    const headProbs = tf.tidy(() => (head.predict(tf.tensor(set.x, [set.ids.length, ...set.featureShape])) as tf.Tensor).dataSync() as Float32Array);
    const headAcc = argmaxRows(headProbs, 2).filter((p, i) => p === set.labels[i]).length / set.labels.length;

    const evaluated = await runCli(['evaluate', '--model', join(out, 'model.json'), '--data', join(data, 'train'), '--json', ...backendArgs()]);
    expect(evaluated.status, evaluated.stderr).toBe(0);
    expect(evaluated.json['n']).toBe(36);
    expect(evaluated.json['accuracy']).toBeCloseTo(headAcc, 10);
    expect(evaluated.json['auc']).toBeGreaterThan(0.5);

    const files = run.samples.map((s) => s.id);
    expect(files).toHaveLength(36);
    const predicted = await runCli(['predict', '--model', join(out, 'model.json'), join(data, 'train', 'food-drink'), '--json', ...backendArgs()]);
    expect(predicted.status, predicted.stderr).toBe(0);
    const predictions = predicted.json['predictions'] as { file: string; label: string; probabilities: Record<string, number> }[];
    expect(predictions.length).toBe(18);
    for (const p of predictions) {
      const row = set.ids.indexOf((await import('../src/data/file-sample.js')).sha256(await (await import('node:fs/promises')).readFile(p.file)));
      expect(row).toBeGreaterThanOrEqual(0);
      const viaHead = run.labels[argmaxRows(headProbs.subarray(row * 2, row * 2 + 2), 2)[0]!];
      expect(p.label).toBe(viaHead);
      expect(Math.abs(p.probabilities[p.label]! - Math.max(headProbs[row * 2]!, headProbs[row * 2 + 1]!))).toBeLessThan(1e-4);
    }
  });
});
