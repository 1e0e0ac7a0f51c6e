import * as tf from '@tensorflow/tfjs';
import PQueue from 'p-queue';
import type { FeatureDType } from '../cache/codec.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { type AugmentSpec, augmentPixels, canonicalAugmentSpec, parseAugmentSpec } from '../data/augment.js';
import { decodeImage } from '../data/decode.js';
import { preprocessInto } from '../data/preprocess.js';
import { openDataSource } from '../data/sources.js';
import type { DataSource, Sample, Task } from '../data/types.js';
import { isSplitfitError, SplitfitError, throwIfAborted } from '../errors.js';
import { MAX_INDEX } from '../cache/keys.js';
import { pooledEntries, pooledNamespace } from '../cache/pooled.js';
import { checkNonNegativeInt, checkPositiveInt } from '../options.js';
import { warnIfSlowBackend } from '../backend/resolve.js';
import { Batcher } from './batcher.js';
import { type BaseRunInfo, type PrepareOptions, type PreparedBase, prepareBase } from './prepare.js';
import { baseRunFields, markExtracting, type RunInput, type RunMeta, saveRun } from './run-meta.js';

export interface ExtractOptions extends PrepareOptions {
  /** Data set: a class-folder directory, a `.csv`/`.jsonl` manifest, an IDX images file, or an opened source. */
  data: string | DataSource;
  /** Cache directory or an open cache. @default './cache' */
  cache?: string | FeatureCache;
  /** Samples per base forward pass. @default the prepared base's `batchSize` (4 for MobileNetV2 at 224×224) */
  batchSize?: number;
  /** Images read and decoded at once (sharp runs them on libuv threads). @default 4 */
  concurrency?: number;
  /** Count undecodable images as failed instead of stopping. @default false */
  skipBad?: boolean;
  /** IDX only: names for numeric labels. */
  classNames?: readonly string[];
  /**
   * Manifests only: read the targets as this task instead of the one the columns imply (see `openManifest`).
   * The task is recorded in the run record, not in the fingerprint: the same features serve every task.
   * @default the manifest's columns decide
   */
  task?: Task;
  /** Reuse a prepared base (its fingerprint) instead of loading `model`. */
  prepared?: PreparedBase;
  /** Augmentation applied before the base, e.g. `flip:h,crop:0.9,rotate:10`. @default none */
  augment?: string;
  /** Augmented views cached per sample; needs `augment`. @default 1 */
  views?: number;
  /** Generation of the views (each has new random draws). @default 0 */
  generation?: number;
  /** Seed of the augmented views. @default 0 */
  seed?: number;
  /** Make view 0 the un-augmented image. @default false */
  plainView0?: boolean;
  /**
   * How to record the data set in the cache once it is extracted (see `extract/run-meta.ts`):
   * `'training'` records it and makes it the current training run (what a plain train-head
   * trains on); `'data'` records it without moving that pointer (train-head's validation data);
   * `false` records nothing (train-head's background refresh, whose run is already recorded).
   * @default 'training'
   */
  record?: RunRecording;
  /** Stops extraction between samples (`SPLITFIT_INTERRUPTED`); what was written stays, and a rerun resumes. */
  signal?: AbortSignal;
  onProgress?: (event: ExtractEvent) => void;
}

/** See {@link ExtractOptions.record}. */
export type RunRecording = 'training' | 'data' | false;

export type ExtractEvent =
  | { type: 'start'; total: number; toExtract: number; fingerprint: string }
  | { type: 'warning'; message: string }
  | { type: 'extract'; done: number; total: number; generation: number }
  | { type: 'failed'; source: string; reason: string };

export interface ExtractResult {
  fingerprint: string;
  /** Distinct samples in the data set (files with the same bytes count once). */
  total: number;
  /** Base forward passes in this run, one per sample and view (0 when everything was cached). */
  extracted: number;
  /** Samples whose features were already cached. */
  skipped: number;
  /** Files left out because another file has the same bytes (see `DataSource.duplicates`); never counted as skipped. */
  duplicates: number;
  /** What the data listing left out on purpose (see `DataSource.notes`), for the caller to show. */
  notes: string[];
  failed: number;
  failures: { source: string; reason: string }[];
  /** Feature entries stored for this fingerprint after the run. */
  entries: number;
  featureShape: number[];
  backend: string;
  /** Canonical augmentation spec, views per sample and generation of this run. */
  augment?: string;
  views: number;
  generation: number;
  /** Time spent extracting, after the model was loaded. */
  extractSeconds: number;
  /** What ran: the preprocessing (and where it came from), input size, batch size and how the base computed. */
  base: {
    preprocess: string;
    presetSource: PreparedBase['presetSource'];
    inputSize: [number, number];
    batchSize: number;
    run: BaseRunInfo | undefined;
  };
}

