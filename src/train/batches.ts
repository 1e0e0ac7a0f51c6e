import type { FeatureCache } from '../cache/feature-cache.js';
import { poolRows } from '../cache/pooled.js';
import { type EntrySelector, type FeatureSet, featureSize, gatherRows, gatherTargets, pooledStoreOf, readPooledInto, targetsOf } from './feature-set.js';
import { epochSeed, hashSeed, rng, shuffled } from '../random.js';
import { shortFingerprint } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';
import type { FeatureRow } from '../cache/types.js';

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
  /** The same batches with each [h, w, c] map pooled to [c], when the source can read them pooled (see {@link streamBatches}). */
  pooled?(): BatchSource;
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
  /** Position in the epoch. */
  index: number;
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
    plan.push({ index: plan.length, rows, views: rows.map((r) => viewFor(seed, epoch, ids[r]!, views)) });
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
        const targets = set.targets && gatherTargets(set.targets, set.ids.length, rows);
        yield { x: gatherRows(set, rows, views), labels: rows.map((r) => set.labels[r]!), views, ...(targets ? { targets } : {}) };
      }
    },
  };
}

export interface StreamOptions {
  batchSize: number;
  seed: number;
  /** Batches read ahead of the one training (each one LevelDB `getMany` on its thread pool). @default 2 */
  readAhead?: number;
  /**
   * Read map batches into a ring of `readAhead + 1` buffers instead of a fresh `Float32Array` each:
   * a batch's `x` is then overwritten once the batch after it has been taken. For consumers that
   * are done with a batch when they ask for the next (the training loop is); it spares the
   * allocation, page faults and GC of ~8 MB per batch of 7×7×1280 maps. @default false
   */
  reuseBuffers?: boolean;
}

/**
 * Streams features from LevelDB, so memory holds a few batches, not the data set. The batches are
 * those of {@link memoryBatches} for the same seed (same permutation, same views, the same float32
 * values), so a streamed head trains to the same weights. Each batch is one `getMany` decoded and
 * CRC-checked straight into one `Float32Array`; the next `readAhead` batches are read while the
 * head trains on this one (the loop yields to the event loop between steps).
 *
 * For [h, w, c] maps without augmentation, the source also offers `pooled()`: the same batches
 * pooled to [c], read from the pooled namespace (`cache/pooled.ts`) and made there on first use
 * (in a writable cache) — see {@link pooledBatches}.
 *
 * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` (from the cache) on an entry that fails its check;
 *   `SPLITFIT_CACHE_MISMATCH` when an entry the run lists is not cached.
 */
export function streamBatches(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number; y?: readonly number[] }[],
  featureShape: number[],
  selector: EntrySelector,
  options: StreamOptions,
): BatchSource {
  const per = featureSize(featureShape);
  const depth = options.readAhead ?? 2;
  if (!Number.isInteger(depth) || depth < 1) throw new TypeError(`readAhead must be a positive integer, received ${String(options.readAhead)}`);
  const ids = samples.map((s) => s.id);
  const range = { ...(selector.aug === undefined ? {} : { aug: selector.aug }), generation: selector.generation };
  const plan = (epoch: number): PlannedBatch[] => epochPlan(ids, selector.views, options.batchSize, options.seed, epoch);
  // Multilabel and regress: the samples' target vectors (`y`), gathered per batch like the labels.
  const targets = targetsOf(samples);
  const labelsOf = (rows: readonly number[]): Pick<Batch, 'labels' | 'targets'> => ({
    labels: rows.map((r) => samples[r]!.label),
    ...(targets === undefined ? {} : { targets: gatherTargets(targets, samples.length, rows) }),
  });
  const rowsOf = ({ rows, views }: PlannedBatch): FeatureRow[] => rows.map((r, i) => ({ sampleId: ids[r]!, view: views[i]! }));
  const lacking = (missing: readonly number[], wanted: readonly FeatureRow[]): SplitfitError => {
    const first = wanted[missing[0]!]!;
    return new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `the cache lacks ${missing.length} feature entr${missing.length === 1 ? 'y' : 'ies'} of a training batch (first: sample ${first.sampleId}, view ${first.view}, generation ${selector.generation}) ` +
        `of fingerprint ${shortFingerprint(fingerprint)}; rerun \`splitfit cache-features\``,
    );
  };
  const ring = options.reuseBuffers === true ? Array.from({ length: depth + 1 }, () => new Float32Array(options.batchSize * per)) : undefined;
  const readMaps = async (b: PlannedBatch): Promise<Batch> => {
    // A batch's index in its epoch picks its ring slot: when batch j is read, j - depth - 1 (same slot) has been taken and passed.
    const x = ring ? ring[b.index % ring.length]!.subarray(0, b.rows.length * per) : new Float32Array(b.rows.length * per);
    const wanted = rowsOf(b);
    const missing = await cache.readFeaturesInto(fingerprint, wanted, range, x);
    if (missing.length > 0) throw lacking(missing, wanted);
    return { x, ...labelsOf(b.rows), views: b.views };
  };
  const source = readAheadSource(samples.length, plan, readMaps, depth);

  const store = pooledStoreOf(cache, fingerprint, featureShape, selector.aug);
  if (store === undefined) return source;
  const c = featureShape[2]!;
  const readPooled = async (b: PlannedBatch): Promise<Batch> => {
    const x = new Float32Array(b.rows.length * c);
    const wanted = rowsOf(b);
    const missing = await readPooledInto(cache, fingerprint, store, wanted, range, featureShape, x);
    if (missing.length > 0) throw lacking(missing, wanted);
    return { x, ...labelsOf(b.rows), views: b.views };
  };
  return { ...source, pooled: () => readAheadSource(samples.length, plan, readPooled, depth) };
}

/**
 * A memory source of maps held only pooled (`loadPooledFeatureSet`, for a `gap`-first head):
 * {@link pooledBatches} gives its batches; the maps themselves were never loaded.
 */
export function pooledOnlyBatches(pooledSet: FeatureSet, batchSize: number, seed: number): BatchSource {
  const pooled = memoryBatches(pooledSet, batchSize, seed);
  return {
    size: pooled.size,
    mode: 'memory',
    batches() {
      throw new TypeError('these features were loaded pooled for a gap-first head: read them through pooledBatches()');
    },
    pooled: () => pooled,
  };
}

/** A streamed source: each epoch's planned batches read by `read`, `depth` of them ahead of the one yielded. */
function readAheadSource(size: number, plan: (epoch: number) => PlannedBatch[], read: (b: PlannedBatch) => Promise<Batch>, depth: number): BatchSource {
  return {
    size,
    mode: 'stream',
    async *batches(epoch) {
      const batches = plan(epoch);
      const inFlight: Promise<Batch>[] = [];
      let next = 0;
      const fill = (): void => {
        while (inFlight.length < depth && next < batches.length) {
          const p = read(batches[next++]!);
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

/**
 * Batches of `source` with each [h, w, c] map pooled to a [c] vector (see `poolRows`): same order,
 * same views, the same values as a set pooled once in memory. A streamed source that offers
 * `pooled()` reads them from its pooled namespace; others are pooled batch by batch.
 */
export function pooledBatches(source: BatchSource, featureShape: readonly number[]): BatchSource {
  if (source.pooled) return source.pooled();
  return {
    size: source.size,
    mode: source.mode,
    async *batches(epoch) {
      for await (const b of source.batches(epoch)) yield { ...b, x: poolRows(b.x, featureShape) };
    },
  };
}
