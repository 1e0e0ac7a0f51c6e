/**
 * Run records: what `cache-features` (and a validation extraction) stores in the cache's `meta`
 * sublevel, so `train-head` finds the fingerprint, labels and the way back to the model and
 * data without being told again, and `cache gc` / `stats` / `verify` know which samples are in use.
 *
 * Schema (meta keys):
 * - `run:<fingerprint>:<dataHash>` → {@link RunMeta}, one per (base, data set): the run id is
 *   `<fingerprint>:<first 16 hex of sha256(data)>`, so the training set, the validation set and
 *   every earlier data set of one model each keep their own record.
 * - `run:current` → `{runId}`: the current training run, what a plain `train-head` trains on.
 *   It is written in the same LevelDB batch as the record it points to, and only by a
 *   training run: a validation extraction never moves it.
 *
 * Legacy caches (before run ids) hold full records under `run:current` and `run:<fingerprint>`.
 * They are read as they are (their run id derived from fingerprint and data), and the first
 * write of any run record migrates them in that same batch: each legacy record is put under
 * its run id (unless a newer record has it), `run:<fingerprint>` is deleted and `run:current`
 * becomes a pointer. A kill before that batch leaves the legacy keys; after, the new ones.
 */
import { createHash } from 'node:crypto';
import type { FeatureDType } from '../cache/codec.js';
import type { FeatureCache } from '../cache/feature-cache.js';
import { matchFingerprint, shortFingerprint } from '../cache/keys.js';
import { pooledNamespace } from '../cache/pooled.js';
import type { EntrySelector, FingerprintReferences, MetaOperation, SampleEntry } from '../cache/types.js';
import { SplitfitError } from '../errors.js';
import type { Task } from '../data/types.js';
import type { PreparedBase } from './prepare.js';

/** What a run record was made for. */
export type RunRole =
  /** A `cache-features` data set: train-head may train on it (and it can be the current run). */
  | 'training'
  /** A data set extracted only to be read, e.g. train-head's `validationData`. */
  | 'data';

