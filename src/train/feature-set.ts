import type { FeatureCache } from '../cache/feature-cache.js';
import { shortFingerprint } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';

/** Which cached entries: an augmentation (canonical spec), a generation, and views per sample. */
export interface EntrySelector {
  aug?: string;
  generation: number;
  views: number;
}

export const PLAIN: EntrySelector = { generation: 0, views: 1 };

/** Labeled cached features held in memory: sample i, view v is row `i * views + v` of `x`. */
export interface FeatureSet {
  ids: string[];
  labels: number[];
  x: Float32Array;
  featureShape: number[];
  views: number;
}

export function featureSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reads every view of `samples` (id → label) from the cache into memory, in the order given. */
export async function loadFeatureSet(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number }[],
  featureShape: number[],
  selector: EntrySelector = PLAIN,
): Promise<FeatureSet> {
  const per = featureSize(featureShape);
  const k = selector.views;
  const x = new Float32Array(samples.length * k * per);
  const position = new Map<string, number[]>();
  samples.forEach((s, i) => position.set(s.id, [...(position.get(s.id) ?? []), i]));
  let found = 0;
  const range = { ...(selector.aug === undefined ? {} : { aug: selector.aug }), generation: selector.generation, batchSize: 1024 };
  for await (const chunk of cache.iterateFeatures(fingerprint, range)) {
    for (const entry of chunk) {
      if (entry.view >= k) continue;
      for (const i of position.get(entry.sampleId) ?? []) {
        x.set(entry.data, (i * k + entry.view) * per);
        found++;
      }
    }
  }
  if (found !== samples.length * k) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `the cache holds ${found} of ${samples.length * k} feature entries (${k} view(s) × ${samples.length} samples, generation ${selector.generation}) of fingerprint ${shortFingerprint(fingerprint)}; rerun \`splitfit cache-features\``,
    );
  }
  return { ids: samples.map((s) => s.id), labels: samples.map((s) => s.label), x, featureShape, views: k };
}

/** The given (row, view) pairs of a feature set as one contiguous batch. */
export function gatherRows(set: FeatureSet, rows: readonly number[], views?: readonly number[]): Float32Array {
  const per = featureSize(set.featureShape);
  const out = new Float32Array(rows.length * per);
  rows.forEach((r, i) => {
    const at = r * set.views + (views?.[i] ?? 0);
    out.set(set.x.subarray(at * per, (at + 1) * per), i * per);
  });
  return out;
}
