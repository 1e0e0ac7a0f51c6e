import type { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError } from '../errors.js';

/** Labeled cached features held in memory: row i of `x` is sample `ids[i]`. */
export interface FeatureSet {
  ids: string[];
  labels: number[];
  x: Float32Array;
  featureShape: number[];
}

export function featureSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reads the features of `samples` (id → label) from the cache into memory, in the order given. */
export async function loadFeatureSet(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number }[],
  featureShape: number[],
): Promise<FeatureSet> {
  const per = featureSize(featureShape);
  const x = new Float32Array(samples.length * per);
  const position = new Map<string, number[]>();
  samples.forEach((s, i) => position.set(s.id, [...(position.get(s.id) ?? []), i]));
  let found = 0;
  for await (const chunk of cache.iterateFeatures(fingerprint, { batchSize: 1024 })) {
    for (const entry of chunk) {
      if (entry.view !== 0) continue;
      for (const i of position.get(entry.sampleId) ?? []) {
        x.set(entry.data, i * per);
        found++;
      }
    }
  }
  if (found !== samples.length) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `the cache holds features for ${found} of ${samples.length} samples of fingerprint ${fingerprint.slice(0, 12)}; rerun \`splitfit cache-features\``,
    );
  }
  return { ids: samples.map((s) => s.id), labels: samples.map((s) => s.label), x, featureShape };
}

/** Rows `rows` of a feature set as one contiguous batch. */
export function gatherRows(set: FeatureSet, rows: readonly number[]): Float32Array {
  const per = featureSize(set.featureShape);
  const out = new Float32Array(rows.length * per);
  rows.forEach((r, i) => out.set(set.x.subarray(r * per, (r + 1) * per), i * per));
  return out;
}