/** One run record (the `cache runs --json` contract). */
export interface RunMeta {
  /** `<fingerprint>:<dataHash>` — see {@link runIdOf}. */
  runId: string;
  role: RunRole;
  /** Model reference as given: a `model.json` path (absolute) or a bundled model name. */
  model: string;
  boundary: string;
  fingerprint: string;
  inputSize: [number, number];
  channels: 1 | 3;
  preprocess: string;
  dtype: FeatureDType;
  featureShape: number[];
  /**
   * Output names, output index = position: class names (classify), label names (multilabel),
   * target names (regress).
   */
  labels: string[];
  /**
   * What the samples' targets are; absent means `classify` (records before tasks existed). Not part of
   * the fingerprint: the same cached features serve every task, and each data set's record says its own.
   */
  task?: Task;
  /** The data source spec, resolved. */
  data: string;
  /** IDX label names used to open `data`, if any. */
  classNames?: string[];
  /**
   * Sample ids of the data set with their label index, in data-source order; −1 when unlabeled. For
   * `multilabel` and `regress` the label is 0 and `y` is the target in `labels` order: 0/1 per label
   * (multilabel) or the values in the target's own units (regress).
   */
  samples: { id: string; label: number; y?: number[] }[];
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

/** A run to record: `runId` is derived (see {@link runIdOf}); `role` defaults to `'training'`. */
export type RunInput = Omit<RunMeta, 'runId' | 'role'> & { runId?: string; role?: RunRole };

/** The meta key of the current-training-run pointer `{runId}`. */
export const CURRENT_RUN_KEY = 'run:current';
const RUN_PREFIX = 'run:';
/** Hex digits of sha256(data) in a run id. */
export const DATA_HASH_LENGTH = 16;
const RUN_ID_PATTERN = new RegExp(`^[0-9A-Za-z_.-]{1,128}:[0-9a-f]{${DATA_HASH_LENGTH}}$`);

/** The run id of a data set cached with a base: `<fingerprint>:<16 hex of sha256(data)>`. */
export function runIdOf(fingerprint: string, data: string): string {
  return `${fingerprint}:${createHash('sha256').update(data, 'utf8').digest('hex').slice(0, DATA_HASH_LENGTH)}`;
}

/** The meta key of a run record. */
export const runKey = (runId: string): string => RUN_PREFIX + runId;

const EXTRACTING_PREFIX = 'extracting:';
/** The meta key of the marker an extraction writes before its first batch (see {@link markExtracting}). */
export const extractingKey = (runId: string): string => EXTRACTING_PREFIX + runId;

/**
 * An extraction that started and has not recorded its run yet — running, or interrupted by a
 * kill. Its entries are referenced by no run, so without the marker `cache gc` would drop the
 * work an interrupted `cache-features` resumes from.
 */
export interface ExtractingMarker {
  runId: string;
  fingerprint: string;
  data: string;
  /** Ids of the samples being extracted. */
  samples: string[];
  /** Canonical augmentation spec and generation of the entries being written. */
  augment?: string;
  generation: number;
  startedAt: string;
}

/**
 * Writes the marker of an extraction that records its run when done (one put, before its first
 * feature batch). {@link saveRun} deletes it in the batch that records the run; a kill in
 * between leaves it, and `cache gc` keeps its samples' entries until the rerun records them
 * (or `gc` is told `dropInterrupted`).
 */
export async function markExtracting(cache: FeatureCache, marker: Omit<ExtractingMarker, 'runId'>): Promise<void> {
  const runId = runIdOf(marker.fingerprint, marker.data);
  await cache.batchMeta([{ type: 'put', key: extractingKey(runId), value: { ...marker, runId } satisfies ExtractingMarker }]);
}

/** The markers of extractions that have not recorded their run (interrupted ones, when none is running). */
export async function listExtracting(cache: FeatureCache): Promise<ExtractingMarker[]> {
  const rows = await cache.metaEntries<ExtractingMarker>(EXTRACTING_PREFIX);
  return rows.map(([, v]) => v).filter((v) => typeof v?.runId === 'string' && Array.isArray(v.samples));
}

/** Deletes every extraction marker in one batch; returns the markers deleted. */
export async function dropExtracting(cache: FeatureCache): Promise<ExtractingMarker[]> {
  const markers = await listExtracting(cache);
  if (markers.length > 0) await cache.batchMeta(markers.map((m) => ({ type: 'del' as const, key: extractingKey(m.runId) })));
  return markers;
}

/** The short form of a run id in messages: short fingerprint, `:`, data hash. */
export function shortRunId(runId: string): string {
  const [fp, hash] = runId.split(':');
  return `${shortFingerprint(fp ?? runId)}:${hash ?? ''}`;
}

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

/** Options of {@link saveRun}. */
export interface SaveRunOptions {
  /** Make this run the current training run (a `'data'` run never can). */
  current: boolean;
  /** Sample records written in the same batch as the record. @default [] */
  samples?: readonly SampleEntry[];
}

/**
 * Records a run under its run id — with `current`, also the pointer to it, and with `samples`
 * its sample records — in ONE LevelDB batch (plus the migration of legacy keys): a kill leaves
 * the old state or the new one. A `'data'` record never replaces a `'training'` record of the
 * same run id (using the training folder as validation data must not change how it trains).
 */
export async function saveRun(cache: FeatureCache, run: RunInput, options: SaveRunOptions): Promise<RunMeta> {
  if (typeof options?.current !== 'boolean') throw new TypeError(`saveRun option \`current\` must be a boolean, received ${typeof options?.current}`);
  const role = run.role ?? 'training';
  if (role !== 'training' && role !== 'data') throw new TypeError(`run role must be "training" or "data", received ${JSON.stringify(role)}`);
  if (role === 'data' && options.current) throw new TypeError('saveRun: a "data" run cannot be the current training run');
  const runId = runIdOf(run.fingerprint, run.data);
  if (run.runId !== undefined && run.runId !== runId) {
    throw new TypeError(`saveRun: runId ${run.runId} does not match its fingerprint and data (${runId})`);
  }
  // A run read back (RunMeta) may be passed in: only its fields are stored, never read-side flags.
  const record: RunMeta = stripLegacy({ ...run, runId, role });
  const state = await readState(cache);
  const existing = state.runs.get(runId);
  const keep = role === 'data' && existing?.role === 'training';
  const ops: MetaOperation[] = [...migrationOps(state, new Set([runId]))];
  if (!keep) ops.push({ type: 'put', key: runKey(runId), value: record });
  else if (existing.legacy) ops.push({ type: 'put', key: runKey(runId), value: stripLegacy(existing) });
  if (options.current) ops.push({ type: 'put', key: CURRENT_RUN_KEY, value: { runId } });
  ops.push({ type: 'del', key: extractingKey(runId) }); // the extraction is recorded: its marker goes
  await cache.batchMeta(ops, { putSamples: options.samples ?? [] });
  return keep ? stripLegacy(existing) : record;
}

/** Options of {@link readRun}. */
export interface ReadRunOptions {
  /**
   * A fingerprint, or any unique prefix of at least 4 of its characters.
   * @default undefined — the current training run
   */
  fingerprint?: string;
}

/**
 * The run train-head trains on: the current training run, or — given a fingerprint prefix —
 * the current run when it has that fingerprint, else that fingerprint's newest training
 * record (its newest record of any role when it has no training one).
 *
 * @throws SplitfitError `SPLITFIT_CACHE_MISMATCH` when there is no such run;
 *   `SPLITFIT_USAGE` when the prefix is too short or matches several fingerprints.
 */
export async function readRun(cache: FeatureCache, options: ReadRunOptions = {}): Promise<RunMeta> {
  const state = await readState(cache);
  const current = state.current === undefined ? undefined : state.runs.get(state.current);
  const { fingerprint } = options;
  if (fingerprint === undefined) {
    if (current !== undefined) return withDefaults(stripLegacy(current));
    if (state.current !== undefined) {
      throw new SplitfitError(
        'SPLITFIT_CACHE_MISMATCH',
        `the cache's current run ${shortRunId(state.current)} has no record; rerun \`splitfit cache-features\` with the same --cache, or pass --fingerprint`,
      );
    }
    throw new SplitfitError('SPLITFIT_CACHE_MISMATCH', 'the cache holds no features recorded by `splitfit cache-features`; run that first with the same --cache');
  }
  const all = [...state.runs.values()];
  const fp = matchFingerprint(fingerprint, all.map((r) => r.fingerprint), 'fingerprint');
  if (fp === undefined) {
    throw new SplitfitError('SPLITFIT_CACHE_MISMATCH', `the cache has no run with fingerprint ${fingerprint}; \`splitfit cache stats\` lists the cached fingerprints`);
  }
  if (current?.fingerprint === fp) return withDefaults(stripLegacy(current));
  const ofFp = newestFirst(all.filter((r) => r.fingerprint === fp));
  return withDefaults(stripLegacy(ofFp.find((r) => r.role === 'training') ?? ofFp[0]!));
}

/** Every run record, oldest first, and the current training run's id. */
export interface RunList {
  current: string | undefined;
  runs: RunMeta[];
}

/** Lists the run records (legacy ones included, with their derived run ids). */
export async function listRuns(cache: FeatureCache): Promise<RunList> {
  const state = await readState(cache);
  const runs = newestFirst([...state.runs.values()]).reverse().map((r) => withDefaults(stripLegacy(r)));
  return { current: state.current, runs };
}

/**
 * The run records whose run id starts with `idOrPrefix` — a run id, or a fingerprint prefix of
 * at least 4 characters (all of that fingerprint's records) — that {@link retireRun} would retire.
 *
 * A whole run id that matches nothing is taken as retired already (none is returned), so
 * rerunning a `cache gc --retire` that a kill interrupted completes it.
 *
 * @throws SplitfitError `SPLITFIT_USAGE` when a prefix matches nothing, spans several
 *   fingerprints, or a match is the current training run (retiring it would leave train-head
 *   nothing to train on: cache another data set first, or `cache clear`).
 */
export async function runsToRetire(cache: FeatureCache, idOrPrefix: string): Promise<RunMeta[]> {
  return (await planRetire(cache, idOrPrefix)).matches.map((r) => withDefaults(stripLegacy(r)));
}

/**
 * Retires the records {@link runsToRetire} names, in one batch; their samples' entries then
 * belong to no run and the next `cache gc` reclaims them.
 * @returns the retired records.
 */
export async function retireRun(cache: FeatureCache, idOrPrefix: string): Promise<RunMeta[]> {
  const { state, matches } = await planRetire(cache, idOrPrefix);
  await cache.batchMeta(retireOps(state, matches));
  return matches.map((r) => withDefaults(stripLegacy(r)));
}

/**
 * Retires every record of `fingerprints` — `cache gc` drops those namespaces (their model is
 * gone) — and the current-run pointer when it names one of them, in one batch written before
 * the namespaces are dropped: a kill in between leaves namespaces without runs, which the next
 * gc drops as stale.
 * @returns the retired records.
 */
export async function retireFingerprints(cache: FeatureCache, fingerprints: readonly string[]): Promise<RunMeta[]> {
  const state = await readState(cache);
  const drop = new Set(fingerprints);
  const matches = [...state.runs.values()].filter((r) => drop.has(r.fingerprint));
  if (matches.length === 0) return [];
  const ops = retireOps(state, matches);
  if (state.current !== undefined && matches.some((r) => r.runId === state.current)) ops.push({ type: 'del', key: CURRENT_RUN_KEY });
  await cache.batchMeta(ops);
  return matches.map((r) => withDefaults(stripLegacy(r)));
}

async function planRetire(cache: FeatureCache, idOrPrefix: string): Promise<{ state: RunState; matches: StoredRun[] }> {
  if (typeof idOrPrefix !== 'string') throw new TypeError(`retireRun: run id must be a string, received ${typeof idOrPrefix}`);
  const state = await readState(cache);
  const all = [...state.runs.values()];
  const [fpPart = '', hashPart] = idOrPrefix.split(':', 2);
  const fp = matchFingerprint(fpPart, all.map((r) => r.fingerprint), 'run id');
  const matches = all.filter((r) => r.fingerprint === fp && (hashPart === undefined || (r.runId.split(':')[1] ?? '').startsWith(hashPart)));
  // A whole run id that is not recorded was retired already (a rerun after a kill): nothing to do.
  if (matches.length === 0 && RUN_ID_PATTERN.test(idOrPrefix)) return { state, matches };
  if (matches.length === 0) {
    const known = all.map((r) => `${shortRunId(r.runId)} (${r.data})`).join(', ') || 'none';
    throw new SplitfitError('SPLITFIT_USAGE', `no run record matches "${idOrPrefix}"; recorded runs: ${known}. \`splitfit cache runs\` lists them`);
  }
  const current = matches.find((r) => r.runId === state.current);
  if (current !== undefined) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `run ${shortRunId(current.runId)} (${current.data}) is the current training run; retiring it would leave train-head nothing to train on. ` +
        'Run `splitfit cache-features` on another data set first, or `splitfit cache clear`',
    );
  }
  return { state, matches };
}

