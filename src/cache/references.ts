/**
 * What an entry is to the runs that reference it — one rule shared by `stats` (which counts
 * each kind apart) and `gc` (which drops the `orphaned` and `superseded` ones).
 */
import { augKey, type FeatureKeyParts } from './keys.js';
import type { FingerprintReferences } from './types.js';

/**
 * - `committed`: a referenced sample in a generation a run reads.
 * - `incomplete`: a referenced sample in a later generation of an augmentation a run reads — a
 *   refresh cut short; train-head resumes or deletes it, gc keeps it.
 * - `superseded`: a referenced sample in an augmentation no run reads, or in a generation older
 *   than every one a run of that augmentation reads (a refresh's old one left by a kill).
 * - `orphaned`: a sample no run of this fingerprint references.
 */
export type EntryStatus = 'committed' | 'incomplete' | 'superseded' | 'orphaned';

/** The classifier of one fingerprint's entries, given what its runs reference (none: `undefined`). */
export function entryClassifier(refs: FingerprintReferences | undefined): (parts: FeatureKeyParts) => EntryStatus {
  const committed = new Map<string, Set<number>>();
  for (const c of refs?.committed ?? []) {
    const key = augKey(c.aug);
    committed.set(key, (committed.get(key) ?? new Set()).add(c.generation));
  }
  const oldest = new Map([...committed].map(([key, gens]) => [key, Math.min(...gens)]));
  return (parts) => {
    if (refs === undefined || !refs.samples.has(parts.sampleId)) return 'orphaned';
    const gens = committed.get(parts.augKey);
    if (gens === undefined) return 'superseded';
    if (gens.has(parts.generation)) return 'committed';
    return parts.generation > oldest.get(parts.augKey)! ? 'incomplete' : 'superseded';
  };
}