interface ViewPlan {
  spec: AugmentSpec | undefined;
  aug: string | undefined;
  views: number;
  generation: number;
  seed: number;
  plainView0: boolean;
}

/**
 * The one validator of `extractFeatures`'s own options (the model's are `prepareBase`'s): every value,
 * and the rules spanning two options, checked before any model loads or cache opens.
 */
export function validateExtractOptions(options: ExtractOptions): ViewPlan {
  if (typeof options !== 'object' || options === null) throw new TypeError('extractFeatures needs an options object');
  if (options.batchSize !== undefined) checkPositiveInt('batchSize', options.batchSize);
  if (options.concurrency !== undefined) checkPositiveInt('concurrency', options.concurrency);
  const views = checkPositiveInt('views', options.views ?? 1, MAX_INDEX + 1);
  const generation = options.generation ?? 0;
  if (!Number.isInteger(generation) || generation < 0 || generation > MAX_INDEX) throw new TypeError(`generation must be an integer in [0, ${MAX_INDEX}], got ${generation}`);
  const seed = checkNonNegativeInt('seed', options.seed ?? 0);
  if (options.record !== undefined && options.record !== false && options.record !== 'training' && options.record !== 'data') {
    throw new TypeError(`extractFeatures option \`record\` must be 'training', 'data' or false, received ${JSON.stringify(options.record)}`);
  }
  if (options.augment === undefined) {
    if (views !== 1) throw new SplitfitError('SPLITFIT_USAGE', '`views` needs `augment`: without augmentation every view would be the same image', { option: 'views' });
    return { spec: undefined, aug: undefined, views: 1, generation: 0, seed: 0, plainView0: false };
  }
  const spec = parseAugmentSpec(options.augment);
  return { spec, aug: canonicalAugmentSpec(spec), views, generation, seed, plainView0: options.plainView0 ?? false };
}

/**
 * Runs the frozen base once, in inference mode, over every sample not yet cached, and stores
 * the features in LevelDB under the base's fingerprint. Resumable: cached samples are skipped,
 * and each batch is written atomically, so an interrupted run loses at most one batch of work.
 */
export async function extractFeatures(options: ExtractOptions): Promise<ExtractResult> {
  validateExtractOptions(options);
  const prepared = options.prepared ?? (await prepareBase(options));
  const source = typeof options.data === 'string' ? await openDataSource(options.data, { classNames: options.classNames, ...(options.task === undefined ? {} : { task: options.task }) }) : options.data;
  const cache = typeof options.cache === 'object' ? options.cache : await FeatureCache.open(options.cache ?? './cache');
  try {
    return await extractInto(cache, prepared, source, options);
  } finally {
    if (typeof options.cache !== 'object') await cache.close();
  }
}

