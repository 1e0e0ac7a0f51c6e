/**
 * Public types of the feature cache (the storage contract `FeatureCache` implements and the
 * `--json` shapes of `cache stats`, `cache verify` and `cache gc`).
 */
import type { CorruptReason, FeatureDType } from './codec.js';

/** Options of {@link FeatureCache.open}. */
export interface FeatureCacheOptions {
  /**
   * Create the directory and an empty cache when none exists. When `false`, opening a
   * directory without a cache fails with `SPLITFIT_IO`.
   * @default true
   */
  createIfMissing?: boolean;
  /**
   * Refuse every write (`SPLITFIT_USAGE`). LevelDB still takes its exclusive lock: a
   * read-only cache cannot be opened while another process holds it either.
   * @default false
   */
  readOnly?: boolean;
  /**
   * Command recorded as the lock holder, so that a process that finds the cache locked can
   * say who holds it (e.g. `splitfit cache-features --model mobilenet_v2 …`).
   * @default process.argv without the node executable, joined by spaces
   */
  command?: string;
}

/** Who holds a cache open: stored in the `meta` key `holder` and in `splitfit-holder.json`. */
export interface CacheHolder {
  pid: number;
  command: string;
  /** ISO 8601 time the holder opened the cache. */
  startedAt: string;
  readOnly: boolean;
}

/** A sample's record in the `samples` sublevel. */
export interface SampleRecord {
  /** Class name or index; absent for unlabelled data. */
  label?: string | number;
  /** Where the sample came from (path, `idx:<file>#<index>`, …), for messages. */
  source: string;
}

/** A sample to store: its id (content hash of the source bytes) and its record. */
export interface SampleEntry extends SampleRecord {
  id: string;
}

/** Which cached entry of a sample: its augmentation, generation and view. */
export interface FeatureSelector {
  /**
   * Augmentation spec (canonical string); keys hold its short hash.
   * @default undefined — no augmentation
   */
  aug?: string;
  /**
   * Generation of augmented views (bumped when a generation is refreshed).
   * @default 0
   */
  generation?: number;
  /**
   * View index within the generation.
   * @default 0
   */
  view?: number;
}

/** One entry to write with {@link FeatureCache.putFeatures}. */
export interface FeatureEntry extends FeatureSelector {
  sampleId: string;
  data: Float32Array;
  shape: number[];
}

/** One entry read back by {@link FeatureCache.iterateFeatures}. */
export interface CachedFeatures {
  sampleId: string;
  view: number;
  generation: number;
  /** The augmentation spec, or `undefined` for entries without augmentation. */
  aug: string | undefined;
  data: Float32Array;
  shape: number[];
  dtype: FeatureDType;
}

/** Options of {@link FeatureCache.missingSampleIds}. */
export interface MissingOptions extends FeatureSelector {
  /**
   * When set, a sample is missing unless all views `0 … views-1` are cached (`view` is then
   * ignored).
   * @default undefined — only `view` is checked
   */
  views?: number;
}

/** Options of {@link FeatureCache.iterateFeatures}. */
export interface IterateOptions {
  /**
   * Augmentation spec to read.
   * @default undefined — entries without augmentation
   */
  aug?: string;
  /**
   * Generation to read.
   * @default undefined — every generation of `aug`, in order
   */
  generation?: number;
  /**
   * Maximum number of entries per yielded array (one `iterator.nextv` call).
   * @default 256
   */
  batchSize?: number;
}

/** Per-fingerprint numbers of {@link FeatureCache.stats}. */
export interface FingerprintStats {
  fingerprint: string;
  entries: number;
  /** Views per sample: highest view index + 1 (0 when empty). */
  views: number;
  /** Highest generation present (0 when empty). */
  generation: number;
  /** Distinct generations present, ascending. */
  generations: number[];
  /** Sum of value sizes (header + payload), in bytes. */
  bytes: number;
  /** LevelDB's estimate of the space the entries take on disk (excludes unflushed writes). */
  diskBytes: number;
}

/** Result of {@link FeatureCache.stats} (the `cache stats --json` contract). */
export interface CacheStats {
  samples: number;
  /** Sum of feature value sizes over all fingerprints, in bytes. */
  bytes: number;
  /** LevelDB's estimate of the whole cache on disk (excludes unflushed writes). */
  diskBytes: number;
  fingerprints: FingerprintStats[];
}

/** One bad entry found by {@link FeatureCache.verify}. */
export interface CorruptEntry {
  fingerprint: string;
  key: string;
  reason: CorruptReason | 'bad key';
  detail: string;
}

/** Options of {@link FeatureCache.verify}. */
export interface VerifyOptions {
  /**
   * Verify only this fingerprint.
   * @default undefined — every registered fingerprint
   */
  fingerprint?: string;
  /**
   * Delete the corrupt entries (one batch) so that the next extraction re-creates them.
   * @default false
   */
  repair?: boolean;
}

/** Result of {@link FeatureCache.verify} (the `cache verify --json` contract). */
export interface VerifyResult {
  checked: number;
  corrupt: CorruptEntry[];
  /** Number of corrupt entries deleted (0 without `repair`). */
  repaired: number;
  /** `true` when no corrupt entry remains: none was found, or all were repaired. */
  ok: boolean;
}

/** Options of {@link FeatureCache.gc}. */
export interface GcOptions {
  /**
   * Only report what would be dropped.
   * @default false
   */
  dryRun?: boolean;
}

/** Result of {@link FeatureCache.gc}. */
export interface GcResult {
  dryRun: boolean;
  dropped: { fingerprint: string; entries: number }[];
  kept: string[];
}