function retireOps(state: RunState, matches: readonly StoredRun[]): MetaOperation[] {
  const ops = migrationOps(state, new Set(matches.map((r) => r.runId)));
  for (const r of matches) ops.push({ type: 'del', key: runKey(r.runId) });
  return ops;
}

/**
 * What the runs (and the markers of unrecorded extractions) reference, per fingerprint: the
 * input of `FeatureCache.stats` and `gc`.
 */
export function runReferences(runs: readonly RunMeta[], extracting: readonly ExtractingMarker[] = []): Map<string, FingerprintReferences> {
  const out = new Map<string, { samples: Set<string>; committed: { aug?: string; generation: number }[] }>();
  const add = (fingerprint: string, ids: Iterable<string>, augment: string | undefined, generation: number): void => {
    const refs = out.get(fingerprint) ?? { samples: new Set<string>(), committed: [] };
    for (const id of ids) refs.samples.add(id);
    refs.committed.push({ ...(augment === undefined ? {} : { aug: augment }), generation });
    out.set(fingerprint, refs);
  };
  // An un-augmented run's maps are read through their pooled namespace too (`cache/pooled.ts`):
  // the same samples reference its entries, or gc would drop them as orphans.
  const addWithPooled = (fingerprint: string, ids: readonly string[], augment: string | undefined, generation: number): void => {
    add(fingerprint, ids, augment, generation);
    const pooled = augment === undefined ? pooledNamespace(fingerprint) : undefined;
    if (pooled !== undefined) add(pooled, ids, undefined, generation);
  };
  for (const r of runs) addWithPooled(r.fingerprint, r.samples.map((s) => s.id), r.augment, r.generation ?? 0);
  for (const m of extracting) addWithPooled(m.fingerprint, m.samples, m.augment, m.generation);
  return out;
}

