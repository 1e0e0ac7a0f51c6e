import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { extractFeatures, FeatureCache, saveModel, type TrainEvent, trainHead } from '../src/index.js';
import { augmentPixels, canonicalAugmentSpec, parseAugmentSpec } from '../src/data/augment.js';
import { readRun } from '../src/extract/run-meta.js';
import { viewFor } from '../src/train/batches.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { residualToyModel } from './helpers/models.js';

const SPEC = 'flip:h,crop:0.8,rotate:15,brightness:0.2,contrast:0.2,noise:0.05';

describe('augmentation spec and views', () => {
  const pixels = Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i * 37) % 256);
  const spec = parseAugmentSpec(SPEC);
  const key = { seed: 1, generation: 0, sampleId: 'a'.repeat(64), view: 0 };

  it('gives pixel-identical views for the same (seed, generation, sample, view), different when any changes', () => {
    const a = augmentPixels(pixels, 16, 16, 3, spec, key);
    expect(Buffer.from(augmentPixels(pixels, 16, 16, 3, spec, { ...key })).equals(Buffer.from(a))).toBe(true);
    for (const change of [{ seed: 2 }, { generation: 1 }, { sampleId: 'b'.repeat(64) }, { view: 1 }]) {
      expect(Buffer.from(augmentPixels(pixels, 16, 16, 3, spec, { ...key, ...change })).equals(Buffer.from(a)), JSON.stringify(change)).toBe(false);
    }
  });

  it('parses, canonicalises and rejects specs', () => {
    expect(canonicalAugmentSpec(parseAugmentSpec('rotate:10,flip:vh'))).toBe('augment/v1:flip:hv,rotate:10');
    expect(parseAugmentSpec(canonicalAugmentSpec(spec))).toEqual(spec);
    for (const bad of ['', 'flip:x', 'rotate:-3', 'crop:1.5', 'blur:2', 'noise']) {
      expect(() => parseAugmentSpec(bad), bad).toThrow(expect.objectContaining({ code: 'SPLITFIT_USAGE' }) as Error);
    }
  });
});

