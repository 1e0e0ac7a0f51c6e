import type { FeatureDType } from '../cache/codec.js';

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
