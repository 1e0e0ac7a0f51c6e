import type { FeatureCache } from '../cache/feature-cache.js';
import { openDataSource } from '../data/sources.js';
import type { DataSource } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { extractFeatures } from '../extract/extract.js';
import type { PreparedBase } from '../extract/prepare.js';
import type { RunMeta } from '../extract/run-meta.js';
import type { EntrySelector } from '../train/feature-set.js';
import type { Feed, Refresher } from '../train/fit.js';

/**
 * Augmentation refreshes. The rule that makes them reproducible: a run starts at the generation
 * `cache-features` cached (the run record's, never moved by training) and walks the generations after
 * it in order; generation g's pixels depend only on (seed, g, sample, view), so the same command and
 * seed train on the same views. Generations after the recorded one are scratch: each is deleted once
 * training has moved past it, and a crash's leftovers are reused (same pixels) or deleted by the next run.
 */
export interface RefreshContext {
  cache: FeatureCache;
  run: RunMeta;
  base: PreparedBase;
  every: number;
  /** The run's usable samples (training and validation split), reopened and checked against the run (`reopenRunData`). */
  data: DataSource;
  batchSize: number;
  selector(generation: number): EntrySelector;
  feed(generation: number): Promise<Feed>;
  signal?: AbortSignal | undefined;
  onExtract?: (generation: number, done: number, total: number) => void;
}

export function makeRefresher(c: RefreshContext): Refresher {
  return {
    every: c.every,
    extract: async (generation) => {
      const r = await extractFeatures({
        model: c.base.source,
        prepared: c.base,
        data: c.data,
        cache: c.cache,
        augment: c.run.augment!,
        views: c.run.views,
        generation,
        seed: c.run.seed,
        plainView0: c.run.plainView0,
        record: false,
        batchSize: c.batchSize,
        ...(c.signal ? { signal: c.signal } : {}),
        onProgress: (e) => {
          if (e.type === 'extract') c.onExtract?.(generation, e.done, e.total);
        },
      });
      return r.extractSeconds;
    },
    commit: async (generation) => {
      // Never train on a partial generation: every sample of the run must have all its views.
      const ids = c.data.samples.map((s) => s.id);
      const missing = await c.cache.missingSampleIds(c.run.fingerprint, ids, c.selector(generation));
      if (missing.length > 0) {
        throw new SplitfitError('SPLITFIT_CACHE_MISMATCH', `generation ${generation} lacks features for ${missing.length} of ${ids.length} samples; rerun train-head`);
      }
      if (generation - 1 > c.run.generation) await c.cache.deleteGeneration(c.run.fingerprint, c.run.augment!, generation - 1);
    },
    feed: c.feed,
  };
}

/** Deletes scratch generations (after the recorded one) left by an earlier or interrupted run. */
export async function dropScratchGenerations(cache: FeatureCache, run: RunMeta, upTo: number): Promise<void> {
  for (let g = run.generation + 1; g <= upTo; g++) await cache.deleteGeneration(run.fingerprint, run.augment!, g);
}

/**
 * The run's data set, reopened to extract new generations. Every sample the run trains on must still
 * be there with the same bytes: an edited or deleted image would otherwise give a generation with
 * fewer samples than the run.
 */
export async function reopenRunData(run: RunMeta, ids: ReadonlySet<string>): Promise<DataSource> {
  const source = await openDataSource(run.data, run.classNames ? { classNames: run.classNames } : {});
  const present = new Set(source.samples.map((s) => s.id));
  const gone = [...ids].filter((id) => !present.has(id));
  if (gone.length > 0) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `${gone.length} of ${ids.size} images of ${run.data} were edited or removed since cache-features, so new generations of views cannot be extracted for them; rerun \`splitfit cache-features\` on the data as it is now`,
    );
  }
  const seen = new Set<string>();
  return { ...source, samples: source.samples.filter((s) => ids.has(s.id) && !seen.has(s.id) && seen.add(s.id)) };
}
