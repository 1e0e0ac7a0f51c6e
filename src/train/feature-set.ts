import type { FeatureCache } from '../cache/feature-cache.js';
import type { EntrySelector } from '../cache/types.js';
import { shortFingerprint } from '../cache/keys.js';
import { isSplitfitError, SplitfitError } from '../errors.js';
import { pooledNamespace, poolRows } from '../cache/pooled.js';
import type { FeatureRow, RowsSelector } from '../cache/types.js';

export type { EntrySelector } from '../cache/types.js';

export const PLAIN: EntrySelector = { generation: 0, views: 1 };

/** Labeled cached features held in memory: sample i, view v is row `i * views + v` of `x`. */
export interface FeatureSet {
  ids: string[];
  labels: number[];
  x: Float32Array;
  featureShape: number[];
  views: number;
  /**
   * Multilabel and regress: the target of sample i in row i (k values: 0/1 per label, or the values the
   * head trains on, standardised by the job). Absent for classification, whose target is `labels`.
   */
  targets?: Float32Array;
}

/** The row-major [n × k] targets of samples that carry a target vector `y`; undefined when none does (classification). */
export function targetsOf(samples: readonly { y?: readonly number[] }[]): Float32Array | undefined {
  const k = samples[0]?.y?.length;
  if (k === undefined) return undefined;
  const out = new Float32Array(samples.length * k);
  samples.forEach((s, i) => {
    if (s.y?.length !== k) throw new TypeError(`sample ${i} has ${s.y?.length ?? 'no'} target values, the first has ${k}`);
    out.set(s.y, i * k);
  });
  return out;
}

/** The targets of `rows`, in that order (k per row). */
export function gatherTargets(targets: Float32Array, n: number, rows: readonly number[]): Float32Array {
  const k = targets.length / n;
  const out = new Float32Array(rows.length * k);
  rows.forEach((r, i) => out.set(targets.subarray(r * k, (r + 1) * k), i * k));
  return out;
}

export function featureSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Entries per `readFeaturesInto` call while loading a set (~64 MB of 7×7×1280 maps). */
const LOAD_CHUNK = 256;

/**
 * Reads every view of `samples` (id → label) from the cache into memory, in the order given:
 * sample i, view v is read (CRC-checked) straight into row `i * views + v`, one `getMany` per
 * chunk, the next chunk read while this one is checked.
 */
export async function loadFeatureSet(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number; y?: readonly number[] }[],
  featureShape: number[],
  selector: EntrySelector = PLAIN,
): Promise<FeatureSet> {
  const per = featureSize(featureShape);
  const x = new Float32Array(samples.length * selector.views * per);
  const range = rangeOf(selector);
  await loadRows(fingerprint, samples, selector, (rows, start, end) => cache.readFeaturesInto(fingerprint, rows, range, x.subarray(start * per, end * per)));
  return setOf(samples, x, featureShape, selector.views);
}

/**
 * {@link loadFeatureSet} for a `gap`-first head: every [h, w, c] map pooled to [c] (the values of
 * `poolFeatureSet(loadFeatureSet(…))`, bit for bit) without ever holding the maps — read from the
 * pooled namespace where it has them, else pooled chunk by chunk and written there (see
 * {@link readPooledInto}).
 */
export async function loadPooledFeatureSet(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number; y?: readonly number[] }[],
  featureShape: number[],
  selector: EntrySelector = PLAIN,
): Promise<FeatureSet> {
  const c = pooledChannels(featureShape);
  const x = new Float32Array(samples.length * selector.views * c);
  const store = pooledStoreOf(cache, fingerprint, featureShape, selector.aug);
  const range = rangeOf(selector);
  await loadRows(fingerprint, samples, selector, (rows, start, end) => readPooledInto(cache, fingerprint, store, rows, range, featureShape, x.subarray(start * c, end * c)));
  return setOf(samples, x, [c], selector.views);
}

/** Where pooled entries of a fingerprint's maps are read and written; `writable` turns off after a failed write. */
export interface PooledStore {
  fingerprint: string;
  writable: boolean;
}

/** The pooled namespace for these maps, when there is one (maps [h, w, c] without augmentation, see `cache/pooled.ts`). */
export function pooledStoreOf(cache: FeatureCache, fingerprint: string, featureShape: readonly number[], aug: string | undefined): PooledStore | undefined {
  const namespace = featureShape.length === 3 && aug === undefined ? pooledNamespace(fingerprint) : undefined;
  return namespace === undefined ? undefined : { fingerprint: namespace, writable: !cache.isReadOnly };
}

/**
 * Reads `rows` pooled into `out` ([c] per row): from the pooled `store` where it has them; the
 * others' maps are read, pooled (`poolRows`) and — the store writable — written to it in one
 * atomic batch, so a kill leaves whole entries or none and a missing one is simply made again.
 * A failed write (a full disk) only costs speed: the rows are already pooled, so it is not fatal.
 *
 * @returns the indices of the rows whose maps are not cached.
 */
