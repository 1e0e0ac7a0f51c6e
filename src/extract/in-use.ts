import type { FeatureCache } from '../cache/feature-cache.js';
import { isPooledNamespace, POOLED_SUFFIX } from '../cache/pooled.js';
import { isSplitfitError } from '../errors.js';
import { prepareBase } from './prepare.js';
import { listRuns, type RunMeta } from './run-meta.js';

/**
 * A cached fingerprint is in use when one of its runs' model still loads and still produces
 * that fingerprint; namespaces without a run, or whose model file changed or vanished, are
 * stale. A pooled namespace (`<fingerprint>.gap`, derived from the maps) follows its maps'
 * fingerprint. Lists the registry and the run records only: no feature value is read.
 */
export async function fingerprintsInUse(cache: FeatureCache): Promise<{ inUse: string[]; stale: { fingerprint: string; reason: string }[] }> {
  const { runs } = await listRuns(cache);
  const byFingerprint = new Map<string, RunMeta>();
  for (const r of runs) byFingerprint.set(r.fingerprint, r); // oldest first: the newest wins
  const inUse: string[] = [];
  const stale: { fingerprint: string; reason: string }[] = [];
  const registered = await cache.listFingerprints();
  for (const fingerprint of registered) {
    if (isPooledNamespace(fingerprint)) continue;
    const run = byFingerprint.get(fingerprint);
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
  for (const pooled of registered.filter(isPooledNamespace)) {
    const maps = pooled.slice(0, -POOLED_SUFFIX.length);
    if (inUse.includes(maps)) inUse.push(pooled);
    else stale.push({ fingerprint: pooled, reason: registered.includes(maps) ? 'pooled from stale features' : 'pooled from features no longer cached' });
  }
  return { inUse, stale };
}
