import type { FeatureCache } from '../cache/feature-cache.js';
import { shortFingerprint } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';
import { CURRENT_RUN_KEY, type RunMeta, runKey } from '../extract/run-meta.js';
import type { LabeledId } from './validation.js';

/**
 * The run train-head trains on (the current one, or the one of `fingerprint`) and its samples that
 * have cached features (samples that failed to decode have none).
 */
export async function readTrainingRun(cache: FeatureCache, fingerprint: string | undefined): Promise<{ run: RunMeta; usable: LabeledId[] }> {
  const meta = await cache.getMeta<RunMeta>(fingerprint ? runKey(fingerprint) : CURRENT_RUN_KEY);
  if (!meta) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      fingerprint
        ? `the cache has no run with fingerprint ${fingerprint}; \`splitfit cache stats\` lists the cached fingerprints`
        : 'the cache holds no features recorded by `splitfit cache-features`; run that first with the same --cache',
    );
  }
  // Caches written before augmentation runs existed lack these fields.
  const run: RunMeta = { ...meta, views: meta.views ?? 1, generation: meta.generation ?? 0, seed: meta.seed ?? 0, plainView0: meta.plainView0 ?? false };
  if (run.labels.length < 2) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `training needs at least 2 classes; the cached data set ${run.data} has ${run.labels.length}`);
  const labeled = run.samples.filter((s) => s.label >= 0);
  const ids = [...new Set(labeled.map((s) => s.id))];
  const selector = { ...(run.augment === undefined ? {} : { aug: run.augment }), generation: run.generation, views: run.views };
  const missing = new Set(await cache.missingSampleIds(run.fingerprint, ids, selector));
  if (missing.size === ids.length) {
    throw new SplitfitError('SPLITFIT_CACHE_MISMATCH', `the cache has no feature entries for fingerprint ${shortFingerprint(run.fingerprint)}; rerun \`splitfit cache-features\``);
  }
  return { run, usable: labeled.filter((s) => !missing.has(s.id)) };
}
