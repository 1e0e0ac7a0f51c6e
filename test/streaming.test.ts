/**
 * Streamed epochs (`streamBatches`, `FeatureCache.readFeaturesInto`): the same batches, the same
 * weights as in memory for the same seed, and every value read still checked.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { headerByteLength } from '../src/cache/codec.js';
import { FeatureCache } from '../src/cache/feature-cache.js';
import { canonicalAugmentSpec, parseAugmentSpec } from '../src/data/augment.js';
import { featureKey, featuresSublevelName, augKey } from '../src/cache/keys.js';
import { isSplitfitError, type SplitfitError } from '../src/errors.js';
import { extractFeatures, saveModel, trainHead } from '../src/index.js';
import { pooledNamespace } from '../src/cache/pooled.js';
import { type Batch, type BatchSource, memoryBatches, pooledBatches, pooledOnlyBatches, streamBatches } from '../src/train/batches.js';
import { type FeatureSet, loadFeatureSet, loadPooledFeatureSet, poolFeatureSet } from '../src/train/feature-set.js';
import { poolRows } from '../src/cache/pooled.js';
import { fitEpochs } from '../src/train/fit.js';
import { residualToyModel } from './helpers/models.js';
import { rejection } from './helpers/errors.js';

const FP = 'a'.repeat(64);
const SHAPE = [2, 2, 3];
const PER = 12;
const N = 37; // not a multiple of the batch size: the last batch is short
const VIEWS = 3;
const AUG = canonicalAugmentSpec(parseAugmentSpec('flip:h'));

let dir: string;
let cache: FeatureCache;

function id(i: number): string {
  return `s${String(i).padStart(4, '0')}`;
}

/** Values that tell sample, view and position apart, with bits a float16 round trip keeps. */
function values(i: number, view: number): Float32Array {
  return Float32Array.from({ length: PER }, (_, j) => i + view / 4 + j / 64);
}

const samples = Array.from({ length: N }, (_, i) => ({ id: id(i), label: i % 3 }));

async function fill(c: FeatureCache, dtype: 'float32' | 'float16' = 'float32'): Promise<void> {
  const entries = samples.flatMap((s, i) => Array.from({ length: VIEWS }, (_, view) => ({ sampleId: s.id, aug: AUG, generation: 2, view, data: values(i, view), shape: SHAPE })));
  await c.putFeatures(FP, entries, dtype);
}

async function collect(source: BatchSource, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of source.batches(epoch)) out.push(b);
  return out;
}


/** Edits a stored value with plain `level`, behind the cache's back (the cache must be closed). */
async function tamper(key: string, edit: (value: Uint8Array) => Uint8Array | undefined): Promise<void> {
  const db = new Level<string, string>(dir);
  const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(FP), { valueEncoding: 'view' });
  const value = await sub.get(key);
  if (value === undefined) throw new Error(`no value at ${key}`);
  const edited = edit(Uint8Array.from(value));
  if (edited === undefined) await sub.del(key);
  else await sub.put(key, edited);
  await db.close();
}

const selector = { aug: AUG, generation: 2, views: VIEWS };

