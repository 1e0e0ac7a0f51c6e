import type { FeatureCache } from '../cache/feature-cache.js';
import { type EntrySelector, type FeatureSet, featureSize, gatherRows, poolRows } from './feature-set.js';
import { epochSeed, hashSeed, rng, shuffled } from '../random.js';
import { shortFingerprint } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';

export interface Batch {
  x: Float32Array;
  labels: number[];
  /** The view each row came from. */
  views: number[];
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

/** The rows (sample indices) and views of one batch of an epoch. */
interface PlannedBatch {
  rows: number[];
  views: number[];
}

/**
 * An epoch's batches: a fresh seeded permutation of the samples and a view draw per sample. The
 * one order both sources follow, so memory and streaming give the same batches for the same seed.
 */
function epochPlan(ids: readonly string[], views: number, batchSize: number, seed: number, epoch: number): PlannedBatch[] {
  const order = shuffled(
    ids.map((_, i) => i),
    rng(epochSeed(seed, epoch)),
  );
  const plan: PlannedBatch[] = [];
  for (let i = 0; i < order.length; i += batchSize) {
    const rows = order.slice(i, i + batchSize);
    plan.push({ rows, views: rows.map((r) => viewFor(seed, epoch, ids[r]!, views)) });
  }
  return plan;
}

/** All features in memory; a fresh seeded permutation (and view draw) each epoch. */
export function memoryBatches(set: FeatureSet, batchSize: number, seed: number): BatchSource {
  return {
    size: set.ids.length,
    mode: 'memory',
    async *batches(epoch) {
      for (const { rows, views } of epochPlan(set.ids, set.views, batchSize, seed, epoch)) {
        yield { x: gatherRows(set, rows, views), labels: rows.map((r) => set.labels[r]!), views };
      }
    },
  };
}

export interface StreamOptions {
  batchSize: number;
  seed: number;
  /** Batches read ahead of the one training (each one LevelDB `getMany` on its thread pool). @default 2 */
  readAhead?: number;
}

/**
 * Streams features from LevelDB, so memory holds a few batches, not the data set. The batches are
 * those of {@link memoryBatches} for the same seed (same permutation, same views, the same float32
 * values), so a streamed head trains to the same weights. Each batch is one `getMany` decoded and
 * CRC-checked straight into one `Float32Array`; the next `readAhead` batches are read while the
 * head trains on this one (the loop yields to the event loop between steps).
 *
 * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` (from the cache) on an entry that fails its check;
 *   `SPLITFIT_CACHE_MISMATCH` when an entry the run lists is not cached.
 */
export function streamBatches(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number }[],
  featureShape: number[],
  selector: EntrySelector,
  options: StreamOptions,
): BatchSource {
  const per = featureSize(featureShape);
  const depth = options.readAhead ?? 2;
  if (!Number.isInteger(depth) || depth < 1) throw new TypeError(`readAhead must be a positive integer, received ${String(options.readAhead)}`);
  const ids = samples.map((s) => s.id);
  const range = { ...(selector.aug === undefined ? {} : { aug: selector.aug }), generation: selector.generation };
  const read = async ({ rows, views }: PlannedBatch): Promise<Batch> => {
    const x = new Float32Array(rows.length * per);
    const missing = await cache.readFeaturesInto(fingerprint, rows.map((r, i) => ({ sampleId: ids[r]!, view: views[i]! })), range, x);
    if (missing.length > 0) {
      const i = missing[0]!;
      throw new SplitfitError(
        'SPLITFIT_CACHE_MISMATCH',
        `the cache lacks ${missing.length} feature entr${missing.length === 1 ? 'y' : 'ies'} of a training batch (first: sample ${ids[rows[i]!]}, view ${views[i]}, generation ${selector.generation}) ` +
          `of fingerprint ${shortFingerprint(fingerprint)}; rerun \`splitfit cache-features\``,
      );
    }
    return { x, labels: rows.map((r) => samples[r]!.label), views };
  };
  return {
    size: samples.length,
    mode: 'stream',
    async *batches(epoch) {
      const plan = epochPlan(ids, selector.views, options.batchSize, options.seed, epoch);
      const inFlight: Promise<Batch>[] = [];
      let next = 0;
      const fill = (): void => {
        while (inFlight.length < depth && next < plan.length) {
          const p = read(plan[next++]!);
          p.catch(() => undefined); // awaited in order below; a batch never reached must not be an unhandled rejection
          inFlight.push(p);
        }
      };
      try {
        fill();
        while (inFlight.length > 0) {
          const batch = await inFlight.shift()!;
          fill();
          yield batch;
        }
      } finally {
        // An epoch left early (an error, early stopping) must not leave reads running into a cache close.
        await Promise.allSettled(inFlight);
      }
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