async function extractInto(cache: FeatureCache, p: PreparedBase, source: DataSource, options: ExtractOptions): Promise<ExtractResult> {
  const started = performance.now();
  const batchSize = options.batchSize ?? p.batchSize;
  const concurrency = options.concurrency ?? 4;
  const plan = validateExtractOptions(options);
  if (source.samples.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `no samples in ${source.root}`);

  const selector = { ...(plan.aug === undefined ? {} : { aug: plan.aug }), generation: plan.generation };

  // Work items: every (sample, view) without an entry; a sample is decoded once for all its views.
  const unique = [...new Map(source.samples.map((s) => [s.id, s])).values()];
  const missingViews = new Map<string, number[]>();
  for (let v = 0; v < plan.views; v++) {
    for (const id of await cache.missingSampleIds(p.fingerprint, unique.map((s) => s.id), { ...selector, view: v })) {
      missingViews.set(id, [...(missingViews.get(id) ?? []), v]);
    }
  }
  const todo = unique.filter((s) => missingViews.has(s.id));
  const toExtract = todo.reduce((n, s) => n + missingViews.get(s.id)!.length, 0);
  options.onProgress?.({ type: 'start', total: unique.length, toExtract, fingerprint: p.fingerprint });
  if (toExtract > 0) warnIfSlowBackend(options.onProgress && ((message) => options.onProgress!({ type: 'warning', message })));
  // Until the run is recorded, its new entries belong to no run: mark them so gc keeps them. The mark
  // is written just before the first batch, so a run that fails before writing anything leaves none.
  let marked = (options.record ?? 'training') === false;
  const markOnce = async (): Promise<void> => {
    if (marked) return;
    marked = true;
    await markExtracting(cache, {
      fingerprint: p.fingerprint,
      data: source.root,
      samples: todo.map((s) => s.id),
      ...(plan.aug === undefined ? {} : { augment: plan.aug }),
      generation: plan.generation,
      startedAt: new Date().toISOString(),
    });
  };

  const failures: { source: string; reason: string }[] = [];
  const fail = (sample: Sample, err: unknown): void => {
    const decodeError = isSplitfitError(err, 'SPLITFIT_DATA_DECODE') || isSplitfitError(err, 'SPLITFIT_NUMERIC');
    if (!options.skipBad || !decodeError) throw err;
    const reason = err.message;
    failures.push({ source: sample.source, reason });
    options.onProgress?.({ type: 'failed', source: sample.source, reason });
  };

  interface Item {
    sample: Sample;
    view: number;
    /** The model's input pixels (uint8), preprocessed straight into the batch buffer by `forward`. */
    pixels: Uint8Array;
  }
  let extracted = 0;
  // Un-augmented [h, w, c] maps get their pooled namespace written with them: a `gap`-first head
  // (the default) then reads 1/(h·w) of the bytes from its first run on (`cache/pooled.ts`).
  const pooledFingerprint = p.featureShape.length === 3 && plan.aug === undefined ? pooledNamespace(p.fingerprint) : undefined;
  const runBatch = async (items: Item[]): Promise<void> => {
    const features = forward(p, items.map((i) => i.pixels));
    const per = p.featureShape.reduce((a, b) => a * b, 1);
    const entries: { sampleId: string; view: number; generation: number; aug?: string; data: Float32Array; shape: number[] }[] = [];
    items.forEach((item, i) => {
      const data = features.subarray(i * per, (i + 1) * per);
      if (!allFinite(data)) {
        fail(item.sample, new SplitfitError('SPLITFIT_NUMERIC', `the base produced NaN/Inf features for ${item.sample.source}; check the model and preprocessing`));
        return;
      }
      entries.push({ sampleId: item.sample.id, view: item.view, ...selector, data, shape: p.featureShape });
    });
    await markOnce();
    // Maps and their pooled vectors in one atomic batch (`cache/pooled.ts`).
    const pooled = pooledFingerprint === undefined ? [] : [{ fingerprint: pooledFingerprint, entries: pooledEntries(entries), dtype: 'float32' as const }];
    await cache.putFeatureSets([{ fingerprint: p.fingerprint, entries, dtype: p.dtype }, ...pooled]);
    extracted += items.length;
    options.onProgress?.({ type: 'extract', done: extracted, total: toExtract, generation: plan.generation });
  };

  // Decoding runs on sharp's threads while the backend computes the previous batch; the queue
  // holds at most one batch of decoded samples beyond those in flight, so memory stays flat.
  const queue = new PQueue({ concurrency });
  const batcher = new Batcher<Item>(batchSize);
  let firstError: unknown;
  const [height, width] = p.inputSize;
  const target = { height, width, channels: p.channels };
  for (const sample of todo) {
    if (options.signal?.aborted) firstError ??= abortReason(options.signal);
    if (firstError !== undefined) break;
    await queue.onSizeLessThan(batchSize);
    void queue.add(async () => {
      try {
        const pixels = await decodeImage(await sample.load(), target, sample.source);
        for (const view of missingViews.get(sample.id)!) {
          const plain = plan.spec === undefined || (plan.plainView0 && view === 0);
          const viewPixels = plain
            ? pixels
            : augmentPixels(pixels, height, width, p.channels, plan.spec!, { seed: plan.seed, generation: plan.generation, sampleId: sample.id, view });
          batcher.push({ sample, view, pixels: viewPixels });
        }
      } catch (err) {
        try {
          fail(sample, err);
        } catch (fatal) {
          firstError ??= fatal;
        }
      }
    });
    while (batcher.isFull && firstError === undefined) await runBatch(batcher.take());
  }
  await queue.onIdle();
  while (batcher.length > 0 && firstError === undefined) await runBatch(batcher.take());
  if (firstError !== undefined) throw firstError;
  // Only a completed run is recorded: a failed one must not redirect train-head.
  const record = options.record ?? 'training';
  if (record !== false) await recordRun(cache, p, source, plan, options, record);

  return {
    fingerprint: p.fingerprint,
    total: unique.length,
    extracted,
    skipped: unique.length - todo.length,
    duplicates: source.samples.length - unique.length + (source.duplicates?.length ?? 0),
    notes: source.notes ?? [],
    failed: failures.length,
    failures,
    entries: await cache.countEntries(p.fingerprint),
    featureShape: p.featureShape,
    backend: tf.getBackend(),
    ...(plan.aug === undefined ? {} : { augment: plan.aug }),
    views: plan.views,
    generation: plan.generation,
    extractSeconds: (performance.now() - started) / 1000,
    base: { preprocess: p.preset, presetSource: p.presetSource, inputSize: p.inputSize, batchSize, run: p.runInfo() },
  };
}

