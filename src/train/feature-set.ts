import type { FeatureCache } from '../cache/feature-cache.js';
import type { EntrySelector } from '../cache/types.js';
import { shortFingerprint } from '../cache/keys.js';
import { SplitfitError } from '../errors.js';

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

/** Reads every view of `samples` (id → label) from the cache into memory, in the order given. */
export async function loadFeatureSet(
  cache: FeatureCache,
  fingerprint: string,
  samples: readonly { id: string; label: number; y?: readonly number[] }[],
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
  const targets = targetsOf(samples);
  return { ids: samples.map((s) => s.id), labels: samples.map((s) => s.label), x, featureShape, views: k, ...(targets === undefined ? {} : { targets }) };
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

/**
 * Global average pooling of rows of [h, w, c] maps (row-major, as cached) into [c] vectors. It is what
 * a head's leading `gap` layer computes, done once instead of on every training step: pooling is
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
