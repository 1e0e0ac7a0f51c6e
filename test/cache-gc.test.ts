/**
 * Reclaiming stale samples and honest stats (issue #11 items 9, 13 and 21; #10 item 2):
 * `cache gc` drops the entries and sample records no kept run references and says what it
 * freed; `cache retire` lets an old data set go; `cache stats` tells committed, incomplete and
 * orphaned entries apart; `cache verify --repair` names each deleted sample's own data set.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { encodedByteLength, encodeFeatures, headerByteLength } from '../src/cache/codec.js';
import { extractFeatures, FeatureCache, saveModel } from '../src/index.js';
import { featuresSublevelName, parseFeatureKey } from '../src/cache/keys.js';
import { poolRows } from '../src/cache/pooled.js';
import type { FingerprintReferences, GcResult } from '../src/cache/types.js';
import { collectGarbage } from '../src/extract/gc.js';
import { fingerprintsInUse } from '../src/extract/in-use.js';
import { trainHead } from '../src/job/train-head.js';
import { CURRENT_RUN_KEY, listExtracting, listRuns, readRun, type RunInput, runIdOf, saveRun } from '../src/extract/run-meta.js';
import { backendArgs, CLI, runCli } from './helpers/cli.js';
import { withWriteFault } from './helpers/level-faults.js';
import { residualToyModel } from './helpers/models.js';
import { diffSnapshots, makeToyFixture, snapshotCache, type ToyFixture } from './helpers/reliability.js';

/** The stored length of each namespace's entry of `sampleId` (values are zero-bitmap or dense, whichever is shorter). */
async function storedBytes(dir: string, fingerprints: readonly string[], sampleId: string): Promise<number[]> {
  const db = new Level<string, string>(dir, { createIfMissing: false });
  try {
    const sizes: number[] = [];
    for (const fp of fingerprints) {
      let bytes = 0;
      const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(fp), { valueEncoding: 'view' });
      for await (const [key, value] of sub.iterator()) if (parseFeatureKey(key)?.sampleId === sampleId) bytes += value.byteLength;
      sizes.push(bytes);
    }
    return sizes;
  } finally {
    await db.close();
  }
}

const FP = 'a1'.repeat(32);
const FP2 = 'b2'.repeat(32);
const DIM = 64;
const ENTRY = encodedByteLength([DIM], 'float32');

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-gc-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirs = 0;
const freshDir = (): string => join(root, `lib-${dirs++}`);

function entries(ids: readonly string[], extra: { aug?: string; generation?: number; view?: number } = {}) {
  return ids.map((sampleId, i) => ({ sampleId, data: Float32Array.from({ length: DIM }, (_, j) => i + j / 100), shape: [DIM], ...extra }));
}

const ids = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `s${String(from + i).padStart(3, '0')}`);