// ---------------------------------------------------------------------------------------

interface StoredRun extends RunMeta {
  /** Read from a legacy key (`run:current` or `run:<fingerprint>`), not yet migrated. */
  legacy?: 'current' | 'fingerprint';
}

interface RunState {
  /** The current training run's id (from the pointer, or the legacy full record). */
  current: string | undefined;
  runs: Map<string, StoredRun>;
  /** Whether `run:current` holds a legacy full record instead of a pointer. */
  legacyCurrent: boolean;
  /** Legacy `run:<fingerprint>` keys present. */
  legacyKeys: string[];
}

function isRecord(value: unknown): value is Omit<RunMeta, 'runId' | 'role'> & Partial<Pick<RunMeta, 'runId' | 'role'>> {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.fingerprint === 'string' && typeof v.data === 'string' && Array.isArray(v.samples) && Array.isArray(v.labels);
}

/** Reads every record and the pointer: one prefix scan of the `meta` keys `run:…`. */
async function readState(cache: FeatureCache): Promise<RunState> {
  const rows = await cache.metaEntries<unknown>(RUN_PREFIX);
  const runs = new Map<string, StoredRun>();
  const legacy: StoredRun[] = [];
  const legacyKeys: string[] = [];
  let current: string | undefined;
  let legacyCurrent = false;
  for (const [key, value] of rows) {
    if (key === CURRENT_RUN_KEY) {
      if (isRecord(value)) {
        const runId = runIdOf(value.fingerprint, value.data);
        legacy.push({ ...value, runId, role: 'training', legacy: 'current' });
        current = runId;
        legacyCurrent = true;
      } else if (typeof value === 'object' && value !== null && typeof (value as { runId?: unknown }).runId === 'string') {
        current = (value as { runId: string }).runId;
      }
      continue;
    }
    if (!isRecord(value)) continue;
    const rest = key.slice(RUN_PREFIX.length);
    if (rest.includes(':')) {
      runs.set(rest, { ...stripLegacy({ ...value, runId: rest, role: value.role ?? 'training' }) });
    } else {
      legacy.push({ ...value, runId: runIdOf(value.fingerprint, value.data), role: 'training', legacy: 'fingerprint' });
      legacyKeys.push(key);
    }
  }
  // A record under its run id wins over a legacy one; between legacy ones, the newest.
  for (const r of newestFirst(legacy)) if (!runs.has(r.runId)) runs.set(r.runId, r);
  return { current, runs, legacyCurrent, legacyKeys };
}