describe('streamed batches', () => {
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-stream-'));
    cache = await FeatureCache.open(dir, { command: 'vitest streaming' });
  });
  afterEach(async () => {
    await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('are bit-identical to the in-memory batches for the same seed: order, views, labels and values, every epoch', async () => {
    await fill(cache);
    const set = await loadFeatureSet(cache, FP, samples, SHAPE, selector);
    const memory = memoryBatches(set, 8, 7);
    const stream = streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 8, seed: 7 });
    expect(stream.mode).toBe('stream');
    expect(stream.size).toBe(N);
    for (let epoch = 0; epoch < 3; epoch++) {
      const m = await collect(memory, epoch);
      const s = await collect(stream, epoch);
      expect(s.map((b) => b.labels.length)).toEqual([8, 8, 8, 8, 5]);
      expect(s.map((b) => b.labels)).toEqual(m.map((b) => b.labels));
      expect(s.map((b) => b.views)).toEqual(m.map((b) => b.views));
      s.forEach((b, i) => expect(Buffer.from(b.x.buffer).equals(Buffer.from(m[i]!.x.buffer))).toBe(true));
    }
    // The views drawn differ between epochs (3 views, 37 samples): the draw is per epoch, not fixed.
    const v0 = (await collect(stream, 0)).flatMap((b) => b.views);
    const v1 = (await collect(stream, 1)).flatMap((b) => b.views);
    expect(v0).not.toEqual(v1);
    expect(new Set(v0)).toEqual(new Set([0, 1, 2]));
  });

  it('with reuseBuffers, each batch (used before the next is asked for) holds the in-memory values; the buffers rotate', async () => {
    await fill(cache);
    const set = await loadFeatureSet(cache, FP, samples, SHAPE, selector);
    const memory = await collect(memoryBatches(set, 8, 7), 1);
    const buffers = new Set<ArrayBufferLike>();
    let i = 0;
    for await (const b of streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 8, seed: 7, readAhead: 2, reuseBuffers: true }).batches(1)) {
      expect(Buffer.from(b.x.buffer, b.x.byteOffset, b.x.byteLength).equals(Buffer.from(memory[i]!.x.buffer))).toBe(true);
      expect(b.labels).toEqual(memory[i]!.labels);
      buffers.add(b.x.buffer);
      i++;
    }
    expect(i).toBe(5);
    expect(buffers.size).toBe(3); // readAhead + 1 buffers for 5 batches
  });

  it('hold the cached values, float16 entries decoded as getFeatures decodes them (row = sample i, the epoch’s view)', async () => {
    await fill(cache, 'float16');
    const batches = await collect(streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 5, seed: 1, readAhead: 3 }), 0);
    const seen = new Set<number>();
    for (const b of batches) {
      for (let r = 0; r < b.labels.length; r++) {
        const row = b.x.subarray(r * PER, (r + 1) * PER);
        const i = Math.floor(row[0]!); // values(i, view)[0] = i + view / 4
        expect(row[0]! - i).toBe(b.views[r]! / 4);
        // Against decodeFeatures (the table-free path of getFeatures): the same float16 → float32 bits.
        const decoded = await cache.getFeatures(FP, id(i), { aug: AUG, generation: 2, view: b.views[r]! });
        expect(Array.from(row)).toEqual(Array.from(decoded!.data));
        expect(decoded!.dtype).toBe('float16');
        expect(b.labels[r]).toBe(i % 3);
        seen.add(i);
      }
    }
    expect(seen.size).toBe(N); // every sample once per epoch
  });

  it('train a head to bit-identical weights in memory and streamed', async () => {
    await fill(cache);
    const set = await loadFeatureSet(cache, FP, samples, SHAPE, selector);
    const train = async (source: BatchSource): Promise<Float32Array[]> => {
      const head = tf.sequential({
        layers: [tf.layers.flatten({ inputShape: SHAPE }), tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) })],
      });
      await fitEpochs(head, { source, valSet: undefined }, 2, undefined, 3, { epochs: 3, batchSize: 8, optimizer: 'adam', learningRate: 0.01, seed: 4 });
      const weights = head.getWeights().map((w) => w.dataSync() as Float32Array);
      head.dispose();
      return weights;
    };
    const m = await train(memoryBatches(set, 8, 4));
    const s = await train(streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 8, seed: 4, reuseBuffers: true })); // as train-head streams
    expect(s).toHaveLength(2);
    s.forEach((w, i) => expect(Buffer.from(w.buffer).equals(Buffer.from(m[i]!.buffer))).toBe(true));
    // The weights moved: the equality is not that of two untrained heads.
    expect(m[1]!.some((b) => b !== 0)).toBe(true);
  });

  it('a corrupt entry read while streaming is SPLITFIT_CACHE_CORRUPT naming the entry; the epoch stops there', async () => {
    await fill(cache);
    await cache.close();
    const key = featureKey({ augKey: augKey(AUG), generation: 2, sampleId: id(11), view: 1 });
    await tamper(key, (v) => {
      v[headerByteLength(3) + 5]! ^= 0x01;
      return v;
    });
    await cache.open();
    // Every view of every sample is read over a few epochs; the bad one surfaces when drawn.
    const stream = streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 8, seed: 0 });
    let err: SplitfitError | undefined;
    for (let epoch = 0; epoch < 20 && err === undefined; epoch++) {
      try {
        await collect(stream, epoch);
      } catch (e) {
        if (!isSplitfitError(e)) throw e;
        err = e;
      }
    }
    expect(err?.code).toBe('SPLITFIT_CACHE_CORRUPT');
    expect(err?.message).toContain('crc mismatch');
    expect(err?.message).toContain(key);
    // Loading into memory checks the same entry the same way.
    expect((await rejection(loadFeatureSet(cache, FP, samples, SHAPE, selector))).code).toBe('SPLITFIT_CACHE_CORRUPT');
  });

  it('a missing entry is SPLITFIT_CACHE_MISMATCH naming the sample; a wrong-sized one too', async () => {
    await fill(cache);
    await cache.close();
    await tamper(featureKey({ augKey: augKey(AUG), generation: 2, sampleId: id(4), view: 0 }), () => undefined);
    await cache.open();
    const one = { ...selector, views: 1 }; // view 0 only: the deleted entry is read in epoch 0
    const err = await rejection(collect(streamBatches(cache, FP, samples, SHAPE, one, { batchSize: 8, seed: 0 }), 0));
    expect(err.code).toBe('SPLITFIT_CACHE_MISMATCH');
    expect(err.message).toContain(`sample ${id(4)}, view 0, generation 2`);
    expect(err.message).toContain('cache-features');
    const load = await rejection(loadFeatureSet(cache, FP, samples, SHAPE, one));
    expect(load.code).toBe('SPLITFIT_CACHE_MISMATCH');
    expect(load.message).toContain(`holds ${N - 1} of ${N} feature entries`);
    const wrong = await rejection(collect(streamBatches(cache, FP, samples.slice(5), [PER + 1], { ...one }, { batchSize: 8, seed: 0 }), 0));
    expect(wrong.code).toBe('SPLITFIT_CACHE_MISMATCH');
    expect(wrong.message).toMatch(/holds 12 values \(\[2, 2, 3\]\), expected 13/);
  });

  it('an epoch left early waits for its read-ahead, so the cache closes cleanly', async () => {
    await fill(cache);
    const stream = streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 4, seed: 0, readAhead: 4 });
    let n = 0;
    for await (const b of stream.batches(0)) {
      n += b.labels.length;
      break;
    }
    expect(n).toBe(4);
    await cache.close();
    expect(cache.status).toBe('closed');
    expect(() => streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 4, seed: 0, readAhead: 0 })).toThrow(/readAhead must be a positive integer, received 0/);
  });

  it('readFeaturesInto checks its arguments: rows and slots must agree', async () => {
    await fill(cache);
    const out = new Float32Array(2 * PER);
    const rows = [{ sampleId: id(0), view: 2 }, { sampleId: id(1), view: 0 }];
    expect(await cache.readFeaturesInto(FP, rows, { aug: AUG, generation: 2 }, out)).toEqual([]);
    expect(Array.from(out)).toEqual([...values(0, 2), ...values(1, 0)]);
    expect(await cache.readFeaturesInto(FP, rows, { aug: AUG, generation: 3 }, out)).toEqual([0, 1]);
    await expect(cache.readFeaturesInto(FP, rows, { aug: AUG, generation: 2 }, new Float32Array(25))).rejects.toThrow(TypeError);
    await expect(cache.readFeaturesInto(FP, [{ sampleId: 'bad id', view: 0 }], undefined, new Float32Array(PER))).rejects.toThrow(TypeError);
    await expect(cache.readFeaturesInto(FP, [{ sampleId: id(0), view: -1 }], undefined, new Float32Array(PER))).rejects.toThrow(/view must be an integer/);
  });
});

