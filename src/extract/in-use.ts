import type { FeatureCache } from '../cache/feature-cache.js';
import { isSplitfitError } from '../errors.js';
import { prepareBase } from './prepare.js';
import { listRuns, type RunMeta } from './run-meta.js';

/**
 * A cached fingerprint is in use when one of its runs' model still loads and still produces
 * that fingerprint; namespaces without a run, or whose model file changed or vanished, are
 * stale. Lists the registry and the run records only: no feature value is read.
 */
export async function fingerprintsInUse(cache: FeatureCache): Promise<{ inUse: string[]; stale: { fingerprint: string; reason: string }[] }> {
  const { runs } = await listRuns(cache);
  const byFingerprint = new Map<string, RunMeta>();
  for (const r of runs) byFingerprint.set(r.fingerprint, r); // oldest first: the newest wins
  const inUse: string[] = [];
  const stale: { fingerprint: string; reason: string }[] = [];
  for (const fingerprint of await cache.listFingerprints()) {
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
  return { inUse, stale };
}
