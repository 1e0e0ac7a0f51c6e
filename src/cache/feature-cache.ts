/**
 * The feature cache: one LevelDB per cache directory, a thin adapter over `level`.
 *
 * `FeatureCache` validates arguments (`validate.ts`), encodes and decodes values (with CRC
 * checks, `codec.ts`) and builds keys (`keys.ts`); LevelDB does the I/O. Every write of
 * features is one atomic batch, so an entry exists only when complete and an interrupted
 * extraction resumes from what is cached. Beside it: the public types (`types.ts`), the
 * lock-holder sidecar (`holder.ts`), LevelDB's errors as splitfit codes (`level-errors.ts`)
 * and the rule that tells what an entry is to the runs (`references.ts`).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { AbstractSublevel } from 'abstract-level';
import { Level } from 'level';
import { SplitfitError } from '../errors.js';
import { checkFeatures, decodeFeatures, decodeFeaturesInto, encodeFeatures, FEATURE_DTYPES, CACHE_FORMAT_VERSION } from './codec.js';
import type { DecodedFeatures, FeatureDType } from './codec.js';
import { type EntryStatus, entryClassifier } from './references.js';
import { assertMetaKey, resolveSelector, sampleRecord, validateOptions, validateReferences, validateSampleEntries } from './validate.js';
import { lockedMessage, removeHolderFile, writeHolderFile } from './holder.js';
import { errorMessage, hasLevelCode, ioError, ioHint, openError } from './level-errors.js';
import {
  assertFingerprint,
  assertIndex,
  assertSampleId,
  augKey,
  featureKey,
  featureRange,
  type FeatureKeyParts,
  featuresSublevelName,
  META_KEYS,
  META_SUBLEVEL,
  NO_AUG,
  parseFeatureKey,
  SAMPLES_SUBLEVEL,
  shortFingerprint,
} from './keys.js';
import type {
  CacheHolder,
  CacheStats,
  CachedFeatures,
  CorruptEntry,
  FeatureCacheOptions,
  FeatureEntry,
  FeatureRow,
  FeatureSelector,
  FingerprintReferences,
  FingerprintStats,
  GcFreed,
  GcOptions,
  GcResult,
  GenerationStats,
  IterateOptions,
  MetaBatchOptions,
  MetaOperation,
  MissingOptions,
  RowsSelector,
  SampleEntry,
  SampleRecord,
  StatsOptions,
  VerifyOptions,
  VerifyResult,
} from './types.js';

// The storage contract's types live in types.ts; importers of this module keep finding them here.
export type * from './types.js';

// ---------------------------------------------------------------------------------------
// Internals.

type Root = Level<string, string>;
type FeaturesSublevel = AbstractSublevel<Root, string | Buffer | Uint8Array, string, Uint8Array>;
type JsonSublevel<V> = AbstractSublevel<Root, string | Buffer | Uint8Array, string, V>;
type Status = 'closed' | 'opening' | 'open' | 'closing';

interface FormatRecord {
  version: number;
  createdAt: string;
}

/** Methods classic-level adds to abstract-level (`db.supports.additionalMethods`). */
interface ClassicLevelExtras {
  approximateSize(start: string, end: string): Promise<number>;
  compactRange(start: string, end: string): Promise<void>;
}

const DEFAULT_BATCH_SIZE = 256;
const SCAN_BATCH = 1000; // keys per nextv() when only keys are needed
const VALUE_SCAN_BATCH = 64; // values per nextv() when scanning whole caches (~16 MB at 7×7×1280 float32)
const HAS_MANY_CHUNK = 1024;
/** classic-level's `fillCache` read option (a sublevel passes it on; abstract-level's types do not name it). */
const NO_FILL_CACHE = { fillCache: false } as object;
const noop = (): void => undefined;


// ---------------------------------------------------------------------------------------

/**
 * Cached base features in LevelDB. Open with {@link FeatureCache.open}; close with
 * {@link FeatureCache.close} or `await using`.
 *
 * ```ts
 * await using cache = await FeatureCache.open('./cache', { command: 'my-script' });
 * await cache.putFeatures(fingerprint, [{ sampleId, data, shape: [1280] }], 'float32');
 * for await (const batch of cache.iterateFeatures(fingerprint)) { … }
 * ```
 */
export class FeatureCache {
  readonly #dir: string;
  readonly #options: Required<FeatureCacheOptions>;
  #status: Status = 'closed';
  #transition: Promise<void> | undefined;
  #db: Root | undefined;
  #meta: JsonSublevel<unknown> | undefined;
  #samples: JsonSublevel<SampleRecord> | undefined;
  readonly #featureSublevels = new Map<string, FeaturesSublevel>();
  /** Registry mirrors of the `meta` keys `fingerprints` and `augs`; LevelDB's lock makes us the only writer. */
  #fingerprints = new Set<string>();
  #augSpecs = new Map<string, string>();
  #registryQueue: Promise<unknown> = Promise.resolve();
  #holderToken: string | undefined;

  /** Creates a closed cache handle; prefer {@link FeatureCache.open}. */
  constructor(dir: string, options?: FeatureCacheOptions) {
    if (typeof dir !== 'string' || dir === '') {
      throw new TypeError(`cache directory must be a non-empty string, received ${JSON.stringify(dir)}`);
    }
    this.#dir = dir;
    this.#options = validateOptions(options);
  }