describe('the pooled namespace of a streamed gap head', () => {
  const plain = { generation: 0, views: 1 };
  const POOLED = pooledNamespace(FP)!;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-pooled-'));
    cache = await FeatureCache.open(dir, { command: 'vitest streaming' });
    await cache.putFeatures(FP, samples.map((s, i) => ({ sampleId: s.id, data: values(i, 0), shape: SHAPE })), 'float32');
  });
  afterEach(async () => {
    await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  const expectSameAsPooledOnce = async (source: BatchSource, epochs: number, reference?: FeatureSet): Promise<void> => {
    const once = memoryBatches(reference ?? poolFeatureSet(await loadFeatureSet(cache, FP, samples, SHAPE, plain)), 8, 5);
    for (let epoch = 0; epoch < epochs; epoch++) {
      const m = await collect(once, epoch);
      const s = await collect(source, epoch);
      expect(s.map((b) => b.labels)).toEqual(m.map((b) => b.labels));
      s.forEach((b, i) => expect(Buffer.from(b.x.buffer).equals(Buffer.from(m[i]!.x.buffer))).toBe(true));
    }
  };

  it('gives the batches of a set pooled once in memory, bit for bit; made on first use, then read', async () => {
    const stream = streamBatches(cache, FP, samples, SHAPE, plain, { batchSize: 8, seed: 5 });
    const pooled = pooledBatches(stream, SHAPE);
    expect(pooled.mode).toBe('stream');
    expect(POOLED).toBe(`${FP}.gap`);
    expect(await cache.listFingerprints()).toEqual([FP]);
    await expectSameAsPooledOnce(pooled, 1);
    expect(await cache.listFingerprints()).toEqual([FP, POOLED]);
    expect(await cache.countEntries(POOLED)).toBe(N);
    expect((await cache.getFeatures(POOLED, id(3)))?.shape).toEqual([3]);
    await expectSameAsPooledOnce(pooled, 3); // epochs 1, 2 read the namespace
    expect((await cache.verify({ fingerprint: POOLED })).ok).toBe(true);
  });

  it('kill points: a namespace left half-made (some batches written, not others) is completed, the batches unchanged', async () => {
    // What a kill between two batch writes leaves: some whole entries, the rest absent.
    const half = samples.filter((_, i) => i % 2 === 0);
    const pooledHalf = poolRows(Float32Array.from(half.flatMap((s) => [...values(samples.indexOf(s), 0)])), SHAPE);
    await cache.putFeatures(POOLED, half.map((s, j) => ({ sampleId: s.id, data: pooledHalf.slice(j * 3, (j + 1) * 3), shape: [3] })), 'float32');
    expect(await cache.countEntries(POOLED)).toBe(half.length);
    await expectSameAsPooledOnce(pooledBatches(streamBatches(cache, FP, samples, SHAPE, plain, { batchSize: 8, seed: 5 }), SHAPE), 2);
    expect(await cache.countEntries(POOLED)).toBe(N);
  });

  it('a corrupt pooled entry is SPLITFIT_CACHE_CORRUPT, like any entry', async () => {
    const pooled = pooledBatches(streamBatches(cache, FP, samples, SHAPE, plain, { batchSize: 8, seed: 5 }), SHAPE);
    await collect(pooled, 0);
    await cache.close();
    const key = featureKey({ augKey: augKey(undefined), generation: 0, sampleId: id(9), view: 0 });
    const db = new Level<string, string>(dir);
    const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(POOLED), { valueEncoding: 'view' });
    const v = Uint8Array.from((await sub.get(key))!);
    v[v.length - 1]! ^= 0x40;
    await sub.put(key, v);
    await db.close();
    await cache.open();
    const err = await rejection(collect(pooled, 1));
    expect(err.code).toBe('SPLITFIT_CACHE_CORRUPT');
    expect(err.message).toContain(key);
  });

  it('loadPooledFeatureSet: the values of poolFeatureSet(loadFeatureSet), bit for bit; once made, it reads the namespace, not the maps', async () => {
    const once = poolFeatureSet(await loadFeatureSet(cache, FP, samples, SHAPE, plain));
    const first = await loadPooledFeatureSet(cache, FP, samples, SHAPE, plain);
    expect(first.featureShape).toEqual([3]);
    expect(first.ids).toEqual(once.ids);
    expect(Buffer.from(first.x.buffer).equals(Buffer.from(once.x.buffer))).toBe(true);
    expect(await cache.countEntries(POOLED)).toBe(N);
    // With a map gone, the maps no longer load; the pooled set still does, from its namespace.
    await cache.close();
    await tamper(featureKey({ augKey: augKey(undefined), generation: 0, sampleId: id(2), view: 0 }), () => undefined);
    await cache.open();
    expect((await rejection(loadFeatureSet(cache, FP, samples, SHAPE, plain))).code).toBe('SPLITFIT_CACHE_MISMATCH');
    const again = await loadPooledFeatureSet(cache, FP, samples, SHAPE, plain);
    expect(Buffer.from(again.x.buffer).equals(Buffer.from(once.x.buffer))).toBe(true);
    // A source loaded pooled only gives its batches pooled.
    const only = pooledOnlyBatches(again, 8, 5);
    expect(() => only.batches(0)).toThrow(/loaded pooled for a gap-first head/);
    await expectSameAsPooledOnce(pooledBatches(only, SHAPE), 2, once);
  });

  it('is not written in a read-only cache, nor used for augmented entries: those pool from the maps, same values', async () => {
    await cache.close();
    cache = await FeatureCache.open(dir, { readOnly: true, command: 'vitest streaming' });
    const stream = streamBatches(cache, FP, samples, SHAPE, plain, { batchSize: 8, seed: 5 });
    await expectSameAsPooledOnce(pooledBatches(stream, SHAPE), 2);
    expect(await cache.listFingerprints()).toEqual([FP]);
    expect((await loadPooledFeatureSet(cache, FP, samples, SHAPE, plain)).x).toEqual(poolFeatureSet(await loadFeatureSet(cache, FP, samples, SHAPE, plain)).x);
    expect(streamBatches(cache, FP, samples, SHAPE, selector, { batchSize: 8, seed: 5 }).pooled).toBeUndefined();
    expect(pooledNamespace(POOLED)).toBeUndefined();
    expect(pooledNamespace('b'.repeat(128))).toBeUndefined();
  });
});

