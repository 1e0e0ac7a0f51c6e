/**
 * Argument checks of `FeatureCache` at its boundary (abstract-level's habit: the public method
 * validates once, the private one does the I/O). Programmer mistakes throw `TypeError`.
 */
import { assertFingerprint, assertIndex, assertSampleId, augKey, META_KEYS, shortFingerprint } from './keys.js';
import type { FeatureCacheOptions, FeatureSelector, FingerprintReferences, SampleEntry, SampleRecord } from './types.js';

const RESERVED_META_KEYS: ReadonlySet<string> = new Set(Object.values(META_KEYS));

export function validateOptions(options: FeatureCacheOptions | undefined): Required<FeatureCacheOptions> {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new TypeError(`FeatureCache options must be an object, received ${options === null ? 'null' : typeof options}`);
  }
  const merged = { createIfMissing: true, readOnly: false, command: process.argv.slice(1).join(' '), ...options };
  for (const name of ['createIfMissing', 'readOnly'] as const) {
    if (typeof merged[name] !== 'boolean') {
      throw new TypeError(`FeatureCache option \`${name}\` must be a boolean, received ${typeof merged[name]}`);
    }
  }
  if (typeof merged.command !== 'string') {
    throw new TypeError(`FeatureCache option \`command\` must be a string, received ${typeof merged.command}`);
  }
  if (merged.readOnly && merged.createIfMissing && options?.createIfMissing === true) {
    throw new TypeError('FeatureCache options `readOnly` and `createIfMissing: true` conflict: a read-only cache cannot create one');
  }
  // A read-only open never creates a cache, unless asked to (rejected above).
  if (merged.readOnly) merged.createIfMissing = false;
  return merged;
}

/** A selector with its defaults applied and its aug spec hashed to the key part. */
export function resolveSelector(selector: FeatureSelector | undefined): { aug: string; generation: number; view: number } {
  const { aug, generation = 0, view = 0 } = selector ?? {};
  assertIndex('generation', generation);
  assertIndex('view', view);
  return { aug: augKey(aug), generation, view };
}

export function validateSampleEntries(entries: readonly SampleEntry[]): void {
  if (!Array.isArray(entries)) throw new TypeError(`samples must be an array, received ${typeof entries}`);
  for (const e of entries) {
    assertSampleId(e.id);
    if (typeof e.source !== 'string') throw new TypeError(`sample ${e.id}: source must be a string, received ${typeof e.source}`);
    if (e.label !== undefined && typeof e.label !== 'string' && typeof e.label !== 'number') {
      throw new TypeError(`sample ${e.id}: label must be a string or a number, received ${typeof e.label}`);
    }
  }
}

export function sampleRecord(e: SampleEntry): SampleRecord {
  return e.label === undefined ? { source: e.source } : { label: e.label, source: e.source };
}

export function validateReferences(
  references: ReadonlyMap<string, FingerprintReferences> | undefined,
  op: 'stats' | 'gc',
): ReadonlyMap<string, FingerprintReferences> | undefined {
  if (references === undefined) return undefined;
  if (!(references instanceof Map)) throw new TypeError(`${op} option \`references\` must be a Map of fingerprint → references, received ${typeof references}`);
  for (const [fp, r] of references) {
    assertFingerprint(fp);
    if (!(r?.samples instanceof Set) || !Array.isArray(r.committed)) {
      throw new TypeError(`${op} option \`references\` of ${shortFingerprint(fp)} must be {samples: Set, committed: [{aug?, generation}]}`);
    }
    for (const c of r.committed) assertIndex('generation', c.generation);
  }
  return references;
}

export function assertMetaKey(key: string, forWrite: boolean): void {
  if (typeof key !== 'string' || key === '') throw new TypeError(`meta key must be a non-empty string, received ${JSON.stringify(key)}`);
  if (forWrite && RESERVED_META_KEYS.has(key)) {
    throw new TypeError(`meta key "${key}" is owned by the cache; reserved keys: ${[...RESERVED_META_KEYS].join(', ')}`);
  }
}