describe('augmentation runs on a toy model', () => {
  let dir: string;
  let model: string;
  let data: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-aug-'));
    await makeEmojiDataset({ out: join(dir, 'emoji'), categories: ['Animals & Nature', 'Food & Drink'], perClass: 12, testFraction: 0 });
    data = join(dir, 'emoji', 'train');
    await saveModel(residualToyModel(), join(dir, 'toy'));
    model = join(dir, 'toy', 'model.json');
  });

  it('K=1 without augmentation is plain caching: same fingerprint and keys, zero extra work', async () => {
    const cache = join(dir, 'plain');
    const plain = await extractFeatures({ model, boundary: 'block2_add', data, cache });
    const again = await extractFeatures({ model, boundary: 'block2_add', data, cache, views: 1 });
    expect(again).toMatchObject({ fingerprint: plain.fingerprint, extracted: 0, entries: 24, views: 1, generation: 0 });
    expect(again.augment).toBeUndefined();
  });

  it('stores N × K views and trains on the view drawn for each epoch', async () => {
    const cache = join(dir, 'views');
    const r = await extractFeatures({ model, boundary: 'block2_add', data, cache, augment: SPEC, views: 3, seed: 4 });
    expect(r).toMatchObject({ total: 24, extracted: 72, entries: 72, views: 3, generation: 0 });
    const t = await trainHead({ cache, out: join(dir, 'out-views'), epochs: 4, batchSize: 8, seed: 9 });
    expect(t.history.viewsRead).toHaveLength(4);
    await using c = await FeatureCache.open(cache);
    const ids = (await readRun(c)).samples.map((s) => s.id);
    t.history.viewsRead.forEach((counts, epoch) => {
      const expected = [0, 0, 0];
      for (const id of ids) expected[viewFor(9, epoch, id, 3)]!++;
      expect(counts).toEqual(expected);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(24);
    });
    expect(t.history.viewsRead.flat().filter((c) => c > 0).length).toBeGreaterThan(4); // more than one view per epoch
  });

  it('refreshes generations: scratch generations deleted, disk use flat across 5 refreshes, extraction overlapped with training, and the same command reproduces the head', async () => {
    const cache = join(dir, 'refresh');
    await extractFeatures({ model, boundary: 'block2_add', data, cache, augment: SPEC, views: 2, seed: 1 });
    const events: { t: number; e: TrainEvent }[] = [];
    const t = await trainHead({ cache, out: join(dir, 'out-refresh'), epochs: 18, batchSize: 1, refreshEvery: 3, extractBatchSize: 4, seed: 1, onProgress: (e) => events.push({ t: performance.now(), e }) });
    expect(t.generations).toBe(6);
    expect(t.history.generations.map((g) => [g.generation, g.startEpoch])).toEqual([[0, 1], [1, 4], [2, 7], [3, 10], [4, 13], [5, 16]]);
    for (const g of t.history.generations) expect(g.waitedSeconds).toBeGreaterThanOrEqual(0);

    await using c = await FeatureCache.open(cache);
    const stats = await c.stats();
    const fp = stats.fingerprints.find((f) => f.fingerprint === t.fingerprint)!;
    // The recorded generation (0, cached by cache-features) stays; generations 1–5 were scratch.
    expect(fp).toMatchObject({ entries: 48, views: 2, generation: 0 });
    for (let g = 1; g <= 5; g++) {
      const left: unknown[] = [];
      for await (const chunk of c.iterateFeatures(t.fingerprint, { aug: canonicalAugmentSpec(parseAugmentSpec(SPEC)), generation: g })) left.push(...chunk);
      expect(left, `generation ${g}`).toHaveLength(0);
    }
    // Bytes of live entries do not grow: one generation's worth after five refreshes.
    const generation0: unknown[] = [];
    for await (const chunk of c.iterateFeatures(t.fingerprint, { aug: canonicalAugmentSpec(parseAugmentSpec(SPEC)), generation: 0 })) generation0.push(...chunk);
    expect(generation0).toHaveLength(48);
    const oneGeneration = fp.bytes;
    expect(stats.bytes).toBeLessThanOrEqual(oneGeneration * 1.01 + 64 * 1024);

    // Overlap: the next generation's extraction reports progress between epochs of the current one.
    const order = events.map(({ e }) => (e.type === 'epoch' ? `epoch${e.epoch}` : e.type === 'extract' ? `extract${e.generation}` : e.type));
    // (Generation 1 is extracted during epochs 1–3; its first progress event precedes the end of epoch 3.)
    expect(order.indexOf('extract1')).toBeGreaterThan(-1);
    expect(order.indexOf('extract1')).toBeLessThan(order.indexOf('epoch3'));
    expect(order.lastIndexOf('extract1')).toBeLessThan(order.indexOf('generation'));
    await c.close();

    // Reproducible: the same command and seed walk the same generations and give the same weights.
    const again = await trainHead({ cache, out: join(dir, 'out-refresh-again'), epochs: 18, batchSize: 1, refreshEvery: 3, extractBatchSize: 4, seed: 1 });
    expect(again.history.generations.map((g) => g.generation)).toEqual([0, 1, 2, 3, 4, 5]);
    const bytes = (d: string): Promise<Buffer> => readFile(join(dir, d, 'head', 'weights.bin'));
    expect((await bytes('out-refresh-again')).equals(await bytes('out-refresh'))).toBe(true);
  });

  it('R=1 is fully online augmentation: one fresh generation per epoch', async () => {
    const cache = join(dir, 'online');
    await extractFeatures({ model, boundary: 'block2_add', data, cache, augment: 'flip:h,noise:0.1', views: 1 });
    const t = await trainHead({ cache, out: join(dir, 'out-online'), epochs: 4, batchSize: 8, refreshEvery: 1 });
    expect(t.history.generations.map((g) => g.generation)).toEqual([0, 1, 2, 3]);
  });

  it('--views without --augment and --refresh-every on a plain cache are usage errors', async () => {
    const usage = await runCli(['cache-features', '--model', model, '--boundary', 'block2_add', '--data', data, '--cache', join(dir, 'u'), '--views', '2', '--json', ...backendArgs()]);
    expect(usage.status).toBe(2);
    expect(usage.json).toMatchObject({ error: { code: 'SPLITFIT_USAGE' } });
    await expect(trainHead({ cache: join(dir, 'plain'), out: join(dir, 'x'), refreshEvery: 2 })).rejects.toMatchObject({ code: 'SPLITFIT_USAGE' });
  });
});