export async function readPooledInto(
  cache: FeatureCache,
  fingerprint: string,
  store: PooledStore | undefined,
  rows: readonly FeatureRow[],
  range: RowsSelector,
  featureShape: readonly number[],
  out: Float32Array,
): Promise<number[]> {
  const c = pooledChannels(featureShape);
  const need = store === undefined ? rows.map((_, i) => i) : await cache.readFeaturesInto(store.fingerprint, rows, range, out);
  if (need.length === 0) return [];
  const wanted = need.map((i) => rows[i]!);
  const maps = new Float32Array(wanted.length * featureSize(featureShape));
  const absent = await cache.readFeaturesInto(fingerprint, wanted, range, maps);
  if (absent.length > 0) return absent.map((j) => need[j]!);
  const pooled = poolRows(maps, featureShape);
  need.forEach((i, j) => out.set(pooled.subarray(j * c, (j + 1) * c), i * c));
  if (store?.writable) {
    const entries = wanted.map((r, j) => ({ sampleId: r.sampleId, view: r.view, generation: range.generation ?? 0, data: pooled.slice(j * c, (j + 1) * c), shape: [c] }));
    await cache.putFeatures(store.fingerprint, entries, 'float32').catch((err: unknown) => {
      if (!isSplitfitError(err)) throw err;
      store.writable = false;
    });
  }
  return [];
}

function pooledChannels(featureShape: readonly number[]): number {
  if (featureShape.length !== 3) throw new TypeError(`pooling needs [h, w, c] features, got [${featureShape.join(', ')}]`);
  return featureShape[2]!;
}

function rangeOf(selector: EntrySelector): RowsSelector {
  return { ...(selector.aug === undefined ? {} : { aug: selector.aug }), generation: selector.generation };
}

/**
 * Reads the `samples.length × views` rows (sample i, view v at row `i * views + v`) in chunks, one
 * `read(rows, start, end)` each, the next chunk's read started while this one is checked.
 * @throws SplitfitError `SPLITFIT_CACHE_MISMATCH` when entries are missing, with how many.
 */
async function loadRows(
  fingerprint: string,
  samples: readonly { id: string }[],
  selector: EntrySelector,
  read: (rows: FeatureRow[], start: number, end: number) => Promise<number[]>,
): Promise<void> {
  const k = selector.views;
  const total = samples.length * k;
  const chunk = (start: number): Promise<number[]> => {
    const end = Math.min(total, start + LOAD_CHUNK);
    const rows = Array.from({ length: end - start }, (_, j) => ({ sampleId: samples[Math.floor((start + j) / k)]!.id, view: (start + j) % k }));
    return read(rows, start, end);
  };
  let missing = 0;
  let pending = total > 0 ? chunk(0) : undefined;
  for (let start = 0; pending !== undefined; start += LOAD_CHUNK) {
    const current = pending;
    pending = start + LOAD_CHUNK < total ? chunk(start + LOAD_CHUNK) : undefined;
    pending?.catch(() => undefined); // awaited next round; an earlier failure must not leave it unhandled
    try {
      missing += (await current).length;
    } catch (err) {
      await pending?.catch(() => undefined);
      throw err;
    }
  }
  if (missing > 0) {
    throw new SplitfitError(
      'SPLITFIT_CACHE_MISMATCH',
      `the cache holds ${total - missing} of ${total} feature entries (${k} view(s) × ${samples.length} samples, generation ${selector.generation}) of fingerprint ${shortFingerprint(fingerprint)}; rerun \`splitfit cache-features\``,
    );
  }
}

/** A feature set of `samples` over `x`, with their targets when they carry any (multilabel, regress). */
function setOf(samples: readonly { id: string; label: number; y?: readonly number[] }[], x: Float32Array, featureShape: number[], views: number): FeatureSet {
  const targets = targetsOf(samples);
  return { ids: samples.map((s) => s.id), labels: samples.map((s) => s.label), x, featureShape, views, ...(targets === undefined ? {} : { targets }) };
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

/** The set with every view's map pooled to a vector (see `poolRows`). */
export function poolFeatureSet(set: FeatureSet): FeatureSet {
  return { ...set, x: poolRows(set.x, set.featureShape), featureShape: [set.featureShape[2]!] };
}

/** The samples at `rows` (all their views), in that order, as a feature set of their own. */
export function subsetFeatureSet(set: FeatureSet, rows: readonly number[]): FeatureSet {
  const per = featureSize(set.featureShape) * set.views;
  const x = new Float32Array(rows.length * per);
  rows.forEach((r, i) => x.set(set.x.subarray(r * per, (r + 1) * per), i * per));
  return {
    ids: rows.map((r) => set.ids[r]!),
    labels: rows.map((r) => set.labels[r]!),
    x,
    featureShape: set.featureShape,
    views: set.views,
    ...(set.targets === undefined ? {} : { targets: gatherTargets(set.targets, set.ids.length, rows) }),
  };
}

/** View 0 of every sample (the plain image when cached with `plainView0`): what validation reads. */
export function firstView(set: FeatureSet): FeatureSet {
  if (set.views === 1) return set;
  const per = featureSize(set.featureShape);
  const x = new Float32Array(set.ids.length * per);
  for (let i = 0; i < set.ids.length; i++) x.set(set.x.subarray(i * set.views * per, (i * set.views + 1) * per), i * per);
  return { ...set, x, views: 1 };
}