describe('FeatureCache.gc with the runs’ references', () => {
  it('drops orphaned entries and unreferenced sample records, exactly, and says how much it freed; dry run changes nothing', async () => {
    await using cache = await FeatureCache.open(freshDir(), { command: 'vitest gc' });
    await cache.putSamples(ids(0, 8).map((id) => ({ id, source: `/photos/${id}.png`, label: 'cat' })));
    await cache.putFeatures(FP, entries(ids(0, 8)), 'float32'); // 8 samples …
    await cache.putFeatures(FP, entries(ids(0, 8), { aug: 'flip:h', generation: 1, view: 1 }), 'float32'); // … × 2 entries
    await cache.putFeatures(FP2, entries(ids(0, 3)), 'float32');
    const references = new Map<string, FingerprintReferences>([[FP, { samples: new Set(ids(0, 5)), committed: [{ generation: 0 }] }]]);
    const expected: GcResult = {
      dryRun: true,
      dropped: [{ fingerprint: FP2, entries: 3, bytes: 3 * ENTRY }],
      orphaned: [{ fingerprint: FP, entries: 6, bytes: 6 * ENTRY }], // s005–s007, both entries each
      superseded: [{ fingerprint: FP, entries: 5, bytes: 5 * ENTRY }], // s000–s004's flip:h entries: no run reads flip:h
      samples: 3,
      freed: { entries: 14, bytes: 14 * ENTRY },
      kept: [FP],
    };
    expect(await cache.gc([FP], { dryRun: true, references })).toEqual(expected);
    expect(await cache.countEntries(FP)).toBe(16);
    expect(await cache.countEntries(FP2)).toBe(3);
    expect((await cache.stats()).samples).toBe(8);

    expect(await cache.gc([FP], { references })).toEqual({ ...expected, dryRun: false });
    expect(await cache.countEntries(FP)).toBe(5);
    expect(await cache.missingSampleIds(FP, ids(0, 5))).toEqual([]);
    expect(await cache.missingSampleIds(FP, ids(5, 8))).toEqual(ids(5, 8));
    expect(await cache.getSamples(ids(4, 6))).toEqual([{ source: '/photos/s004.png', label: 'cat' }, undefined]);
    expect(await cache.listFingerprints()).toEqual([FP]);
    // Idempotent: the next gc finds nothing (and so would one after a kill, the rest).
    expect((await cache.gc([FP], { references })).freed).toEqual({ entries: 0, bytes: 0 });
  });

  it('drops a chunked orphan set completely (more orphans than one read/delete chunk)', async () => {
    await using cache = await FeatureCache.open(freshDir(), { command: 'vitest gc' });
    await cache.putFeatures(FP, entries(ids(0, 300)), 'float32');
    const r = await cache.gc([FP], { references: new Map([[FP, { samples: new Set(ids(0, 10)), committed: [{ generation: 0 }] }]]) });
    expect(r.orphaned).toEqual([{ fingerprint: FP, entries: 290, bytes: 290 * ENTRY }]);
    expect(await cache.countEntries(FP)).toBe(10);
  });

  it('without references only whole fingerprints are dropped (the old contract)', async () => {
    await using cache = await FeatureCache.open(freshDir(), { command: 'vitest gc' });
    await cache.putSamples([{ id: 's000', source: 'x.png' }]);
    await cache.putFeatures(FP, entries(ids(0, 4)), 'float32');
    expect(await cache.gc([FP])).toEqual({ dryRun: false, dropped: [], orphaned: [], superseded: [], samples: 0, freed: { entries: 0, bytes: 0 }, kept: [FP] });
    expect(await cache.countEntries(FP)).toBe(4);
  });
});

describe('FeatureCache.stats with the runs’ references', () => {
  it('reports the committed generation, an incomplete one and orphaned entries separately', async () => {
    await using cache = await FeatureCache.open(freshDir(), { command: 'vitest stats' });
    const aug = 'flip:h';
    await cache.putFeatures(FP, entries(ids(0, 6), { aug, generation: 2 }), 'float32'); // committed
    await cache.putFeatures(FP, entries(ids(0, 2), { aug, generation: 3 }), 'float32'); // a refresh cut short
    await cache.putFeatures(FP, entries(ids(6, 9), { aug, generation: 2 }), 'float32'); // samples no run lists
    await cache.putFeatures(FP, entries(ids(0, 4), { aug, generation: 1 }), 'float32'); // the old generation, its delete killed
    await cache.putFeatures(FP, entries(ids(0, 1), { aug: 'crop:0.9' }), 'float32'); // an augmentation no run reads now
    const references = new Map([[FP, { samples: new Set(ids(0, 6)), committed: [{ aug, generation: 2 }] }]]);
    const [fp] = (await cache.stats({ references })).fingerprints;
    expect(fp).toEqual({
      fingerprint: FP,
      entries: 16,
      views: 1,
      bytes: 16 * ENTRY,
      diskBytes: expect.any(Number) as number,
      generation: 2, // not 3: the half-written generation is not the cache's
      generations: [0, 1, 2, 3],
      committed: [{ aug, generation: 2, entries: 6, bytes: 6 * ENTRY }],
      incomplete: [{ aug, generation: 3, entries: 2, bytes: 2 * ENTRY }],
      superseded: expect.arrayContaining([
        { aug, generation: 1, entries: 4, bytes: 4 * ENTRY },
        { aug: 'crop:0.9', generation: 0, entries: 1, bytes: ENTRY },
      ]) as unknown,
      orphaned: { entries: 3, bytes: 3 * ENTRY },
    });
    expect(fp?.superseded).toHaveLength(2);
    // Without references: the old numbers, no split.
    const [plain] = (await cache.stats()).fingerprints;
    expect(plain).toMatchObject({ entries: 16, generation: 3 });
    expect(plain?.committed).toBeUndefined();
    // A fingerprint no run references at all: every entry is orphaned.
    const [none] = (await cache.stats({ references: new Map() })).fingerprints;
    expect(none).toMatchObject({ committed: [], incomplete: [], superseded: [], orphaned: { entries: 16, bytes: 16 * ENTRY } });
    // gc keeps the committed and the incomplete generation, drops the rest.
    const gc = await cache.gc([FP], { references });
    expect(gc).toMatchObject({ orphaned: [{ fingerprint: FP, entries: 3 }], superseded: [{ fingerprint: FP, entries: 5 }] });
    expect(await cache.countEntries(FP)).toBe(8);
  });
});

