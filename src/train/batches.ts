import type { FeatureCache } from '../cache/feature-cache.js';
import { type FeatureSet, featureSize, gatherRows } from './feature-set.js';
import { epochSeed, rng, shuffled } from './rng.js';

export interface Batch {
  x: Float32Array;
  labels: number[];
}

/** Where an epoch's training batches come from. */
export interface BatchSource {
  readonly size: number;
  readonly mode: 'memory' | 'stream';
  batches(epoch: number): AsyncIterable<Batch>;
}

/** All features in memory; a fresh seeded permutation each epoch. */
export function memoryBatches(set: FeatureSet, batchSize: number, seed: number): BatchSource {
  return {
    size: set.ids.length,
    mode: 'memory',
    async *batches(epoch) {
      const order = shuffled(
        set.ids.map((_, i) => i),
        rng(epochSeed(seed, epoch)),
      );
      for (let i = 0; i < order.length; i += batchSize) {
        const rows = order.slice(i, i + batchSize);
        yield { x: gatherRows(set, rows), labels: rows.map((r) => set.labels[r]!) };
      }
    },
  };
}

export interface StreamOptions {
  batchSize: number;
  seed: number;
  /** Entries read per `iterator.nextv` call and shuffled together. @default 4096 */
  window?: number;
}

/**
 * Streams features from LevelDB with `iterator.nextv`, so memory holds one window, not the
 * data set. Each window is shuffled with the epoch's seed; windows come in key order, which
 * is content-hash order and so unrelated to class or file order.
 */
export function streamBatches(
  cache: FeatureCache,
  fingerprint: string,
  train: ReadonlyMap<string, number>,
  featureShape: number[],
  options: StreamOptions,
): BatchSource {
  const per = featureSize(featureShape);
  const window = options.window ?? 4096;
  return {
    size: train.size,
    mode: 'stream',
    async *batches(epoch) {
      const random = rng(epochSeed(options.seed, epoch));
      let pending: { data: Float32Array; label: number }[] = [];
      const flush = function* (all: boolean): Generator<Batch> {
        while (pending.length >= options.batchSize || (all && pending.length > 0)) {
          const take = pending.slice(0, options.batchSize);
          pending = pending.slice(options.batchSize);
          const x = new Float32Array(take.length * per);
          take.forEach((t, i) => x.set(t.data, i * per));
          yield { x, labels: take.map((t) => t.label) };
        }
      };
      for await (const chunk of cache.iterateFeatures(fingerprint, { batchSize: window })) {
        const rows = chunk.filter((e) => e.view === 0 && train.has(e.sampleId)).map((e) => ({ data: e.data, label: train.get(e.sampleId)! }));
        pending.push(...shuffled(rows, random));
        yield* flush(false);
      }
      yield* flush(true);
    },
  };
}
