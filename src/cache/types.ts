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
/**
 * Which cached entries a run reads: its augmentation (canonical spec; none for plain caching), one
 * generation, and views `0 … views-1` of each sample. The one home of that selection: training,
 * refreshes and gc all use it (see `selectorOf` in extract/run-meta.ts).
 */
export interface EntrySelector {
  aug?: string;
  generation: number;
  views: number;
}

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

/** One entry to read with {@link FeatureCache.readFeaturesInto}. */
export interface FeatureRow {
  sampleId: string;
  /** View index within the generation. */
  view: number;
}

/** Which augmentation and generation {@link FeatureCache.readFeaturesInto} reads (the view is per row). */
export type RowsSelector = Omit<FeatureSelector, 'view'>;

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
  /**
   * Without `references`: the highest generation present (0 when empty). With them: the
   * highest generation a run has committed, so a crash's half-written one never shows here.
   */
  generation: number;
  /** Distinct generations present, ascending. */
  generations: number[];
  /** Sum of value sizes (header + payload), in bytes. */
  bytes: number;
  /** LevelDB's estimate of the space the entries take on disk (excludes unflushed writes). */
  diskBytes: number;
  /** With `references`: entries of referenced samples in a generation a run has committed. */
  committed?: GenerationStats[];
  /**
   * With `references`: entries of referenced samples in a later generation of an augmentation a
   * run reads, not committed — a refresh cut short by a crash (train-head resumes or deletes it).
   */
  incomplete?: GenerationStats[];
  /**
   * With `references`: entries of referenced samples that no run reads — an augmentation no run
   * uses any more, or a generation older than the committed one whose deletion was interrupted.
   */
  superseded?: GenerationStats[];
  /** With `references`: entries of samples no run of this fingerprint references. */
  orphaned?: { entries: number; bytes: number };
}

/** Entries and value bytes of one (augmentation, generation) of a fingerprint. */
export interface GenerationStats {
  /** The augmentation spec (its hash when the cache does not know it); absent without augmentation. */
  aug?: string;
  generation: number;
  entries: number;
  bytes: number;
}

/**
 * What the run records of one fingerprint reference: the cache itself knows no runs (they
 * live a floor up, in `extract/run-meta.ts`), so `stats` and `gc` are told.
 */
export interface FingerprintReferences {
  /** Ids of the samples some run of this fingerprint lists. */
  samples: ReadonlySet<string>;
  /** Per augmentation spec a run reads (`aug` absent = none), the generation it has committed. */
  committed: readonly { aug?: string; generation: number }[];
}

/** Options of {@link FeatureCache.stats}. */
export interface StatsOptions {
  /**
   * The runs' references per fingerprint. When given it is the whole truth: a fingerprint
   * missing from the map has no run, so all its entries count as orphaned.
   * @default undefined — entries are counted without telling committed, incomplete and orphaned apart
   */
  references?: ReadonlyMap<string, FingerprintReferences>;
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
  /**
   * The kept runs' references per fingerprint. When given, gc also drops, in every kept
   * fingerprint, the entries no run reads — of samples no run of that fingerprint references (a
   * fingerprint missing from the map has none), or superseded — and the sample records no run
   * references at all.
   * @default undefined — only whole fingerprints are dropped
   */
  references?: ReadonlyMap<string, FingerprintReferences>;
}

/** Entries and value bytes that gc dropped (or would drop). */
export interface GcFreed {
  entries: number;
  /** Sum of the dropped values' sizes (header + payload). */
  bytes: number;
}

/** Result of {@link FeatureCache.gc} (the `cache gc --json` contract). */
export interface GcResult {
  dryRun: boolean;
  /** Whole fingerprints dropped. */
  dropped: ({ fingerprint: string } & GcFreed)[];
  /** Per kept fingerprint, the entries of samples no run references (only fingerprints with any). */
  orphaned: ({ fingerprint: string } & GcFreed)[];
  /** Per kept fingerprint, the entries of referenced samples that no run reads (see `FingerprintStats.superseded`). */
  superseded: ({ fingerprint: string } & GcFreed)[];
  /** Sample records dropped: no run references them. */
  samples: number;
  /** Everything dropped, summed. */
  freed: GcFreed;
  kept: string[];
}

/** One write of {@link FeatureCache.batchMeta}: put a JSON value, or delete a key. */
export type MetaOperation = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

/** Options of {@link FeatureCache.batchMeta}: sample records written in the same batch. */
export interface MetaBatchOptions {
  /** Sample records to store. @default [] */
  putSamples?: readonly SampleEntry[];
  /** Ids of sample records to delete. @default [] */
  deleteSamples?: readonly string[];
}
