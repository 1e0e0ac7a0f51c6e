/**
 * Run records (issue #11 item 2): every data set of a model keeps its own record under
 * `run:<fingerprint>:<dataHash>`, the current-training-run pointer is written in the same batch
 * as the record it names, and a validation extraction never moves it — so a kill anywhere in
 * `train-head --validation-data` leaves the training data current.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { extractFeatures, FeatureCache, isSplitfitError, saveModel, type SplitfitError, trainHead } from '../src/index.js';
import { shortFingerprint } from '../src/cache/keys.js';
import type { MetaBatchOptions, MetaOperation } from '../src/cache/types.js';
import {
  CURRENT_RUN_KEY,
  extractingKey,
  listExtracting,
  listRuns,
  readRun,
  retireRun,
  type RunInput,
  runIdOf,
  runKey,
  runReferences,
  saveRun,
} from '../src/extract/run-meta.js';
import { withWriteFault } from './helpers/level-faults.js';
import { residualToyModel } from './helpers/models.js';

const FP_A = 'a1'.repeat(32);
const FP_A2 = 'a1a1' + 'c3'.repeat(30); // shares the 4-character prefix "a1a1" with FP_A
const FP_B = 'b2'.repeat(32);

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-runs-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirCount = 0;
async function openFresh(): Promise<FeatureCache> {
  return FeatureCache.open(join(root, `cache-${dirCount++}`), { command: 'vitest run-records' });
}

function run(fingerprint: string, data: string, extra: Partial<RunInput> = {}): RunInput {
  return {
    model: '/models/toy/model.json',
    boundary: 'block2_add',
    fingerprint,
    inputSize: [16, 16],
    channels: 3,
    preprocess: 'unit',
    dtype: 'float32',
    featureShape: [16, 16, 8],
    labels: ['cat', 'dog'],
    data,
    samples: [
      { id: `${data.replace(/\W/g, '')}-s1`, label: 0 },
      { id: `${data.replace(/\W/g, '')}-s2`, label: 1 },
    ],
    views: 1,
    generation: 0,
    seed: 0,
    plainView0: false,
    createdAt: '2026-12-01T07:00:00.000Z',
    ...extra,
  };
}

async function usageError(promise: Promise<unknown>, code = 'SPLITFIT_USAGE'): Promise<SplitfitError> {
  try {
    await promise;
  } catch (err) {
    if (isSplitfitError(err) && err.code === code) return err;
    throw err;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('run ids and the current pointer', () => {
  it('keeps one record per (fingerprint, data set); the pointer names the newest training run', async () => {
    await using cache = await openFresh();
    const a = await saveRun(cache, run(FP_A, '/data/photos-2025'), { current: true });
    const b = await saveRun(cache, run(FP_A, '/data/photos-2026', { createdAt: '2026-12-01T08:00:00.000Z' }), { current: true });
    expect(a.runId).toBe(runIdOf(FP_A, '/data/photos-2025'));
    expect(a.runId).toMatch(new RegExp(`^${FP_A}:[0-9a-f]{16}$`));
    expect(b.runId).not.toBe(a.runId);
    expect(await cache.getMeta(CURRENT_RUN_KEY)).toEqual({ runId: b.runId });
    expect((await cache.getMeta<{ data: string }>(runKey(a.runId)))?.data).toBe('/data/photos-2025');
    const list = await listRuns(cache);
    expect(list.current).toBe(b.runId);
    expect(list.runs.map((r) => [r.data, r.role])).toEqual([
      ['/data/photos-2025', 'training'],
      ['/data/photos-2026', 'training'],
    ]);
    expect((await readRun(cache)).data).toBe('/data/photos-2026');
  });

  it('a "data" record never moves the pointer and never replaces a training record of the same data set', async () => {
    await using cache = await openFresh();
    const train = await saveRun(cache, run(FP_A, '/data/train', { augment: 'flip:h', views: 4, generation: 3 }), { current: true });
    await saveRun(cache, run(FP_A, '/data/val', { role: 'data' }), { current: false });
    expect((await readRun(cache)).runId).toBe(train.runId);
    // The training folder used as validation data: its record (augmentation, generation) is kept.
    const kept = await saveRun(cache, run(FP_A, '/data/train', { role: 'data', createdAt: '2026-12-02T00:00:00.000Z' }), { current: false });
    expect(kept).toMatchObject({ runId: train.runId, role: 'training', augment: 'flip:h', views: 4, generation: 3 });
    expect(await readRun(cache)).toMatchObject({ runId: train.runId, augment: 'flip:h', generation: 3 });
    expect((await listRuns(cache)).runs.map((r) => r.role).sort()).toEqual(['data', 'training']);
    await expect(saveRun(cache, run(FP_A, '/data/val', { role: 'data' }), { current: true })).rejects.toThrow(TypeError);
  });

  it('writes the record, its sample records and the pointer in one batch (one batchMeta call)', async () => {
    await using cache = await openFresh();
    const calls: { ops: readonly MetaOperation[]; options?: MetaBatchOptions }[] = [];
    const original = cache.batchMeta.bind(cache);
    cache.batchMeta = async (ops, options) => {
      calls.push({ ops, ...(options === undefined ? {} : { options }) });
      return original(ops, options);
    };
    const r = run(FP_A, '/data/train');
    await saveRun(cache, r, { current: true, samples: r.samples.map((s) => ({ id: s.id, source: `/data/train/${s.id}.png`, label: 'cat' })) });
    expect(calls).toHaveLength(1);
    const runId = runIdOf(FP_A, '/data/train');
    expect(calls[0]!.ops.map((o) => `${o.type} ${o.key}`)).toEqual([`put ${runKey(runId)}`, `put ${CURRENT_RUN_KEY}`, `del ${extractingKey(runId)}`]);
    expect(calls[0]!.options?.putSamples).toHaveLength(2);
    expect((await cache.getSample(r.samples[0]!.id))?.source).toBe(`/data/train/${r.samples[0]!.id}.png`);
  });

  it('batchMeta validates every operation before writing any', async () => {
    await using cache = await openFresh();
    await expect(cache.batchMeta([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'fingerprints', value: [] }])).rejects.toThrow(/owned by the cache/);
    await expect(cache.batchMeta([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'b', value: undefined }])).rejects.toThrow(TypeError);
    expect(await cache.getMeta('a')).toBeUndefined();
    await cache.batchMeta([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'b', value: 2 }, { type: 'del', key: 'a' }]);
    expect([await cache.getMeta('a'), await cache.getMeta('b')]).toEqual([undefined, 2]);
  });
});

describe('readRun by fingerprint prefix', () => {
  it('takes any unique prefix of at least 4 characters; refuses shorter and ambiguous ones, naming the matches', async () => {
    await using cache = await openFresh();
    await saveRun(cache, run(FP_A, '/data/a'), { current: false });
    await saveRun(cache, run(FP_A2, '/data/a2'), { current: false });
    await saveRun(cache, run(FP_B, '/data/b'), { current: true });
    expect((await readRun(cache, { fingerprint: 'b2b2' })).data).toBe('/data/b');
    expect((await readRun(cache, { fingerprint: FP_A })).data).toBe('/data/a');
    expect((await readRun(cache, { fingerprint: 'a1a1c3' })).data).toBe('/data/a2');
    const short = await usageError(readRun(cache, { fingerprint: 'b2b' }));
    expect(short.message).toContain('at least 4');
    const ambiguous = await usageError(readRun(cache, { fingerprint: 'a1a1' }));
    expect(ambiguous.message).toContain(shortFingerprint(FP_A));
    expect(ambiguous.message).toContain(shortFingerprint(FP_A2));
    const missing = await usageError(readRun(cache, { fingerprint: 'ffff' }), 'SPLITFIT_CACHE_MISMATCH');
    expect(missing.message).toContain('ffff');
  });

  it('prefers the current run, then the newest training record of that fingerprint', async () => {
    await using cache = await openFresh();
    await saveRun(cache, run(FP_A, '/data/old', { createdAt: '2026-01-01T00:00:00.000Z' }), { current: false });
    await saveRun(cache, run(FP_A, '/data/new', { createdAt: '2026-06-01T00:00:00.000Z' }), { current: false });
    await saveRun(cache, run(FP_A, '/data/val', { role: 'data', createdAt: '2026-09-01T00:00:00.000Z' }), { current: false });
    expect((await readRun(cache, { fingerprint: 'a1a1a1' })).data).toBe('/data/new');
    await saveRun(cache, run(FP_A, '/data/old', { createdAt: '2026-01-01T00:00:00.000Z' }), { current: true });
    expect((await readRun(cache, { fingerprint: 'a1a1a1' })).data).toBe('/data/old');
  });
});

describe('legacy caches (full records under run:current and run:<fingerprint>)', () => {
  it('are read as they are, then migrated by the next record write in that same batch', async () => {
    await using cache = await openFresh();
    const legacyA = run(FP_A, '/data/a'); // no runId, no role: the old RunMeta
    const legacyB = { ...legacyA, fingerprint: FP_B, data: '/data/b' };
    delete (legacyB as { views?: number }).views; // written before augmentation runs existed
    await cache.putMeta(`run:${FP_A}`, legacyA);
    await cache.putMeta(`run:${FP_B}`, legacyB);
    await cache.putMeta(CURRENT_RUN_KEY, legacyB);

    const current = await readRun(cache);
    expect(current).toMatchObject({ runId: runIdOf(FP_B, '/data/b'), role: 'training', data: '/data/b', views: 1 });
    expect(Object.keys(current)).not.toContain('legacy'); // read-side bookkeeping never leaks into a record
    expect((await listRuns(cache)).runs.map((r) => r.runId).sort()).toEqual([runIdOf(FP_A, '/data/a'), runIdOf(FP_B, '/data/b')].sort());

    await saveRun(cache, run(FP_A, '/data/val', { role: 'data' }), { current: false });
    expect(await cache.getMeta(`run:${FP_A}`)).toBeUndefined();
    expect(await cache.getMeta(`run:${FP_B}`)).toBeUndefined();
    expect(await cache.getMeta(CURRENT_RUN_KEY)).toEqual({ runId: runIdOf(FP_B, '/data/b') });
    expect(await cache.getMeta(runKey(runIdOf(FP_A, '/data/a')))).toMatchObject({ runId: runIdOf(FP_A, '/data/a'), data: '/data/a' });
    expect((await readRun(cache)).data).toBe('/data/b');
    expect((await listRuns(cache)).runs).toHaveLength(3);
    // A refresh commit writes the run it read back: the stored record is a plain RunMeta.
    await saveRun(cache, { ...current, generation: 1 }, { current: false });
    const stored = await cache.getMeta<Record<string, unknown>>(runKey(current.runId));
    expect(stored).toMatchObject({ runId: current.runId, generation: 1, role: 'training' });
    expect(Object.keys(stored!)).not.toContain('legacy');
  });
});

describe('retireRun', () => {
  it('retires a run id or every record of a fingerprint prefix; refuses the current run and unknown ids', async () => {
    await using cache = await openFresh();
    const old = await saveRun(cache, run(FP_A, '/data/2024'), { current: false });
    await saveRun(cache, run(FP_A, '/data/2025'), { current: false });
    const cur = await saveRun(cache, run(FP_B, '/data/2026'), { current: true });
    expect((await retireRun(cache, old.runId)).map((r) => r.data)).toEqual(['/data/2024']);
    expect(await cache.getMeta(runKey(old.runId))).toBeUndefined();
    expect((await retireRun(cache, 'a1a1')).map((r) => r.data)).toEqual(['/data/2025']);
    const refused = await usageError(retireRun(cache, cur.runId));
    expect(refused.message).toContain('current training run');
    expect(refused.message).toContain('/data/2026');
    const unknown = await usageError(retireRun(cache, 'a1a1'));
    expect(unknown.message).toContain('/data/2026'); // lists what is recorded
    expect((await listRuns(cache)).runs.map((r) => r.runId)).toEqual([cur.runId]);
    // A whole run id retired already (a rerun after a kill) is no error: nothing to retire.
    expect(await retireRun(cache, old.runId)).toEqual([]);
  });

  it('runReferences collects samples and committed generations per fingerprint', () => {
    const refs = runReferences([
      { ...run(FP_A, '/x', { augment: 'flip:h', generation: 2 }), runId: runIdOf(FP_A, '/x'), role: 'training' },
      { ...run(FP_A, '/y'), runId: runIdOf(FP_A, '/y'), role: 'data' },
    ]);
    // The un-augmented run's samples also reference the pooled namespace its maps are read through.
    expect([...refs.keys()]).toEqual([FP_A, `${FP_A}.gap`]);
    expect([...refs.get(FP_A)!.samples].sort()).toEqual(['x-s1', 'x-s2', 'y-s1', 'y-s2']);
    expect(refs.get(FP_A)!.committed).toEqual([{ aug: 'flip:h', generation: 2 }, { generation: 0 }]);
    expect([...refs.get(`${FP_A}.gap`)!.samples].sort()).toEqual(['y-s1', 'y-s2']);
    expect(refs.get(`${FP_A}.gap`)!.committed).toEqual([{ generation: 0 }]);
  });
});

describe('train-head --validation-data, killed after each of its cache meta writes', () => {
  let model: string;
  let train: string;
  let val: string;
  let seeded: string;

  beforeAll(async () => {
    const toy = residualToyModel(1);
    model = join(root, 'toy');
    await saveModel(toy, model);
    toy.dispose();
    const made = await makeEmojiDataset({ out: join(root, 'emoji'), categories: ['Animals & Nature', 'Food & Drink'], perClass: 8, testFraction: 0.5 });
    expect(made).toMatchObject({ train: 8, test: 8 });
    train = join(root, 'emoji', 'train');
    val = join(root, 'emoji', 'test');
    seeded = join(root, 'seeded');
    await extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: train, cache: seeded });
  });

  it('extractFeatures `record`: false records nothing, "data" records without moving the pointer, a bad value fails before any work', async () => {
    const dir = join(root, 'record-option');
    await cp(seeded, dir, { recursive: true });
    await using cache = await FeatureCache.open(dir, { command: 'vitest record option' });
    const trainRun = await readRun(cache);
    const bad = { model: join(model, 'model.json'), boundary: 'block2_add', data: val, cache, record: 'validation' } as unknown as Parameters<typeof extractFeatures>[0];
    await expect(extractFeatures(bad)).rejects.toThrow(/`record` must be 'training', 'data' or false/);
    expect(await cache.countEntries(trainRun.fingerprint)).toBe(8); // nothing extracted
    const quiet = await extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: val, cache, record: false });
    expect(quiet).toMatchObject({ extracted: 8, entries: 16 });
    expect((await listRuns(cache)).runs.map((r) => r.data)).toEqual([train]);
    await extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: val, cache, record: 'data' });
    const list = await listRuns(cache);
    expect(list.runs.map((r) => [r.data, r.role])).toEqual([
      [train, 'training'],
      [val, 'data'],
    ]);
    expect(list.current).toBe(trainRun.runId);
    await extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: val, cache });
    expect((await readRun(cache)).data).toBe(val); // the default, 'training', moves it
  });

  it('an extraction marks its samples before its first batch and clears the mark when it records its run', async () => {
    const dir = join(root, 'marker');
    await cp(seeded, dir, { recursive: true });
    await using cache = await FeatureCache.open(dir, { command: 'vitest marker' });
    const { writes } = await withWriteFault(2, () => extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: val, cache }));
    expect(writes).toBeGreaterThanOrEqual(2);
    const [marker, ...more] = await listExtracting(cache);
    expect(more).toEqual([]);
    expect(marker).toMatchObject({ data: val, generation: 0, runId: runIdOf(marker!.fingerprint, val) });
    expect(marker!.samples).toHaveLength(8);
    expect((await readRun(cache)).data).toBe(train);
    await extractFeatures({ model: join(model, 'model.json'), boundary: 'block2_add', data: val, cache });
    expect(await listExtracting(cache)).toEqual([]);
    expect(await cache.getMeta(extractingKey(marker!.runId))).toBeUndefined();
  });

  it('the training data stays the current run at every kill point, and the validation set gets its own record', async () => {
    class Killed extends Error {}
    let points = 0;
    for (let k = 1; ; k++) {
      const dir = join(root, `kill-${k}`);
      await cp(seeded, dir, { recursive: true });
      let writes = 0;
      let killed = false;
      {
        await using cache = await FeatureCache.open(dir, { command: `kill after meta write ${k}` });
        // Every meta write goes through putMeta or batchMeta: stop the job right after the k-th.
        const after = async <T>(write: Promise<T>): Promise<T> => {
          const result = await write;
          if (++writes === k) {
            killed = true;
            throw new Killed(`killed after meta write ${k}`);
          }
          return result;
        };
        const putMeta = cache.putMeta.bind(cache);
        const batchMeta = cache.batchMeta.bind(cache);
        cache.putMeta = (key, value) => after(putMeta(key, value));
        cache.batchMeta = (ops, options) => after(batchMeta(ops, options));
        await trainHead({ cache, out: join(root, `out-${k}`), validationData: val, epochs: 1, batchSize: 4, seed: 1 }).catch((err: unknown) => {
          if (!(err instanceof Killed)) throw err;
        });
      }
      await using reopened = await FeatureCache.open(dir, { command: 'vitest check' });
      const current = await readRun(reopened);
      expect(current.data, `kill point ${k}`).toBe(train);
      expect(current.role).toBe('training');
      const { runs } = await listRuns(reopened);
      if (!killed) {
        // The job ran to the end: every write was a kill point. Its validation set has a record of its own.
        expect(runs.find((r) => r.data === val)?.role).toBe('data');
        expect(await listExtracting(reopened)).toEqual([]);
        break;
      }
      points++;
      await rm(dir, { recursive: true, force: true });
    }
    // The validation extraction's marker, then its record: no put-back write exists any more.
    expect(points).toBe(2);
  }, 120_000);

  it('…and at every LevelDB write of the job (feature batches included), then a rerun completes with it', async () => {
    let points = 0;
    for (let k = 1; ; k++) {
      const dir = join(root, `write-kill-${k}`);
      await cp(seeded, dir, { recursive: true });
      let killed = false;
      {
        await using cache = await FeatureCache.open(dir, { command: `kill at LevelDB write ${k}` });
        const job = () => trainHead({ cache, out: join(root, `write-out-${k}`), validationData: val, epochs: 1, batchSize: 4, seed: 1 });
        killed = (await withWriteFault(k, job)).killed;
      }
      await using reopened = await FeatureCache.open(dir, { command: 'vitest check' });
      expect((await readRun(reopened)).data, `kill point ${k}`).toBe(train);
      if (!killed) break;
      points++;
      const rerun = await trainHead({ cache: reopened, out: join(root, `write-rerun-${k}`), validationData: val, epochs: 1, batchSize: 4, seed: 1 });
      expect(rerun.labels).toHaveLength(2);
      expect((await readRun(reopened)).data, `after the rerun of kill point ${k}`).toBe(train);
      expect((await listRuns(reopened)).runs.map((r) => [r.data, r.role])).toEqual([
        [train, 'training'],
        [val, 'data'],
      ]);
    }
    expect(points).toBeGreaterThanOrEqual(2); // the validation feature batch(es), then its record
    console.log(`train-head --validation-data: ${points} LevelDB write points, all consistent`);
  }, 300_000);
});