describe('gc lists, it does not read every value', () => {
  it('fingerprintsInUse works from the registry and the run records (stats is never called)', async () => {
    await using cache = await FeatureCache.open(freshDir(), { command: 'vitest in-use' });
    await cache.putFeatures(FP, entries(ids(0, 2)), 'float32');
    cache.stats = () => Promise.reject(new Error('stats reads every feature value'));
    expect(await fingerprintsInUse(cache)).toEqual({ inUse: [], stale: [{ fingerprint: FP, reason: 'no cache-features run recorded for it' }] });
  });
});

describe('the pooled namespace follows its maps', () => {
  it('is stale when its maps are (with the reason), and kept while they are in use', async () => {
    await using cache = await FeatureCache.open(freshDir(), { command: 'vitest in-use pooled' });
    await cache.putFeatures(FP, entries(ids(0, 2)), 'float32');
    await cache.putFeatures(`${FP}.gap`, entries(ids(0, 2)), 'float32');
    const orphan = 'f'.repeat(64);
    await cache.putFeatures(`${orphan}.gap`, entries(ids(0, 1)), 'float32');
    expect(await fingerprintsInUse(cache)).toEqual({
      inUse: [],
      stale: [
        { fingerprint: FP, reason: 'no cache-features run recorded for it' },
        ...[
          { fingerprint: `${FP}.gap`, reason: 'pooled from stale features' },
          { fingerprint: `${orphan}.gap`, reason: 'pooled from features no longer cached' },
        ].sort((a, b) => (a.fingerprint < b.fingerprint ? -1 : 1)),
      ],
    });
  });

  it('cache-features writes <fp>.gap with the maps, a streamed gap head reads it, and `cache gc` keeps every entry while its run is in use', async () => {
    const dir = freshDir();
    const fx = await makeToyFixture(join(dir, 'fx'), 4);
    const cache = join(dir, 'cache');
    const cached = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--json', ...backendArgs()]);
    expect(cached.status, cached.stderr).toBe(0);
    const fingerprint = cached.json['fingerprint'] as string;
    {
      await using c = await FeatureCache.open(cache, { command: 'vitest check', readOnly: true });
      expect((await c.listFingerprints()).sort()).toEqual([fingerprint, `${fingerprint}.gap`].sort());
      expect(await c.countEntries(`${fingerprint}.gap`)).toBe(await c.countEntries(fingerprint));
      // Each pooled entry is its map's global average, the value the lazy path would make.
      for await (const batch of c.iterateFeatures(fingerprint)) {
        for (const e of batch) {
          const pooled = await c.getFeatures(`${fingerprint}.gap`, e.sampleId);
          expect(pooled?.data).toEqual(poolRows(e.data, e.shape));
        }
      }
    }
    // Streamed (a budget of 1 byte): reads the pooled namespace.
    const trained = await trainHead({ cache, out: join(dir, 'out'), learningRate: 0.01, epochs: 2, memoryBudget: 1 });
    expect(trained.mode).toBe('stream');
    trained.model.dispose();
    trained.head.dispose();
    {
      await using c = await FeatureCache.open(cache, { command: 'vitest check', readOnly: true });
      expect((await c.listFingerprints()).sort()).toEqual([fingerprint, `${fingerprint}.gap`].sort());
    }
    const gc = await runCli(['cache', 'gc', '--cache', cache, '--dry-run', '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.json['dropped']).toEqual([]);
    expect(gc.json['orphaned']).toEqual([]);
    expect(gc.json['superseded']).toEqual([]);
    const stats = await runCli(['cache', 'stats', '--cache', cache, '--json']);
    const pooled = (stats.json['fingerprints'] as { fingerprint: string; entries: number; committed: { entries: number }[]; orphaned: { entries: number } }[]).find((x) => x.fingerprint === `${fingerprint}.gap`)!;
    expect(pooled.orphaned.entries).toBe(0);
    expect(pooled.committed.reduce((n, g) => n + g.entries, 0)).toBe(pooled.entries);
    // The human listing tells the pooled namespace from its maps.
    const human = await runCli(['cache', 'stats', '--cache', cache]);
    expect(human.stdout).toContain(`  ${fingerprint.slice(0, 12)}.gap  ${pooled.entries} entries`);
    expect(human.stdout).toContain('(pooled vectors of its maps, written with them)');
  });
});

describe('cache gc of a fingerprint whose model is gone', () => {
  it('drops its namespace and retires its run records (and the pointer naming one) before', async () => {
    const dir = freshDir();
    {
      await using cache = await FeatureCache.open(dir, { command: 'vitest setup' });
      await cache.putFeatures(FP, entries(ids(0, 3)), 'float32');
      const r: RunInput = {
        model: join(root, 'no-such-model', 'model.json'),
        boundary: 'block2_add',
        fingerprint: FP,
        inputSize: [16, 16],
        channels: 3,
        preprocess: 'unit',
        dtype: 'float32',
        featureShape: [DIM],
        labels: ['a', 'b'],
        data: '/photos',
        samples: ids(0, 3).map((id) => ({ id, label: 0 })),
        views: 1,
        generation: 0,
        seed: 0,
        plainView0: false,
        createdAt: new Date().toISOString(),
      };
      await saveRun(cache, r, { current: true, samples: ids(0, 3).map((id) => ({ id, source: `/photos/${id}.png` })) });
    }
    const gc = await runCli(['cache', 'gc', '--cache', dir, '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.json).toMatchObject({ dropped: [{ fingerprint: FP, entries: 3, bytes: 3 * ENTRY }], samples: 3, freed: { entries: 3, bytes: 3 * ENTRY }, kept: [] });
    expect(gc.stderr).toContain('no longer loads');
    await using cache = await FeatureCache.open(dir, { command: 'vitest check' });
    expect(await listRuns(cache)).toEqual({ current: undefined, runs: [] });
    expect(await cache.getMeta(CURRENT_RUN_KEY)).toBeUndefined();
    expect(await cache.listFingerprints()).toEqual([]);
  });
});

describe('cache gc killed before each of its LevelDB writes', () => {
  let base: string;
  let model: string;
  let older: string;
  let current: string;
  let seeded: string;
  let retireId: string;

  beforeAll(async () => {
    base = join(root, 'sweep');
    const toy = residualToyModel(1);
    await saveModel(toy, join(base, 'toy'));
    toy.dispose();
    model = join(base, 'toy', 'model.json');
    await makeEmojiDataset({ out: join(base, 'emoji'), categories: ['Animals & Nature', 'Food & Drink'], perClass: 6, testFraction: 0.5 });
    older = join(base, 'emoji', 'test');
    current = join(base, 'emoji', 'train');
    seeded = join(base, 'seeded');
    {
      await using cache = await FeatureCache.open(seeded, { command: 'vitest sweep setup' });
      const a = await extractFeatures({ model, boundary: 'block2_add', data: older, cache });
      await extractFeatures({ model, boundary: 'block2_add', data: current, cache });
      retireId = runIdOf(a.fingerprint, older);
      // Superseded: an augmentation no run reads any more, of a sample the current run lists.
      const run = await readRun(cache);
      await cache.putFeatures(a.fingerprint, [{ sampleId: run.samples[0]!.id, aug: 'flip:h', data: new Float32Array(16 * 16 * 8), shape: [16, 16, 8] }], 'float32');
      // Stale: a fingerprint whose model is gone, with its record and samples.
      await cache.putFeatures(FP, entries(ids(0, 70)), 'float32');
      const { runId: _derived, ...fields } = run; // a new run id follows from fingerprint and data
      await saveRun(
        cache,
        { ...fields, fingerprint: FP, model: join(base, 'gone', 'model.json'), data: '/gone', samples: ids(0, 70).map((id) => ({ id, label: 0 })) },
        { current: false, samples: ids(0, 70).map((id) => ({ id, source: `/gone/${id}.png` })) },
      );
    }
  });

  it('every rerun completes to exactly the state of an uninterrupted gc, and the training run stays current', async () => {
    const reference = join(base, 'reference');
    await cp(seeded, reference, { recursive: true });
    let expected: Awaited<ReturnType<typeof collectGarbage>> | undefined;
    {
      await using cache = await FeatureCache.open(reference, { command: 'vitest sweep reference' });
      const { writes } = await withWriteFault(undefined, async () => {
        expected = await collectGarbage(cache, { retire: [retireId] });
      });
      expect(writes).toBeGreaterThanOrEqual(6);
    }
    expect(expected).toMatchObject({ dropped: [{ fingerprint: FP, entries: 70 }], superseded: [{ entries: 1 }], samples: 70 + 6 });
    expect(expected!.orphaned[0]!.entries).toBe(6); // the retired data set's own samples
    const want = await snapshotCache(reference);

    let points = 0;
    for (let k = 1; ; k++) {
      const dir = join(base, `kill-${k}`);
      await cp(seeded, dir, { recursive: true });
      let killed = false;
      {
        await using cache = await FeatureCache.open(dir, { command: `vitest kill ${k}` });
        killed = (await withWriteFault(k, () => collectGarbage(cache, { retire: [retireId] }))).killed;
      }
      if (!killed) break;
      points++;
      {
        await using cache = await FeatureCache.open(dir, { command: 'vitest rerun' });
        expect((await readRun(cache)).data, `kill point ${k}`).toBe(current);
        await collectGarbage(cache, { retire: [retireId] });
        expect((await cache.verify()).ok).toBe(true);
      }
      expect(diffSnapshots(want, await snapshotCache(dir)), `kill point ${k}`).toEqual([]);
      await rm(dir, { recursive: true, force: true });
    }
    expect(points).toBeGreaterThanOrEqual(6);
    console.log(`cache gc: ${points} LevelDB write points, all consistent`);
  }, 300_000);

  it('keeps what an interrupted cache-features wrote (its rerun resumes from it) unless told dropInterrupted', async () => {
    const dir = join(base, 'interrupted');
    await cp(seeded, dir, { recursive: true });
    const extra = join(base, 'more');
    await makeEmojiDataset({ out: extra, categories: ['Travel & Places', 'Smileys & Emotion'], perClass: 4, testFraction: 0 });
    await using cache = await FeatureCache.open(dir, { command: 'vitest interrupted' });
    const fp = (await readRun(cache)).fingerprint;
    const before = await cache.countEntries(fp);
    // Killed after its marker and first feature batch, before its record.
    const { killed } = await withWriteFault(3, () => extractFeatures({ model, boundary: 'block2_add', data: join(extra, 'train'), cache, batchSize: 4 }));
    expect(killed).toBe(true);
    expect(await cache.countEntries(fp)).toBe(before + 4);
    const kept = await collectGarbage(cache);
    expect(kept.interrupted.map((m) => m.data)).toEqual([join(extra, 'train')]);
    expect(kept.orphaned.find((o) => o.fingerprint === fp)).toBeUndefined();
    // The setup's superseded entry goes; the interrupted extraction's 4 entries stay.
    expect(await cache.countEntries(fp)).toBe(before - 1 + 4);
    // The superseded entry is all zeros: a zero-bitmap value (header and bitmap only).
    expect(kept.superseded).toEqual([{ fingerprint: fp, entries: 1, bytes: encodeFeatures(new Float32Array(16 * 16 * 8), [16, 16, 8], 'float32').byteLength }]);

    const bytesOf = async (): Promise<Map<string, number>> => new Map((await cache.stats()).fingerprints.map((f) => [f.fingerprint, f.bytes]));
    const sizeBefore = await bytesOf();
    const dropped = await collectGarbage(cache, { dropInterrupted: true });
    const sizeAfter = await bytesOf();
    expect(dropped.interrupted.map((m) => m.data)).toEqual([join(extra, 'train')]);
    // The interrupted extraction's 4 maps and their 4 pooled vectors, written in the same batches.
    expect(dropped.orphaned).toEqual(
      [fp, `${fp}.gap`].map((f) => ({ fingerprint: f, entries: 4, bytes: sizeBefore.get(f)! - sizeAfter.get(f)! })),
    );
    expect(sizeBefore.get(fp)! - sizeAfter.get(fp)!).toBeGreaterThan(0);
    expect(await cache.countEntries(fp)).toBe(before - 1);
    expect(await listExtracting(cache)).toEqual([]);
    expect((await readRun(cache)).data).toBe(current);
  });
});

// ---------------------------------------------------------------------------------------
// Through the CLI, on real images: an edited photo, an earlier data set, a damaged entry.

describe('a data set curated over time, through the CLI', () => {
  let fx: ToyFixture;
  let cache: string;
  let dataA: string;
  let dataB: string;
  let fingerprint: string;
  let edited: string;
  /** The stored lengths of a sample's map and pooled entries, and the orphaned list gc reports for them. */
  const sampleBytes = async (sampleId: string) => {
    const [maps, pooled] = await storedBytes(cache, [fingerprint, `${fingerprint}.gap`], sampleId);
    return {
      maps: maps!,
      orphaned: [
        { fingerprint, entries: 1, bytes: maps! },
        { fingerprint: `${fingerprint}.gap`, entries: 1, bytes: pooled! },
      ],
      freed: { entries: 2, bytes: maps! + pooled! },
    };
  };
  /** The sample only data set `only` lists, of the two recorded runs. */
  const onlyIn = async (only: string, other: string): Promise<string> => {
    await using c = await FeatureCache.open(cache, { command: 'vitest check', readOnly: true });
    const runs = (await listRuns(c)).runs;
    const inOther = new Set(runs.find((r) => r.data === other)!.samples.map((s) => s.id));
    return runs.find((r) => r.data === only)!.samples.find((s) => !inOther.has(s.id))!.id;
  };

  const cacheFeatures = async (data: string, ...extra: string[]) => {
    const r = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', data, '--cache', cache, '--json', ...extra, ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
    return r.json;
  };
  const cli = async (...args: string[]) => {
    const r = await runCli(['cache', ...args, '--cache', cache, '--json']);
    return r;
  };

  beforeAll(async () => {
    fx = await makeToyFixture(join(root, 'fx'), 4);
    cache = join(root, 'cache');
    dataA = fx.data;
    dataB = join(root, 'photos-2026');
    await cp(dataA, dataB, { recursive: true });
    // One photo of the newer data set is edited: new bytes, new sample id, same file name.
    const listing = execFileSync('sh', ['-c', `ls ${dataB}/*/*.png | head -1`], { encoding: 'utf8' }).trim();
    edited = listing;
    await writeFile(edited, await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toBuffer());
    fingerprint = String((await cacheFeatures(dataA))['fingerprint']);
    const second = await cacheFeatures(dataB);
    expect(second).toMatchObject({ fingerprint, extracted: 1, skipped: fx.total - 1, entries: fx.total + 1 });
  });

  it('cache runs lists both data sets, the newer one current', async () => {
    const r = await cli('runs');
    expect(r.status, r.stderr).toBe(0);
    const list = r.json as { current: string; runs: { runId: string; data: string; role: string }[] };
    expect(list.runs.map((x) => [x.data, x.role])).toEqual([
      [dataA, 'training'],
      [dataB, 'training'],
    ]);
    expect(list.current).toBe(runIdOf(fingerprint, dataB));
  });

  it('cache verify --repair names each deleted sample’s own data set, or says its source is unknown', async () => {
    // Damage: the edited photo's old entry (only data set A has it), one shared entry, and an
    // entry of a sample no run lists.
    {
      await using c = await FeatureCache.open(cache, { command: 'vitest setup' });
      await c.putFeatures(fingerprint, [{ sampleId: 'stray-sample', data: new Float32Array(16 * 16 * 8), shape: [16, 16, 8] }], 'float32');
    }
    const runs = await (async () => {
      await using c = await FeatureCache.open(cache, { command: 'vitest setup' });
      return (await listRuns(c)).runs;
    })();
    const [a, b] = runs;
    const inB = new Set(b!.samples.map((s) => s.id));
    const onlyA = a!.samples.find((s) => !inB.has(s.id))!.id;
    const shared = b!.samples.find((s) => s.id !== onlyA && a!.samples.some((x) => x.id === s.id))!.id;
    const db = new Level<string, string>(cache);
    const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(fingerprint), { valueEncoding: 'view' });
    for await (const key of sub.keys()) {
      const id = parseFeatureKey(key)!.sampleId;
      if (id !== onlyA && id !== shared && id !== 'stray-sample') continue;
      const v = Uint8Array.from((await sub.get(key))!);
      v[headerByteLength(3) + 10]! ^= 0x20;
      await sub.put(key, v);
    }
    await db.close();

    const r = await cli('verify', '--repair');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ repaired: 3, ok: true });
    const rerun = r.json['rerun'] as { fingerprint: string; samples: number; command: string }[];
    expect(rerun).toHaveLength(3);
    const forA = rerun.find((x) => x.command.includes(`--data ${dataA} `))!;
    const forB = rerun.find((x) => x.command.includes(`--data ${dataB} `))!;
    const unknown = rerun.find((x) => x.command.startsWith('unknown'))!;
    expect(forA).toMatchObject({ fingerprint, samples: 1 });
    expect(forA.command).toContain('--record data'); // re-caching A must not make it current
    expect(forB).toMatchObject({ fingerprint, samples: 1 });
    expect(forB.command).not.toContain('--record');
    expect(unknown).toMatchObject({ fingerprint, samples: 1 });
    expect(unknown.command).toContain('data set is unknown');

    // A's command, run as printed, re-extracts A's deleted samples — its own and the shared one
    // (the old code printed B's data set, which lacks A's own sample).
    const command = forA.command.replace(/^splitfit /, `'${process.execPath}' '${CLI}' `);
    const out = execFileSync('sh', ['-c', `${command} --json ${backendArgs().join(' ')}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toMatchObject({ extracted: 2, skipped: fx.total - 2 });
    const again = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', dataB, '--cache', cache, '--json', ...backendArgs()]);
    expect(again.json).toMatchObject({ extracted: 0, skipped: fx.total });
    await using c = await FeatureCache.open(cache, { command: 'vitest check' });
    expect((await readRun(c)).data).toBe(dataB);
    expect((await c.verify()).ok).toBe(true);
  });

  it('stats counts orphans apart; retire + gc reclaim exactly the retired data set’s own samples', async () => {
    const before = await cli('stats');
    expect(before.status, before.stderr).toBe(0);
    const fpStats = () => (before.json['fingerprints'] as { fingerprint: string; entries: number; orphaned: { entries: number } }[])[0]!;
    // Everything is referenced (by A or B) except the stray sample verify deleted.
    expect(fpStats()).toMatchObject({ fingerprint, entries: fx.total + 1, orphaned: { entries: 0 } });

    const featureBytes = await sampleBytes(await onlyIn(dataA, dataB));
    const retired = await cli('retire', runIdOf(fingerprint, dataA));
    expect(retired.status, retired.stderr).toBe(0);
    expect(retired.json).toEqual({ retired: [runIdOf(fingerprint, dataA)] });

    const orphaned = await cli('stats');
    expect((orphaned.json['fingerprints'] as { orphaned: unknown }[])[0]!.orphaned).toEqual({ entries: 1, bytes: featureBytes.maps });
    expect(orphaned.json['currentRun']).toEqual({ runId: runIdOf(fingerprint, dataB), data: dataB, samples: fx.total });
    const human = await runCli(['cache', 'stats', '--cache', cache]);
    expect(human.stdout).toContain(`current training run: ${fingerprint.slice(0, 12)}:`);
    expect(human.stdout).toContain(`orphaned: 1 entries, ${featureBytes.maps} bytes`);
    expect(human.stdout).toMatch(/committed generation 0: \d+ entries/);

    const dry = await cli('gc', '--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.json).toMatchObject({ dryRun: true, dropped: [], orphaned: featureBytes.orphaned, freed: featureBytes.freed });
    expect(dry.json['samples']).toBe(1); // the edited photo's old record

    const gc = await cli('gc');
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.json).toMatchObject({ dryRun: false, orphaned: featureBytes.orphaned, freed: featureBytes.freed });
    const again = await runCli(['cache', 'gc', '--cache', cache]);
    expect(again.stdout).toContain('nothing to drop');

    const after = await cli('stats');
    expect((after.json['fingerprints'] as { entries: number; orphaned: unknown }[])[0]).toMatchObject({ entries: fx.total, orphaned: { entries: 0, bytes: 0 } });
    expect(after.json['samples']).toBe(fx.total);
    await using c = await FeatureCache.open(cache, { command: 'vitest check' });
    expect(await c.missingSampleIds(fingerprint, (await readRun(c)).samples.map((s) => s.id))).toEqual([]);
  });

  it('retire refuses the current training run, and gc --retire retires and collects in one command', async () => {
    const refused = await cli('retire', fingerprint.slice(0, 8));
    expect(refused.status).toBe(2); // SPLITFIT_USAGE's exit status
    expect((refused.json['error'] as { code: string; message: string }).code).toBe('SPLITFIT_USAGE');
    expect((refused.json['error'] as { message: string }).message).toContain('current training run');
    // A third data set becomes current; gc --retire then lets B go: nothing of B alone remains.
    const dataC = join(root, 'photos-2027');
    await cp(dataB, dataC, { recursive: true });
    await rm(edited.replace(dataB, dataC)); // C lacks the edited photo: only B has it now
    await cacheFeatures(dataC);
    const onlyB = await onlyIn(dataB, dataC);
    const featureBytes = await sampleBytes(onlyB);
    const gc = await cli('gc', '--retire', runIdOf(fingerprint, dataB));
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.json).toMatchObject({ retired: [runIdOf(fingerprint, dataB)], orphaned: featureBytes.orphaned, samples: 1 });
    await using c = await FeatureCache.open(cache, { command: 'vitest check' });
    expect((await listRuns(c)).runs.map((r) => r.data)).toEqual([dataC]);
    expect(await c.countEntries(fingerprint)).toBe(fx.total - 1);
  });
});
