/**
 * The pooled namespace beside a fingerprint's maps: `<fingerprint>.gap` holds, under the same
 * keys, each [h, w, c] map's global average as a float32 [c] vector — what a `gap`-first head
 * reads, 1/(h·w) of the bytes. It is an ordinary registered namespace (CRC-checked values,
 * `cache verify` checks it, `cache gc` drops it as a namespace without a run), and it is
 * derived: entries are made lazily the first time a `gap`-first head needs them — streamed
 * (`train/batches.ts`) or loaded pooled by train-head with fixed settings
 * (`train/feature-set.ts` `loadPooledFeatureSet`) —, each batch or chunk in one atomic write. A
 * kill leaves some entries made and the others missing; missing ones are made again, so no
 * commit record is needed.
 *
 * Only entries without augmentation are pooled: their value is fixed by the key (a content
 * hash under a fingerprint of the base), so a pooled entry can never go stale. Augmented
 * generations are re-extracted under reused numbers, so they are pooled per batch instead.
 */
import { assertFingerprint } from './keys.js';

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