/**
 * Records the run and its samples in the cache, so train-head needs no model or data flags:
 * record, sample records and (for a training run) the current-run pointer in one batch.
 */
async function recordRun(
  cache: FeatureCache,
  p: PreparedBase,
  source: DataSource,
  plan: ViewPlan,
  options: ExtractOptions,
  role: 'training' | 'data',
): Promise<void> {
  const run: RunInput = {
    ...baseRunFields(p),
    role,
    labels: source.labels,
    data: source.root,
    ...(options.classNames === undefined ? {} : { classNames: [...options.classNames] }),
    ...(source.task === undefined || source.task === 'classify' ? {} : { task: source.task }),
    samples: source.samples.map((s) => sampleRecord(s, source)),
    ...(plan.aug === undefined ? {} : { augment: plan.aug }),
    views: plan.views,
    generation: plan.generation,
    seed: plan.seed,
    plainView0: plan.plainView0,
    createdAt: new Date().toISOString(),
  };
  const samples = source.samples.map((s) => ({ id: s.id, source: s.source, ...(s.label === undefined ? {} : { label: s.label }) }));
  await saveRun(cache, run, { current: role === 'training', samples });
}

/** A sample in a run record: its class index, or (multilabel, regress) `label` 0 and its target vector `y`; `label` −1 when unlabeled. */
function sampleRecord(s: Sample, source: DataSource): RunMeta['samples'][number] {
  if (s.labelSet !== undefined) return { id: s.id, label: 0, y: source.labels.map((l) => (s.labelSet!.includes(l) ? 1 : 0)) };
  if (s.values !== undefined) return { id: s.id, label: 0, y: [...s.values] };
  return { id: s.id, label: s.label === undefined ? -1 : source.labels.indexOf(s.label) };
}

function abortReason(signal: AbortSignal): unknown {
  try {
    throwIfAborted(signal);
  } catch (err) {
    return err;
  }
  return undefined;
}

/** One inference-mode forward pass of the base over a batch of images (input pixels, preprocessed here). */
function forward(p: PreparedBase, images: Uint8Array[]): Float32Array {
  const [h, w] = p.inputSize;
  const per = h * w * p.channels;
  const flat = new Float32Array(images.length * per);
  images.forEach((img, i) => preprocessInto(img, p.channels, p.preset, flat, i * per));
  // Read the features outside tf.tidy: tidy walks its return value looking for tensors, and for
  // a typed array that is a for…in over every element (~0.3 s per batch of 32 × 7×7×1280 floats).
  const y = tf.tidy(() => p.run(tf.tensor4d(flat, [images.length, h, w, p.channels])));
  try {
    return y.dataSync() as Float32Array;
  } finally {
    y.dispose();
  }
}

/** A plain loop: `every(Number.isFinite)` costs ~0.6 ms per MobileNetV2 sample. */
function allFinite(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return false;
  return true;
}