// End to end: the job's two feature paths (a `gap` head: pooled once in memory, per batch streamed).
describe('trainHead streamed and in memory', () => {
  let root: string;
  let cachePath: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'splitfit-stream-job-'));
    const data = join(root, 'emoji');
    await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places'], perClass: 12, testFraction: 0 });
    const model = join(root, 'toy');
    await saveModel(residualToyModel(), model);
    cachePath = join(root, 'cache');
    await extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: join(data, 'train'), cache: cachePath });
  });

  it('gives bit-identical head weights and the same history with memoryBudget forcing streaming', async () => {
    const run = (out: string, memoryBudget?: number) =>
      trainHead({ cache: cachePath, out: join(root, out), epochs: 3, batchSize: 8, seed: 2, validationSplit: 0.25, learningRate: 0.01, ...(memoryBudget ? { memoryBudget } : {}) });
    const memory = await run('memory');
    const stream = await run('stream', 1); // bytes: even the pooled vectors exceed it
    expect(memory.mode).toBe('memory');
    expect(stream.mode).toBe('stream');
    expect(stream.history.loss).toEqual(memory.history.loss);
    expect(stream.history.valLoss).toEqual(memory.history.valLoss);
    const a = await readFile(join(root, 'memory', 'head', 'weights.bin'));
    const b = await readFile(join(root, 'stream', 'head', 'weights.bin'));
    expect(a.length).toBeGreaterThan(0);
    expect(a.equals(b)).toBe(true);
    // The streamed gap head read its pooled namespace, made on its first epoch.
    await using c = await FeatureCache.open(cachePath, { readOnly: true });
    expect(await c.listFingerprints()).toEqual([stream.fingerprint, pooledNamespace(stream.fingerprint)]);
    for (const r of [memory, stream]) {
      r.model.dispose();
      r.head.dispose();
    }
  });
});
