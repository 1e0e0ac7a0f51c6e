import type { FeatureCache } from '../cache/feature-cache.js';
import { type EntrySelector, type FeatureSet, featureSize, gatherRows, gatherTargets, poolRows } from './feature-set.js';
import { epochSeed, hashSeed, rng, shuffled } from '../random.js';

export interface Batch {
  x: Float32Array;
  labels: number[];
  /** The view each row came from. */
  views: number[];
  /** Multilabel and regress: the rows' targets, k per row (see `FeatureSet.targets`). */
  targets?: Float32Array;
}

/** Where an epoch's training batches come from. */
export interface BatchSource {
  readonly size: number;
  readonly mode: 'memory' | 'stream';
  batches(epoch: number): AsyncIterable<Batch>;
}

/**
 * The view of a sample trained on in an epoch: a seeded draw, the same in memory and
 * streaming modes (it depends on the sample id, not on its position).
 */
export function viewFor(seed: number, epoch: number, sampleId: string, views: number): number {
  if (views === 1) return 0;
  return hashSeed(sampleId, epochSeed(seed, epoch) ^ 0x811c9dc5) % views;
}

/** All features in memory; a fresh seeded permutation (and view draw) each epoch. */
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
        const views = rows.map((r) => viewFor(seed, epoch, set.ids[r]!, set.views));
        const targets = set.targets && gatherTargets(set.targets, set.ids.length, rows);
        yield { x: gatherRows(set, rows, views), labels: rows.map((r) => set.labels[r]!), views, ...(targets ? { targets } : {}) };
      }
    },
  };
}

export interface StreamOptions {
  batchSize: number;
  seed: number;
  /** Entries read per `iterator.nextv` call and shuffled together. @default 512 */
  window?: number;
  /** Multilabel and regress: each training sample's target vector (see `Batch.targets`). */
  targets?: ReadonlyMap<string, readonly number[]>;
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
  selector: EntrySelector,
  options: StreamOptions,
): BatchSource {
  const per = featureSize(featureShape);
  const window = options.window ?? 512;
  const range = { ...(selector.aug === undefined ? {} : { aug: selector.aug }), generation: selector.generation, batchSize: window };
  return {
    size: train.size,
    mode: 'stream',
    async *batches(epoch) {
      const random = rng(epochSeed(options.seed, epoch));
      let pending: { data: Float32Array; label: number; view: number; id: string }[] = [];
      const targetsOf = (take: typeof pending): { targets?: Float32Array } => {
        if (!options.targets) return {};
        const rows = take.map((t) => options.targets!.get(t.id)!);
        const k = rows[0]?.length ?? 0;
        const targets = new Float32Array(rows.length * k);
        rows.forEach((r, i) => targets.set(r, i * k));
        return { targets };
      };
      const flush = function* (all: boolean): Generator<Batch> {
        while (pending.length >= options.batchSize || (all && pending.length > 0)) {
          const take = pending.slice(0, options.batchSize);
          pending = pending.slice(options.batchSize);
          const x = new Float32Array(take.length * per);
          take.forEach((t, i) => x.set(t.data, i * per));
          yield { x, labels: take.map((t) => t.label), views: take.map((t) => t.view), ...targetsOf(take) };
        }
      };
      // Read one window ahead: LevelDB fetches the next window on its thread while the head
      // trains on this one (the training loop yields to the event loop between steps).
      const chunks = cache.iterateFeatures(fingerprint, range)[Symbol.asyncIterator]();
      let ahead = chunks.next();
      for (let r = await ahead; !r.done; r = await ahead) {
        ahead = chunks.next();
        const rows = r.value
          .filter((e) => train.has(e.sampleId) && e.view === viewFor(options.seed, epoch, e.sampleId, selector.views))
          .map((e) => ({ data: e.data, label: train.get(e.sampleId)!, view: e.view, id: e.sampleId }));
        pending.push(...shuffled(rows, random));
        yield* flush(false);
      }
      yield* flush(true);
    },
  };
}

/** Batches of `source` with each [h, w, c] map pooled to a [c] vector (see `poolRows`): same order, same views. */
export function pooledBatches(source: BatchSource, featureShape: readonly number[]): BatchSource {
  return {
    size: source.size,
    mode: source.mode,
    async *batches(epoch) {
      for await (const b of source.batches(epoch)) yield { ...b, x: poolRows(b.x, featureShape) };
    },
  };
}
