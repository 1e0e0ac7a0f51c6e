import type { FeatureCache } from '../cache/feature-cache.js';
import { isSplitfitError } from '../errors.js';
import { prepareBase } from './prepare.js';
import { type RunMeta, runKey } from './run-meta.js';

/**
 * A cached fingerprint is in use when its run's model still loads and still produces that
 * fingerprint; namespaces without a run, or whose model file changed or vanished, are stale.
 */
export async function fingerprintsInUse(cache: FeatureCache): Promise<{ inUse: string[]; stale: { fingerprint: string; reason: string }[] }> {
  const stats = await cache.stats();
  const inUse: string[] = [];
  const stale: { fingerprint: string; reason: string }[] = [];
  for (const { fingerprint } of stats.fingerprints) {
    const run = await cache.getMeta<RunMeta>(runKey(fingerprint));
    if (!run) {
      stale.push({ fingerprint, reason: 'no cache-features run recorded for it' });
      continue;
    }
    try {
      const base = await prepareBase({ model: run.model, boundary: run.boundary, inputSize: run.inputSize, preprocess: run.preprocess, dtype: run.dtype });
      if (base.fingerprint === fingerprint) inUse.push(fingerprint);
      else stale.push({ fingerprint, reason: `model ${run.model} changed since it was cached` });
    } catch (err) {
      if (!isSplitfitError(err)) throw err;
      stale.push({ fingerprint, reason: `model ${run.model} no longer loads (${err.code})` });
    }
  }
  return { inUse, stale };
}
