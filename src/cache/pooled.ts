/**
 * The pooled namespace beside a fingerprint's maps: `<fingerprint>.gap` holds, under the same
 * keys, each [h, w, c] map's global average as a float32 [c] vector — what a `gap`-first head
 * reads, 1/(h·w) of the bytes. It is an ordinary registered namespace (CRC-checked values,
 * `cache verify` checks it, `cache gc` drops it as a namespace without a run and keeps its
 * entries by the runs of its maps, `extract/run-meta.ts` `runReferences`), and it is derived:
 * `extractFeatures` writes each batch's pooled vectors in the same atomic batch as its maps, and
 * entries still missing (a cache from before, entries `cache verify --repair` dropped) are made
 * lazily the first time a `gap`-first head needs them — streamed (`train/batches.ts`) or loaded
 * pooled by train-head with fixed settings (`train/feature-set.ts` `loadPooledFeatureSet`) —,
 * each batch or chunk in one atomic write. A kill leaves some entries made and the others
 * missing; missing ones are made again, so no commit record is needed.
 *
 * Only entries without augmentation are pooled: their value is fixed by the key (a content
 * hash under a fingerprint of the base), so a pooled entry can never go stale. Augmented
 * generations are re-extracted under reused numbers, so they are pooled per batch instead.
 */
import { assertFingerprint } from './keys.js';
import type { FeatureEntry } from './types.js';

/** Suffix of a pooled namespace's fingerprint. */
export const POOLED_SUFFIX = '.gap';

/** Longest fingerprint whose pooled namespace still fits the fingerprint syntax (128 characters). */
const MAX_POOLED_SOURCE = 128 - POOLED_SUFFIX.length;

/** The pooled namespace of `fingerprint`'s maps, or `undefined` when the name would not fit (or it is itself pooled). */
export function pooledNamespace(fingerprint: string): string | undefined {
  assertFingerprint(fingerprint);
  if (fingerprint.length > MAX_POOLED_SOURCE || isPooledNamespace(fingerprint)) return undefined;
  return fingerprint + POOLED_SUFFIX;
}

/** Whether a registered fingerprint is a pooled namespace (derived, re-made on demand). */
export function isPooledNamespace(fingerprint: string): boolean {
  return fingerprint.endsWith(POOLED_SUFFIX);
}

/**
 * Global average pooling of rows of [h, w, c] maps (row-major, as cached) into [c] vectors: the
 * values of the pooled namespace. It is what a head's leading `gap` layer computes, done once
 * instead of on every training step: pooling is
 * linear and has no weights, so a head trained on pooled rows gets the same gradients. Sums are
 * taken in float64, so the result is within float32 rounding of tfjs's own mean.
 */
export function poolRows(x: Float32Array, featureShape: readonly number[]): Float32Array {
  if (featureShape.length !== 3) throw new TypeError(`poolRows needs [h, w, c] features, got [${featureShape.join(', ')}]`);
  const [h, w, c] = featureShape as [number, number, number];
  const per = h * w * c;
  const rows = x.length / per;
  const out = new Float32Array(rows * c);
  const acc = new Float64Array(c);
  for (let r = 0; r < rows; r++) {
    acc.fill(0);
    const base = r * per;
    for (let p = 0; p < h * w; p++) {
      const at = base + p * c;
      for (let j = 0; j < c; j++) acc[j]! += x[at + j]!;
    }
    for (let j = 0; j < c; j++) out[r * c + j] = acc[j]! / (h * w);
  }
  return out;
}

/** Each [h, w, c] map entry's pooled vector, under the same key: the entries of the pooled namespace. */
export function pooledEntries(entries: readonly FeatureEntry[]): FeatureEntry[] {
  return entries.map((e) => ({ ...e, data: poolRows(e.data, e.shape), shape: [e.shape[2]!] }));
}