/** The writes that migrate legacy keys, for a batch that itself writes the runs in `skip`. */
function migrationOps(state: RunState, skip: ReadonlySet<string>): MetaOperation[] {
  const ops: MetaOperation[] = [];
  for (const r of state.runs.values()) {
    if (r.legacy !== undefined && !skip.has(r.runId)) ops.push({ type: 'put', key: runKey(r.runId), value: stripLegacy(r) });
  }
  for (const key of state.legacyKeys) ops.push({ type: 'del', key });
  if (state.legacyCurrent && state.current !== undefined) ops.push({ type: 'put', key: CURRENT_RUN_KEY, value: { runId: state.current } });
  return ops;
}

function stripLegacy(r: StoredRun): RunMeta {
  const { legacy: _legacy, ...run } = r;
  return run;
}

function newestFirst<T extends { createdAt: string; runId: string }>(runs: T[]): T[] {
  return [...runs].sort((a, b) => (a.createdAt === b.createdAt ? (a.runId < b.runId ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1));
}

/** Records written before augmentation runs existed lack these fields. */
function withDefaults(r: RunMeta): RunMeta {
  return { ...r, views: r.views ?? 1, generation: r.generation ?? 0, seed: r.seed ?? 0, plainView0: r.plainView0 ?? false };
}

/** The entries a run reads at `generation` (default: its recorded one). */
export function selectorOf(run: Pick<RunMeta, 'augment' | 'generation' | 'views'>, generation = run.generation): EntrySelector {
  return { ...(run.augment === undefined ? {} : { aug: run.augment }), generation, views: run.views };
}