  /**
   * Opens (and by default creates) the cache in `dir`.
   *
   * @throws SplitfitError `SPLITFIT_CACHE_LOCKED` at once when another process or handle
   *   holds the directory (the message names the holder's pid and command when known);
   *   `SPLITFIT_CACHE_CORRUPT` when LevelDB reports corruption; `SPLITFIT_CACHE_MISMATCH`
   *   when the cache was written by a newer format; `SPLITFIT_IO` for other failures.
   */
  static async open(dir: string, options?: FeatureCacheOptions): Promise<FeatureCache> {
    const cache = new FeatureCache(dir, options);
    await cache.open();
    return cache;
  }

  /** The directory passed to the constructor. */
  get location(): string {
    return this.#dir;
  }

  /** `'closed' | 'opening' | 'open' | 'closing'`. */
  get status(): Status {
    return this.#status;
  }

  get isOpen(): boolean {
    return this.#status === 'open';
  }

  get isReadOnly(): boolean {
    return this.#options.readOnly;
  }

  /** Opens the cache; resolves at once when already open. Idempotent. */
  async open(): Promise<void> {
    if (this.#status === 'open') return;
    if (this.#status === 'opening') return this.#transition;
    if (this.#status === 'closing') {
      await this.#transition?.catch(noop);
      return this.open(); // re-read the status after the await
    }
    this.#status = 'opening';
    this.#transition = this.#open().then(
      () => {
        this.#status = 'open';
        this.#transition = undefined;
      },
      (err: unknown) => {
        this.#status = 'closed';
        this.#transition = undefined;
        throw err;
      },
    );
    return this.#transition;
  }

  /** Closes the cache and removes the holder file; resolves at once when closed. Idempotent. */
  async close(): Promise<void> {
    if (this.#status === 'closed') return;
    if (this.#status === 'closing') return this.#transition;
    if (this.#status === 'opening') {
      await this.#transition?.catch(noop);
      return this.close(); // re-read the status after the await
    }
    this.#status = 'closing';
    this.#transition = this.#close().finally(() => {
      this.#status = 'closed';
      this.#transition = undefined;
    });
    return this.#transition;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------
  // meta

  /** A JSON value from the `meta` sublevel, or `undefined`. */
  async getMeta<T>(key: string): Promise<T | undefined> {
    assertMetaKey(key, false);
    const { meta } = await this.#ready();
    return (await this.#io('read meta', () => meta.get(key))) as T | undefined;
  }

  /** Stores a JSON value in the `meta` sublevel. Keys the cache owns are refused. */
  async putMeta(key: string, value: unknown): Promise<void> {
    assertMetaKey(key, true);
    if (value === undefined) throw new TypeError(`meta value of "${key}" must be JSON-serializable, received undefined`);
    const { meta } = await this.#writable('putMeta');
    await this.#io('write meta', () => meta.put(key, value));
  }

  /**
   * Writes several meta keys — and, with `options`, sample records — in ONE LevelDB batch, so a
   * kill leaves all of them or none (a run record and the pointer that makes it current, say).
   * Keys the cache owns are refused.
   */
  async batchMeta(ops: readonly MetaOperation[], options?: MetaBatchOptions): Promise<void> {
    if (!Array.isArray(ops)) throw new TypeError(`batchMeta: operations must be an array, received ${typeof ops}`);
    for (const op of ops) {
      if (op?.type !== 'put' && op?.type !== 'del') {
        throw new TypeError(`batchMeta: each operation's type must be "put" or "del", received ${JSON.stringify((op as { type?: unknown } | undefined)?.type)}`);
      }
      assertMetaKey(op.key, true);
      if (op.type === 'put' && op.value === undefined) throw new TypeError(`meta value of "${op.key}" must be JSON-serializable, received undefined`);
    }
    const putSamples = options?.putSamples ?? [];
    const deleteSamples = options?.deleteSamples ?? [];
    validateSampleEntries(putSamples);
    if (!Array.isArray(deleteSamples)) throw new TypeError(`batchMeta option \`deleteSamples\` must be an array of sample ids, received ${typeof deleteSamples}`);
    deleteSamples.forEach(assertSampleId);
    const { db, meta, samples } = await this.#writable('batchMeta');
    if (ops.length + putSamples.length + deleteSamples.length === 0) return;
    const batch = db.batch();
    for (const op of ops) {
      if (op.type === 'put') batch.put<string, unknown>(op.key, op.value, { sublevel: meta });
      else batch.del(op.key, { sublevel: meta });
    }
    for (const e of putSamples) batch.put<string, SampleRecord>(e.id, sampleRecord(e), { sublevel: samples });
    for (const id of deleteSamples) batch.del(id, { sublevel: samples });
    await this.#io('write meta', () => batch.write()).catch(async (err: unknown) => {
      await batch.close().catch(noop);
      throw err;
    });
  }

  /** The meta entries whose key starts with `prefix`, in key order, values decoded. */
  async metaEntries<T>(prefix: string): Promise<[key: string, value: T][]> {
    if (typeof prefix !== 'string' || prefix === '') throw new TypeError(`meta prefix must be a non-empty string, received ${JSON.stringify(prefix)}`);
    const { meta } = await this.#ready();
    const it = meta.iterator({ gte: prefix, lt: upperBound(prefix) });
    const out: [string, T][] = [];
    try {
      for (;;) {
        const rows = await this.#io('read meta', () => it.nextv(VALUE_SCAN_BATCH));
        if (rows.length === 0) return out;
        for (const [key, value] of rows) out.push([key, value as T]);
      }
    } finally {
      await it.close();
    }
  }

  // -------------------------------------------------------------------------------------
  // samples

  /** Stores sample records (one batch). */
  async putSamples(entries: readonly SampleEntry[]): Promise<void> {
    validateSampleEntries(entries);
    const { samples } = await this.#writable('putSamples');
    if (entries.length === 0) return;
    await this.#io('write samples', () => samples.batch(entries.map((e) => ({ type: 'put' as const, key: e.id, value: sampleRecord(e) }))));
  }

  /** A sample's record, or `undefined`. */
  async getSample(id: string): Promise<SampleRecord | undefined> {
    assertSampleId(id);
    const { samples } = await this.#ready();
    return this.#io('read samples', () => samples.get(id));
  }

  /** Records of many samples, in the order of `ids` (`undefined` where unknown). */
  async getSamples(ids: readonly string[]): Promise<(SampleRecord | undefined)[]> {
    ids.forEach(assertSampleId);
    const { samples } = await this.#ready();
    return this.#io('read samples', () => samples.getMany([...ids]));
  }

  // -------------------------------------------------------------------------------------
  // features

  /** Fingerprints that have (or had) features in this cache, sorted. */
  async listFingerprints(): Promise<string[]> {
    await this.#ready();
    return [...this.#fingerprints].sort();
  }

  /**
   * Writes feature entries in one atomic batch: either all are stored or none. The first
   * write of a fingerprint (or of an augmentation spec) registers it in the same batch.
   *
   * @throws TypeError on a malformed entry (bad id, shape not matching the data, …).
   */
  async putFeatures(fingerprint: string, entries: readonly FeatureEntry[], dtype: FeatureDType): Promise<void> {
    await this.putFeatureSets([{ fingerprint, entries, dtype }]);
  }

  /**
   * {@link putFeatures} for entries of several namespaces at once — e.g. maps and their pooled
   * vectors (`cache/pooled.ts`) — in one atomic batch, registrations included.
   */
  async putFeatureSets(sets: readonly { fingerprint: string; entries: readonly FeatureEntry[]; dtype: FeatureDType }[]): Promise<void> {
    if (!Array.isArray(sets)) throw new TypeError(`feature sets must be an array, received ${typeof sets}`);
    const ops: { fingerprint: string; key: string; value: Uint8Array }[] = [];
    const newAugs = new Map<string, string>();
    for (const { fingerprint, entries, dtype } of sets) {
      assertFingerprint(fingerprint);
      if (!FEATURE_DTYPES.includes(dtype)) {
        throw new TypeError(`dtype must be one of ${FEATURE_DTYPES.join(', ')}, received ${String(dtype)}`);
      }
      if (!Array.isArray(entries)) throw new TypeError(`feature entries must be an array, received ${typeof entries}`);
      for (const e of entries) {
        const { aug, generation, view } = resolveSelector(e);
        const key = featureKey({ augKey: aug, generation, sampleId: e.sampleId, view });
        if (aug !== NO_AUG && e.aug !== undefined && !this.#augSpecs.has(aug)) newAugs.set(aug, e.aug);
        ops.push({ fingerprint, key, value: encodeFeatures(e.data, e.shape, dtype) });
      }
    }
    const { db } = await this.#writable('putFeatures');
    if (ops.length === 0) return;
    const named = [...new Set(ops.map((op) => op.fingerprint))];
    const subs = new Map(named.map((f) => [f, this.#features(f)]));

    const write = async (registry: boolean): Promise<void> => {
      const batch = db.batch();
      for (const op of ops) batch.put<string, Uint8Array>(op.key, op.value, { sublevel: subs.get(op.fingerprint)! });
      let fingerprints: string[] | undefined;
      let augs: Record<string, string> | undefined;
      if (registry) {
        const meta = this.#meta!;
        const unregistered = named.filter((f) => !this.#fingerprints.has(f));
        if (unregistered.length > 0) {
          fingerprints = [...this.#fingerprints, ...unregistered].sort();
          batch.put<string, unknown>(META_KEYS.fingerprints, fingerprints, { sublevel: meta });
        }
        const added = [...newAugs].filter(([hash]) => !this.#augSpecs.has(hash));
        if (added.length > 0) {
          augs = Object.fromEntries([...this.#augSpecs, ...added]);
          batch.put<string, unknown>(META_KEYS.augs, augs, { sublevel: meta });
        }
      }
      await this.#io('write features', () => batch.write()).catch(async (err: unknown) => {
        await batch.close().catch(noop);
        throw err;
      });
      if (fingerprints) this.#fingerprints = new Set(fingerprints);
      if (augs) this.#augSpecs = new Map(Object.entries(augs));
    };

    const needsRegistry = named.some((f) => !this.#fingerprints.has(f)) || newAugs.size > 0;
    // Registry updates read-modify-write two meta keys: serialize them.
    if (needsRegistry) await this.#withRegistryLock(() => write(true));
    else await write(false);
  }

  /** One decoded entry, or `undefined` when it is not cached. */
  async getFeatures(fingerprint: string, sampleId: string, selector?: FeatureSelector): Promise<DecodedFeatures | undefined> {
    const key = this.#key(fingerprint, sampleId, selector);
    await this.#ready();
    const sub = this.#features(fingerprint);
    const value = await this.#io('read features', () => sub.get(key));
    if (value === undefined) return undefined;
    try {
      return decodeFeatures(value, { fingerprint, key });
    } catch (err) {
      throw await this.#namingSample(err, key);
    }
  }

  /** Whether an entry is cached (without reading or checking its value). */
  async hasFeatures(fingerprint: string, sampleId: string, selector?: FeatureSelector): Promise<boolean> {
    const key = this.#key(fingerprint, sampleId, selector);
    await this.#ready();
    const sub = this.#features(fingerprint);
    return this.#io('read features', () => sub.has(key));
  }

  /**
   * The ids (first-seen order, without duplicates) that lack a cached entry for `options` —
   * with `views`, that lack any of the views `0 … views-1`. Uses LevelDB's `hasMany`, so
   * values are not copied out.
   */
  async missingSampleIds(fingerprint: string, ids: readonly string[], options?: MissingOptions): Promise<string[]> {
    assertFingerprint(fingerprint);
    const { aug, generation, view } = resolveSelector(options);
    const views = options?.views;
    if (views !== undefined && (!Number.isInteger(views) || views < 1 || views > 1_000_000)) {
      throw new TypeError(`views must be an integer in [1, 1000000], received ${String(views)}`);
    }
    const unique = [...new Set(ids)];
    const viewList = views === undefined ? [view] : Array.from({ length: views }, (_, v) => v);
    const keys: string[] = [];
    for (const sampleId of unique) {
      for (const v of viewList) keys.push(featureKey({ augKey: aug, generation, sampleId, view: v }));
    }
    await this.#ready();
    const sub = this.#features(fingerprint);
    const missing = new Set<string>();
    for (let start = 0; start < keys.length; start += HAS_MANY_CHUNK) {
      const chunk = keys.slice(start, start + HAS_MANY_CHUNK);
      const present = await this.#io('read features', () => sub.hasMany(chunk));
      present.forEach((has, i) => {
        if (!has) missing.add(unique[Math.floor((start + i) / viewList.length)]!);
      });
    }
    return unique.filter((id) => missing.has(id));
  }

  /**
   * Streams the entries of one augmentation (and generation) in key order — by generation,
   * then sample id, then view — as arrays of at most `batchSize` decoded entries, one
   * `iterator.nextv` each. The iterator reads a snapshot: concurrent writes are not seen.
   *
   * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` on the first entry that fails its check.
   */
  async *iterateFeatures(fingerprint: string, options?: IterateOptions): AsyncGenerator<CachedFeatures[], void, undefined> {
    assertFingerprint(fingerprint);
    const { aug, generation, batchSize = DEFAULT_BATCH_SIZE } = options ?? {};
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new TypeError(`batchSize must be a positive integer, received ${String(batchSize)}`);
    }
    const range = featureRange(augKey(aug), generation);
    await this.#ready();
    const sub = this.#features(fingerprint);
    const it = sub.iterator({ ...range });
    try {
      for (;;) {
        const rows = await this.#io('read features', () => it.nextv(batchSize));
        if (rows.length === 0) return;
        const decoded: CachedFeatures[] = [];
        let bad: { err: unknown; key: string } | undefined;
        for (const [key, value] of rows) {
          try {
            decoded.push(this.#decodeEntry(fingerprint, key, value));
          } catch (err) {
            bad = { err, key };
            break;
          }
        }
        if (bad) throw await this.#namingSample(bad.err, bad.key);
        yield decoded;
      }
    } finally {
      await it.close();
    }
  }

  /**
   * Reads the entries `rows` (sample id and view, of one augmentation and generation) straight
   * into `out`, row i at `i * out.length / rows.length` — one LevelDB `getMany` and one checked
   * copy per entry, no per-entry buffer. What a streamed training batch is made of.
   *
   * @returns the indices of the rows that are not cached (empty when all were read).
   * @throws SplitfitError `SPLITFIT_CACHE_CORRUPT` on the first entry that fails its check (the
   *   message names the sample's source file when known); `SPLITFIT_CACHE_MISMATCH` when an
   *   entry holds a different number of values than its slot.
   */
  async readFeaturesInto(fingerprint: string, rows: readonly FeatureRow[], selector: RowsSelector | undefined, out: Float32Array): Promise<number[]> {
    assertFingerprint(fingerprint);
    if (!Array.isArray(rows)) throw new TypeError(`rows must be an array of {sampleId, view}, received ${typeof rows}`);
    if (!(out instanceof Float32Array)) throw new TypeError(`out must be a Float32Array, received ${out === null ? 'null' : typeof out}`);
    const per = rows.length === 0 ? 0 : out.length / rows.length;
    if (!Number.isInteger(per)) throw new TypeError(`out holds ${out.length} values, not a multiple of the ${rows.length} rows`);
    const { aug, generation } = resolveSelector(selector === undefined ? undefined : { aug: selector.aug, generation: selector.generation });
    const keys = rows.map((r) => {
      assertSampleId(r.sampleId);
      assertIndex('view', r.view);
      return featureKey({ augKey: aug, generation, sampleId: r.sampleId, view: r.view });
    });
    await this.#ready();
    if (keys.length === 0) return [];
    const sub = this.#features(fingerprint);
    // fillCache off: values of 250 kB would only churn LevelDB's 8 MB block cache; the OS page cache serves re-reads.
    const values = await this.#io('read features', () => sub.getMany(keys, NO_FILL_CACHE));
    const missing: number[] = [];
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (value === undefined) {
        missing.push(i);
        continue;
      }
      try {
        decodeFeaturesInto(value, { fingerprint, key: keys[i]! }, out.subarray(i * per, (i + 1) * per));
      } catch (err) {
        throw await this.#namingSample(err, keys[i]!);
      }
    }
    return missing;
  }

  /**
   * Deletes every entry of one (augmentation, generation) — a key-range `clear` — then asks
   * LevelDB to compact that range so the space is reclaimed.
   * @returns the number of entries deleted.
   */
  async deleteGeneration(fingerprint: string, aug: string | undefined, generation: number): Promise<number> {
    assertFingerprint(fingerprint);
    const range = featureRange(augKey(aug), generation);
    await this.#writable('deleteGeneration');
    const sub = this.#features(fingerprint);
    const count = await this.#countRange(sub, range);
    if (count === 0) return 0;
    await this.#io('delete generation', () => sub.clear(range));
    await this.#compact(sub.prefix + range.gte, sub.prefix + range.lt);
    return count;
  }

  /** Number of entries of a fingerprint (all augmentations, generations and views). */
  async countEntries(fingerprint: string): Promise<number> {
    assertFingerprint(fingerprint);
    await this.#ready();
    return this.#countRange(this.#features(fingerprint), {});
  }

  // -------------------------------------------------------------------------------------
  // maintenance

  /**
   * Counts samples and, per registered fingerprint, entries, views, generations and bytes
   * (exact sum of value sizes, read by one scan) plus LevelDB's on-disk estimate. Given the
   * runs' `references`, also tells committed, incomplete and superseded generations and
   * orphaned entries apart (see {@link StatsOptions}, {@link entryClassifier}).
   */
  async stats(options?: StatsOptions): Promise<CacheStats> {
    const references = validateReferences(options?.references, 'stats');
    const { samples, db } = await this.#ready();
    const fingerprints: FingerprintStats[] = [];
    for (const fingerprint of [...this.#fingerprints].sort()) {
      const sub = this.#features(fingerprint);
      const refs = references?.get(fingerprint);
      const classify = entryClassifier(refs);
      const groups = new Map<string, { status: EntryStatus; augKey: string; generation: number; entries: number; bytes: number }>();
      const orphaned = { entries: 0, bytes: 0 };
      let entries = 0;
      let bytes = 0;
      let maxView = -1;
      const generations = new Set<number>();
      const it = sub.iterator({});
      try {
        for (;;) {
          const rows = await this.#io('scan features', () => it.nextv(VALUE_SCAN_BATCH));
          if (rows.length === 0) break;
          for (const [key, value] of rows) {
            entries++;
            bytes += value.byteLength;
            const parts = parseFeatureKey(key);
            if (parts === undefined) continue;
            maxView = Math.max(maxView, parts.view);
            generations.add(parts.generation);
            if (references === undefined) continue;
            const status = classify(parts);
            if (status === 'orphaned') {
              orphaned.entries++;
              orphaned.bytes += value.byteLength;
              continue;
            }
            const group = `${status}!${parts.augKey}!${parts.generation}`;
            const g = groups.get(group) ?? { status, augKey: parts.augKey, generation: parts.generation, entries: 0, bytes: 0 };
            g.entries++;
            g.bytes += value.byteLength;
            groups.set(group, g);
          }
        }
      } finally {
        await it.close();
      }
      const sorted = [...generations].sort((a, b) => a - b);
      const stat: FingerprintStats = {
        fingerprint,
        entries,
        views: maxView + 1,
        generation: sorted.at(-1) ?? 0,
        generations: sorted,
        bytes,
        diskBytes: await this.#approximateSize(db, sub.prefix, upperBound(sub.prefix)),
      };
      if (references !== undefined) {
        const list = [...groups.values()].sort((a, b) => (a.augKey === b.augKey ? a.generation - b.generation : a.augKey < b.augKey ? -1 : 1));
        const of = (status: EntryStatus): GenerationStats[] =>
          list
            .filter((g) => g.status === status)
            .map((g) => ({
              ...(g.augKey === NO_AUG ? {} : { aug: this.#augSpecs.get(g.augKey) ?? g.augKey }),
              generation: g.generation,
              entries: g.entries,
              bytes: g.bytes,
            }));
        stat.committed = of('committed');
        stat.incomplete = of('incomplete');
        stat.superseded = of('superseded');
        stat.orphaned = orphaned;
        stat.generation = Math.max(0, ...(refs?.committed ?? []).map((c) => c.generation));
      }
      fingerprints.push(stat);
    }
    return {
      samples: await this.#countRange(samples, {}),
      bytes: fingerprints.reduce((sum, f) => sum + f.bytes, 0),
      diskBytes: await this.#approximateSize(db, '!', '"'),
      fingerprints,
    };
  }

  /**
   * Reads every entry (of one fingerprint, or of all) and checks key, header, length and
   * CRC. With `repair`, deletes the corrupt entries in one batch.
   */
  async verify(options?: VerifyOptions): Promise<VerifyResult> {
    const { fingerprint, repair = false } = options ?? {};
    if (fingerprint !== undefined) assertFingerprint(fingerprint);
    if (typeof repair !== 'boolean') throw new TypeError(`verify option \`repair\` must be a boolean, received ${typeof repair}`);
    const { db } = repair ? await this.#writable('verify --repair') : await this.#ready();
    const targets = fingerprint !== undefined ? [fingerprint] : [...this.#fingerprints].sort();
    let checked = 0;
    const corrupt: CorruptEntry[] = [];
    for (const fp of targets) {
      const it = this.#features(fp).iterator({});
      try {
        for (;;) {
          const rows = await this.#io('scan features', () => it.nextv(VALUE_SCAN_BATCH));
          if (rows.length === 0) break;
          for (const [key, value] of rows) {
            checked++;
            if (parseFeatureKey(key) === undefined) {
              corrupt.push({ fingerprint: fp, key, reason: 'bad key', detail: 'does not follow aug!generation!sampleId!view' });
              continue;
            }
            const bad = checkFeatures(value);
            if (bad) corrupt.push({ fingerprint: fp, key, ...bad });
          }
        }
      } finally {
        await it.close();
      }
    }
    let repaired = 0;
    if (repair && corrupt.length > 0) {
      const batch = db.batch();
      for (const c of corrupt) batch.del(c.key, { sublevel: this.#features(c.fingerprint) });
      await this.#io('repair', () => batch.write());
      repaired = corrupt.length;
    }
    return { checked, corrupt, repaired, ok: corrupt.length === repaired };
  }

  /**
   * Drops every fingerprint not in `inUse` (its entries, then its registry entry) and
   * compacts the freed ranges. Given `references`, also drops the entries of the kept
   * fingerprints that no run reads (orphaned and superseded) and the sample records no run
   * references. With `dryRun`, only reports.
   *
   * Kill-safety: every step deletes only what is unreferenced and is repeated by the next gc,
   * so a kill anywhere leaves a cache that is correct, just not yet fully collected. Listing
   * uses the fingerprint registry and key-only scans; values are read only to count the bytes
   * of what is dropped.
   */
  async gc(inUse: readonly string[], options?: GcOptions): Promise<GcResult> {
    if (!Array.isArray(inUse)) throw new TypeError(`gc: inUse must be an array of fingerprints, received ${typeof inUse}`);
    inUse.forEach(assertFingerprint);
    const dryRun = options?.dryRun ?? false;
    if (typeof dryRun !== 'boolean') throw new TypeError(`gc option \`dryRun\` must be a boolean, received ${typeof dryRun}`);
    const references = validateReferences(options?.references, 'gc');
    if (dryRun) await this.#ready();
    else await this.#writable('gc');
    const keep = new Set(inUse);
    const all = [...this.#fingerprints].sort();
    const dropped: GcResult['dropped'] = [];
    for (const fp of all.filter((f) => !keep.has(f))) {
      const sub = this.#features(fp);
      dropped.push({ fingerprint: fp, ...(await this.#sizeOf(sub)) });
      if (dryRun) continue;
      // Entries first, registry second: a crash in between leaves an empty, registered namespace.
      await this.#io('gc', () => sub.clear());
      await this.#withRegistryLock(async () => {
        const next = [...this.#fingerprints].filter((f) => f !== fp).sort();
        await this.#io('gc', () => this.#meta!.put(META_KEYS.fingerprints, next));
        this.#fingerprints = new Set(next);
      });
      this.#featureSublevels.delete(fp);
      await this.#compact(sub.prefix, upperBound(sub.prefix));
    }
    const orphaned: GcResult['orphaned'] = [];
    const superseded: GcResult['superseded'] = [];
    let samples = 0;
    if (references !== undefined) {
      for (const fp of all.filter((f) => keep.has(f))) {
        const freed = await this.#dropUnread(fp, entryClassifier(references.get(fp)), dryRun);
        if (freed.orphaned.entries > 0) orphaned.push({ fingerprint: fp, ...freed.orphaned });
        if (freed.superseded.entries > 0) superseded.push({ fingerprint: fp, ...freed.superseded });
      }
      samples = await this.#dropUnreferencedSamples(references, dryRun);
    }
    const parts = [...dropped, ...orphaned, ...superseded];
    const freed = { entries: parts.reduce((n, d) => n + d.entries, 0), bytes: parts.reduce((n, d) => n + d.bytes, 0) };
    return { dryRun, dropped, orphaned, superseded, samples, freed, kept: all.filter((f) => keep.has(f)) };
  }

  /** Deletes everything (features, samples, meta), keeping the format record and holder. */
  async clear(): Promise<void> {
    const { db } = await this.#writable('clear');
    await this.#withRegistryLock(async () => {
      await this.#io('clear', () => db.clear());
      this.#fingerprints = new Set();
      this.#augSpecs = new Map();
      this.#featureSublevels.clear();
      await this.#writeHeaderMeta();
    });
    await this.#compact('!', '"');
  }

  // -------------------------------------------------------------------------------------
  // private

  async #open(): Promise<void> {
    const { createIfMissing, readOnly } = this.#options;
    if (!createIfMissing && !(await exists(path.join(this.#dir, 'CURRENT')))) {
      throw new SplitfitError(
        'SPLITFIT_IO',
        `no feature cache in ${this.#dir} (no LevelDB files there). Run \`splitfit cache-features --cache ${this.#dir}\` first, or check the path.`,
      );
    }
    const db = new Level<string, string>(this.#dir, { createIfMissing, errorIfExists: false });
    try {
      await db.open();
    } catch (err) {
      throw await this.#openError(err);
    }
    try {
      this.#db = db;
      this.#meta = db.sublevel<string, unknown>(META_SUBLEVEL, { valueEncoding: 'json' });
      this.#samples = db.sublevel<string, SampleRecord>(SAMPLES_SUBLEVEL, { valueEncoding: 'json' });
      const format = (await this.#meta.get(META_KEYS.format)) as FormatRecord | undefined;
      if (format !== undefined && format.version > CACHE_FORMAT_VERSION) {
        throw new SplitfitError(
          'SPLITFIT_CACHE_MISMATCH',
          `cache ${this.#dir} was written by cache format ${format.version}; this splitfit reads format ${CACHE_FORMAT_VERSION}. ` +
            'Upgrade splitfit or use another --cache directory.',
        );
      }
      const [fingerprints, augs] = await this.#meta.getMany([META_KEYS.fingerprints, META_KEYS.augs]);
      this.#fingerprints = new Set(Array.isArray(fingerprints) ? fingerprints.filter((f): f is string => typeof f === 'string') : []);
      this.#augSpecs = new Map(
        typeof augs === 'object' && augs !== null
          ? Object.entries(augs).filter((e): e is [string, string] => typeof e[1] === 'string')
          : [],
      );
      if (!readOnly) await this.#writeHeaderMeta(format);
      await this.#writeHolderFile();
    } catch (err) {
      this.#db = undefined;
      await db.close().catch(noop);
      if (err instanceof SplitfitError) throw err;
      throw new SplitfitError('SPLITFIT_IO', `could not initialise cache ${this.#dir}: ${errorMessage(err)}${ioHint(errorMessage(err))}`, { cause: err });
    }
  }

  async #close(): Promise<void> {
    const db = this.#db;
    await this.#removeHolderFile();
    this.#db = undefined;
    this.#meta = undefined;
    this.#samples = undefined;
    this.#featureSublevels.clear();
    if (db) await this.#io('close', () => db.close());
  }

  async #writeHeaderMeta(format?: FormatRecord): Promise<void> {
    const meta = this.#meta!;
    const holder: CacheHolder = {
      pid: process.pid,
      command: this.#options.command,
      startedAt: new Date().toISOString(),
      readOnly: this.#options.readOnly,
    };
    await meta.batch([
      // An older format's cache is upgraded in place: its values stay readable, and the record tells an
      // older splitfit (which cannot read the values this one writes) to refuse the cache.
      { type: 'put', key: META_KEYS.format, value: format !== undefined && format.version >= CACHE_FORMAT_VERSION ? format : { version: CACHE_FORMAT_VERSION, createdAt: format?.createdAt ?? holder.startedAt } },
      { type: 'put', key: META_KEYS.holder, value: holder },
    ]);
  }

  /** Sidecar naming the holder: the DB itself cannot be read by whoever finds it locked. */
  async #writeHolderFile(): Promise<void> {
    this.#holderToken = await writeHolderFile(this.#dir, {
      pid: process.pid,
      command: this.#options.command,
      startedAt: new Date().toISOString(),
      readOnly: this.#options.readOnly,
    });
  }

  async #removeHolderFile(): Promise<void> {
    const token = this.#holderToken;
    this.#holderToken = undefined;
    if (token !== undefined) await removeHolderFile(this.#dir, token);
  }

  async #openError(err: unknown): Promise<SplitfitError> {
    if (hasLevelCode(err, 'LEVEL_LOCKED')) return new SplitfitError('SPLITFIT_CACHE_LOCKED', await lockedMessage(this.#dir), { cause: err });
    return openError(this.#dir, err);
  }

  async #ready(): Promise<{ db: Root; meta: JsonSublevel<unknown>; samples: JsonSublevel<SampleRecord> }> {
    if (this.#status === 'opening') await this.#transition;
    if (this.#status !== 'open' || !this.#db || !this.#meta || !this.#samples) {
      throw new SplitfitError('SPLITFIT_IO', `cache ${this.#dir} is ${this.#status}; call open() first`);
    }
    return { db: this.#db, meta: this.#meta, samples: this.#samples };
  }

  async #writable(op: string): Promise<{ db: Root; meta: JsonSublevel<unknown>; samples: JsonSublevel<SampleRecord> }> {
    const ready = await this.#ready();
    if (this.#options.readOnly) {
      throw new SplitfitError('SPLITFIT_USAGE', `${op}: cache ${this.#dir} is open read-only; open it without \`readOnly\` to write`);
    }
    return ready;
  }

  #features(fingerprint: string): FeaturesSublevel {
    let sub = this.#featureSublevels.get(fingerprint);
    if (sub === undefined) {
      sub = this.#db!.sublevel<string, Uint8Array>(featuresSublevelName(fingerprint), { valueEncoding: 'view' });
      this.#featureSublevels.set(fingerprint, sub);
    }
    return sub;
  }

  #key(fingerprint: string, sampleId: string, selector: FeatureSelector | undefined): string {
    assertFingerprint(fingerprint);
    const { aug, generation, view } = resolveSelector(selector);
    return featureKey({ augKey: aug, generation, sampleId, view });
  }

  #decodeEntry(fingerprint: string, key: string, value: Uint8Array): CachedFeatures {
    const parts = parseFeatureKey(key);
    if (parts === undefined) {
      throw new SplitfitError(
        'SPLITFIT_CACHE_CORRUPT',
        `malformed feature key "${key}" in cache namespace ${shortFingerprint(fingerprint)}. Run \`splitfit cache verify --repair\`.`,
      );
    }
    const { data, shape, dtype } = decodeFeatures(value, { fingerprint, key });
    const aug = parts.augKey === NO_AUG ? undefined : (this.#augSpecs.get(parts.augKey) ?? parts.augKey);
    return { sampleId: parts.sampleId, view: parts.view, generation: parts.generation, aug, data, shape, dtype };
  }

  /** A corrupt-entry error that also names the sample's source file, when the cache knows it. */
  async #namingSample(err: unknown, key: string): Promise<unknown> {
    if (!(err instanceof SplitfitError) || err.code !== 'SPLITFIT_CACHE_CORRUPT') return err;
    const sampleId = parseFeatureKey(key)?.sampleId;
    const record = sampleId === undefined ? undefined : await this.#samples?.get(sampleId).catch(() => undefined);
    if (record === undefined) return err;
    return new SplitfitError('SPLITFIT_CACHE_CORRUPT', `sample ${record.source}: ${err.message}`, { cause: err });
  }

/** Entries and value bytes of a whole features sublevel (reads the values: gc counts what it frees). */
  async #sizeOf(sub: FeaturesSublevel): Promise<GcFreed> {
    const it = sub.iterator({});
    let entries = 0;
    let bytes = 0;
    try {
      for (;;) {
        const rows = await this.#io('scan features', () => it.nextv(VALUE_SCAN_BATCH));
        if (rows.length === 0) return { entries, bytes };
        entries += rows.length;
        for (const [, value] of rows) bytes += value.byteLength;
      }
    } finally {
      await it.close();
    }
  }

  /**
   * Deletes the entries of `fingerprint` that no run reads (`orphaned` or `superseded`, see
   * {@link entryClassifier}): a key-only scan finds them, then each chunk is read (for its bytes)
   * and deleted in one batch. A kill between chunks leaves some that the next gc finds again;
   * entries a run reads are never touched.
   */
  async #dropUnread(fingerprint: string, classify: (parts: FeatureKeyParts) => EntryStatus, dryRun: boolean): Promise<Record<'orphaned' | 'superseded', GcFreed>> {
    const sub = this.#features(fingerprint);
    const doomed: { key: string; status: 'orphaned' | 'superseded' }[] = [];
    const it = sub.keys({});
    try {
      for (;;) {
        const keys = await this.#io('scan keys', () => it.nextv(SCAN_BATCH));
        if (keys.length === 0) break;
        for (const key of keys) {
          const parts = parseFeatureKey(key);
          if (parts === undefined) continue; // a malformed key is `cache verify --repair`'s to judge, not gc's
          const status = classify(parts);
          if (status === 'orphaned' || status === 'superseded') doomed.push({ key, status });
        }
      }
    } finally {
      await it.close();
    }
    const freed = { orphaned: { entries: 0, bytes: 0 }, superseded: { entries: 0, bytes: 0 } };
    for (let start = 0; start < doomed.length; start += VALUE_SCAN_BATCH) {
      const chunk = doomed.slice(start, start + VALUE_SCAN_BATCH);
      const values = await this.#io('read features', () => sub.getMany(chunk.map((d) => d.key)));
      chunk.forEach((d, i) => {
        freed[d.status].entries++;
        freed[d.status].bytes += values[i]?.byteLength ?? 0;
      });
      if (!dryRun) await this.#io('gc', () => sub.batch(chunk.map((d) => ({ type: 'del' as const, key: d.key }))));
    }
    if (!dryRun && doomed.length > 0) await this.#compact(sub.prefix, upperBound(sub.prefix));
    return freed;
  }

  /** Deletes the sample records no fingerprint's references name; returns how many. */
  async #dropUnreferencedSamples(references: ReadonlyMap<string, FingerprintReferences>, dryRun: boolean): Promise<number> {
    const samples = this.#samples!;
    const referenced = new Set<string>();
    for (const r of references.values()) for (const id of r.samples) referenced.add(id);
    const unreferenced: string[] = [];
    const it = samples.keys({});
    try {
      for (;;) {
        const ids = await this.#io('scan keys', () => it.nextv(SCAN_BATCH));
        if (ids.length === 0) break;
        for (const id of ids) if (!referenced.has(id)) unreferenced.push(id);
      }
    } finally {
      await it.close();
    }
    if (!dryRun) {
      for (let start = 0; start < unreferenced.length; start += SCAN_BATCH) {
        const chunk = unreferenced.slice(start, start + SCAN_BATCH);
        await this.#io('gc', () => samples.batch(chunk.map((key) => ({ type: 'del' as const, key }))));
      }
    }
    return unreferenced.length;
  }

  async #countRange<V>(sub: JsonSublevel<V>, range: { gte?: string; lt?: string }): Promise<number> {
    const it = sub.keys({ ...range });
    let n = 0;
    try {
      for (;;) {
        const keys = await this.#io('scan keys', () => it.nextv(SCAN_BATCH));
        if (keys.length === 0) return n;
        n += keys.length;
      }
    } finally {
      await it.close();
    }
  }

  async #compact(start: string, end: string): Promise<void> {
    const db = this.#db!;
    if (!db.supports.additionalMethods.compactRange) return;
    const extras = db as unknown as ClassicLevelExtras;
    await this.#io('compact', () => extras.compactRange(start, end));
  }

  async #approximateSize(db: Root, start: string, end: string): Promise<number> {
    if (!db.supports.additionalMethods.approximateSize) return 0;
    const extras = db as unknown as ClassicLevelExtras;
    return this.#io('approximate size', () => extras.approximateSize(start, end));
  }

  #withRegistryLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#registryQueue.then(fn, fn);
    this.#registryQueue = run.catch(noop);
    return run;
  }

  /** Runs a LevelDB call, turning its errors into coded SplitfitErrors (keeping the cause). */
  async #io<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof SplitfitError || err instanceof TypeError) throw err;
      throw ioError(this.#dir, op, err);
    }
  }
}


/** The smallest string above every key that starts with `prefix` (prefixes end in `!`). */
function upperBound(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}
