import type { FeatureCache } from '../cache/feature-cache.js';
import { shortFingerprint } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';
import { readRun, type RunMeta, selectorOf } from '../extract/run-meta.js';
import type { LabeledId } from './validation.js';

/**
 * The run train-head trains on (the current one, or the one of `fingerprint`) and its samples that
 * have cached features (samples that failed to decode have none).
 */
export async function readTrainingRun(cache: FeatureCache, fingerprint: string | undefined): Promise<{ run: RunMeta; usable: LabeledId[] }> {
  const run = await readRun(cache, fingerprint === undefined ? {} : { fingerprint });
  // Classification needs two classes to tell apart; a multi-label or regression run needs one output.
  const task = run.task ?? 'classify';
  if (task === 'classify' && run.labels.length < 2) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `training needs at least 2 classes; the cached data set ${run.data} has ${run.labels.length}`);
  if (run.labels.length < 1) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `the cached ${task} data set ${run.data} names no ${task === 'regress' ? 'target' : 'label'}`);
  const labeled = run.samples.filter((s) => s.label >= 0);
  const ids = [...new Set(labeled.map((s) => s.id))];
  const missing = new Set(await cache.missingSampleIds(run.fingerprint, ids, selectorOf(run)));
  if (missing.size === ids.length) {
    throw new SplitfitError('SPLITFIT_CACHE_MISMATCH', `the cache has no feature entries for fingerprint ${shortFingerprint(run.fingerprint)}; rerun \`splitfit cache-features\``);
  }
  return { run, usable: labeled.filter((s) => !missing.has(s.id)) };
}
