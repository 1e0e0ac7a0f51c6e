import type { FeatureDType } from '../cache/codec.js';
import type { FeatureCache } from '../cache/feature-cache.js';
import type { PreparedBase } from './prepare.js';

/**
 * What `cache-features` records in the cache's `meta` sublevel, so `train-head` can find the
 * fingerprint, labels and the way back to the model without being told again.
 */
export interface RunMeta {
  /** Model reference as given: a `model.json` path (absolute) or a bundled model name. */
  model: string;
  boundary: string;
  fingerprint: string;
  inputSize: [number, number];
  channels: 1 | 3;
  preprocess: string;
  dtype: FeatureDType;
  featureShape: number[];
  /** Class names; label index = position. */
  labels: string[];
  /** The data source spec, resolved. */
  data: string;
  /** IDX label names used to open `data`, if any. */
  classNames?: string[];
  /** Sample ids of the data set with their label index, in data-source order. */
  samples: { id: string; label: number }[];
  /** Canonical augmentation spec (see `canonicalAugmentSpec`); absent for plain caching. */
  augment?: string;
  /** Views cached per sample. */
  views: number;
  /** The complete generation training reads; bumped only after the next one is fully cached. */
  generation: number;
  /** Seed of the augmented views. */
  seed: number;
  /** View 0 is the un-augmented image. */
  plainView0: boolean;
  createdAt: string;
}

/** The last run's meta; `train-head` defaults to it. */
export const CURRENT_RUN_KEY = 'run:current';
export const runKey = (fingerprint: string): string => `run:${fingerprint}`;

/** The fields of a run that come from the prepared base. */
export function baseRunFields(p: PreparedBase): Pick<RunMeta, 'model' | 'boundary' | 'fingerprint' | 'inputSize' | 'channels' | 'preprocess' | 'dtype' | 'featureShape'> {
  return {
    model: p.modelRef,
    boundary: p.boundary,
    fingerprint: p.fingerprint,
    inputSize: p.inputSize,
    channels: p.channels,
    preprocess: p.preset,
    dtype: p.dtype,
    featureShape: p.featureShape,
  };
}

/** Records a run under its fingerprint and as the cache's current run. */
export async function saveRun(cache: FeatureCache, run: RunMeta): Promise<void> {
  await cache.putMeta(runKey(run.fingerprint), run);
  await cache.putMeta(CURRENT_RUN_KEY, run);
}
