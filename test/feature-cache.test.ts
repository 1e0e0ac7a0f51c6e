import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rejection } from './helpers/errors.js';
import { FeatureCache } from '../src/index.js';
import { CACHE_FORMAT_VERSION, encodedByteLength, headerByteLength } from '../src/cache/codec.js';
import type { CacheHolder, CachedFeatures, FeatureEntry } from '../src/cache/feature-cache.js';
import { augKey, featureKey, featuresSublevelName, HOLDER_FILE, NO_AUG, shortFingerprint } from '../src/cache/keys.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const FP = 'a1'.repeat(32);
const FP2 = 'b2'.repeat(32);
const DIM = 1280;

let dir: string;
const opened: FeatureCache[] = [];

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'splitfit-cache-'));
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
  await fsp.rm(dir, { recursive: true, force: true });
});

async function openCache(options?: Parameters<typeof FeatureCache.open>[1]): Promise<FeatureCache> {
  const cache = await FeatureCache.open(dir, { command: 'vitest feature-cache', ...options });
  opened.push(cache);
  return cache;
}

/** Deterministic features: entry `seed` is seed + i/1000, so values tell entries apart. */
function features(seed: number, n = DIM): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => seed + i / 1000);
}

function sampleId(i: number): string {
  return `s${String(i).padStart(4, '0')}`;
}

function entries(count: number, extra: Partial<FeatureEntry> = {}): FeatureEntry[] {
  return Array.from({ length: count }, (_, i) => ({ sampleId: sampleId(i), data: features(i), shape: [DIM], ...extra }));
}

async function collect(iterable: AsyncIterable<CachedFeatures[]>): Promise<CachedFeatures[][]> {
  const batches: CachedFeatures[][] = [];
  for await (const batch of iterable) batches.push(batch);
  return batches;
}


/** Edits a stored value with plain `level`, behind the cache's back (the cache must be closed). */
async function tamper(fingerprint: string, key: string, edit: (value: Uint8Array) => Uint8Array): Promise<void> {
  const db = new Level<string, string>(dir);
  const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(fingerprint), { valueEncoding: 'view' });
  const value = await sub.get(key);
  if (value === undefined) throw new Error(`no value at ${key}`);
  await sub.put(key, edit(Uint8Array.from(value)));
  await db.close();
}

// ---------------------------------------------------------------------------------------
// Child processes for the lock tests: they import the TypeScript sources through tsx.

const CHILD_HOLD = `
import { FeatureCache } from './src/cache/feature-cache.ts';
const cache = await FeatureCache.open(process.argv[1], { command: 'child-holder --for lock-test' });
console.log(JSON.stringify({ ready: process.pid }));
process.stdin.resume();
process.stdin.on('end', async () => { await cache.close(); process.exit(0); });
`;

const CHILD_TRY = `
import { FeatureCache } from './src/cache/feature-cache.ts';
const t0 = performance.now();
try {
  const cache = await FeatureCache.open(process.argv[1], { command: 'child-opener' });
  await cache.close();
  console.log(JSON.stringify({ opened: true }));
} catch (err) {
  console.log(JSON.stringify({ code: err.code, message: err.message, ms: performance.now() - t0 }));
}
`;

function child(code: string): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, dir], {
    cwd: REPO,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

async function firstLine(proc: ChildProcess): Promise<Record<string, unknown>> {
  let buffer = '';
  for await (const chunk of proc.stdout!) {
    buffer += String(chunk);
    const newline = buffer.indexOf('\n');
    if (newline >= 0) return JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
  }
  throw new Error(`child exited without output (exit code ${String(proc.exitCode)})`);
}

// ---------------------------------------------------------------------------------------

describe('open / close', () => {
  it('open and close are idempotent, and a closed cache reopens', async () => {
    const cache = await openCache();
    expect(cache.status).toBe('open');
    await Promise.all([cache.open(), cache.open()]);
    expect(cache.isOpen).toBe(true);
    await cache.putFeatures(FP, entries(1), 'float32');
    await Promise.all([cache.close(), cache.close()]);
    await cache.close();
    expect(cache.status).toBe('closed');
    await cache.open();
    expect(await cache.countEntries(FP)).toBe(1);
  });

  it('operations on a closed cache fail with a coded error', async () => {
    const cache = new FeatureCache(dir);
    const err = await rejection(cache.countEntries(FP));
    expect(err.code).toBe('SPLITFIT_IO');
    expect(err.message).toContain('call open() first');
  });

  it('supports `await using`: the lock is released at the end of the block', async () => {
    {
      await using cache = await FeatureCache.open(dir, { command: 'scoped' });
      await cache.putFeatures(FP, entries(2), 'float32');
      expect(existsSync(path.join(dir, HOLDER_FILE))).toBe(true);
    }
    expect(existsSync(path.join(dir, HOLDER_FILE))).toBe(false);
    const again = await openCache();
    expect(await again.countEntries(FP)).toBe(2);
  });

  it('records the holder in meta and in the sidecar file while open', async () => {
    const cache = await openCache({ command: 'splitfit cache-features --model m' });
    const holder = await cache.getMeta<CacheHolder>('holder');
    expect(holder).toMatchObject({ pid: process.pid, command: 'splitfit cache-features --model m', readOnly: false });
    const sidecar = JSON.parse(await fsp.readFile(path.join(dir, HOLDER_FILE), 'utf8')) as CacheHolder;
    expect(sidecar).toMatchObject({ pid: process.pid, command: 'splitfit cache-features --model m' });
    expect((await cache.getMeta<{ version: number }>('format'))?.version).toBe(CACHE_FORMAT_VERSION);
  });

  it('an older format\'s cache is upgraded on a writable open (its entries still read); a read-only open leaves it', async () => {
    let cache = await openCache();
    await cache.putFeatures(FP, entries(3), 'float32');
    await cache.close();
    const db = new Level<string, string>(dir);
    await db.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).put('format', { version: 1, createdAt: '2026-01-01T00:00:00.000Z' });
    await db.close();
    cache = await openCache({ readOnly: true });
    expect(await cache.getMeta('format')).toEqual({ version: 1, createdAt: '2026-01-01T00:00:00.000Z' });
    await cache.close();
    cache = await openCache();
    expect(await cache.getMeta('format')).toEqual({ version: CACHE_FORMAT_VERSION, createdAt: '2026-01-01T00:00:00.000Z' });
    expect((await cache.getFeatures(FP, sampleId(2)))?.data).toEqual(features(2));
  });

  it('createIfMissing: false on an empty directory is SPLITFIT_IO naming the directory', async () => {
    const err = await rejection(FeatureCache.open(dir, { createIfMissing: false }));
    expect(err.code).toBe('SPLITFIT_IO');
    expect(err.message).toContain(dir);
    expect(existsSync(path.join(dir, 'CURRENT'))).toBe(false);
  });

  it('validates options with messages that name the option', () => {
    expect(() => new FeatureCache(dir, { readOnly: 'yes' as unknown as boolean })).toThrow(/`readOnly` must be a boolean/);
    expect(() => new FeatureCache(dir, { readOnly: true, createIfMissing: true })).toThrow(/conflict/);
    expect(() => new FeatureCache('')).toThrow(TypeError);
  });

  it('read-only: reads work, every write is SPLITFIT_USAGE', async () => {
    const writer = await openCache();
    await writer.putFeatures(FP, entries(3), 'float32');
    await writer.close();
    const reader = await openCache({ readOnly: true });
    expect(await reader.countEntries(FP)).toBe(3);
    expect((await reader.getFeatures(FP, sampleId(1)))?.data).toEqual(features(1));
    for (const write of [
      reader.putFeatures(FP, entries(1), 'float32'),
      reader.putSamples([{ id: 'x', source: 'x.png' }]),
      reader.putMeta('model', 'm'),
      reader.deleteGeneration(FP, undefined, 0),
      reader.gc([]),
      reader.clear(),
      reader.verify({ repair: true }),
    ]) {
      expect((await rejection(write)).code).toBe('SPLITFIT_USAGE');
    }
    expect(await reader.countEntries(FP)).toBe(3);
  });
});

describe('locking', () => {
  it('a second open in the same process is SPLITFIT_CACHE_LOCKED at once, naming the holder', async () => {
    await openCache({ command: 'first-holder --x' });
    const t0 = performance.now();
    const err = await rejection(FeatureCache.open(dir, { command: 'second' }));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(err.code).toBe('SPLITFIT_CACHE_LOCKED');
    expect(err.message).toContain(dir);
    expect(err.message).toContain('first-holder --x');
    expect(err.message).toContain(`pid ${process.pid}`);
    expect((err.cause as { code?: string }).code).toBe('LEVEL_DATABASE_NOT_OPEN'); // cause: LEVEL_LOCKED
  });

  it('open while another process holds the cache is SPLITFIT_CACHE_LOCKED naming its pid and command', async () => {
    const holder = child(CHILD_HOLD);
    try {
      const ready = await firstLine(holder);
      expect(ready.ready).toBe(holder.pid);
      const t0 = performance.now();
      const err = await rejection(FeatureCache.open(dir));
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(err.code).toBe('SPLITFIT_CACHE_LOCKED');
      expect(err.message).toContain(`pid ${holder.pid}`);
      expect(err.message).toContain('child-holder --for lock-test');
    } finally {
      holder.stdin!.end();
      await once(holder, 'exit');
    }
    // Released: the child closed the cache and removed its holder file.
    expect(existsSync(path.join(dir, HOLDER_FILE))).toBe(false);
    const cache = await openCache();
    expect(cache.isOpen).toBe(true);
  });

  it('another process cannot open a cache this process holds', async () => {
    await openCache({ command: 'parent-holder --train' });
    const opener = child(CHILD_TRY);
    const result = await firstLine(opener);
    await once(opener, 'exit');
    expect(result.code).toBe('SPLITFIT_CACHE_LOCKED');
    expect(result.message).toContain('parent-holder --train');
    expect(result.ms).toBeLessThan(2000);
  });

  it('a holder killed with SIGKILL leaves no lock behind; its stale holder file is replaced', async () => {
    const holder = child(CHILD_HOLD);
    await firstLine(holder);
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    const stale = JSON.parse(await fsp.readFile(path.join(dir, HOLDER_FILE), 'utf8')) as CacheHolder;
    expect(stale.pid).toBe(holder.pid);
    const cache = await openCache({ command: 'after-crash' });
    expect((await cache.getMeta<CacheHolder>('holder'))?.command).toBe('after-crash');
    const sidecar = JSON.parse(await fsp.readFile(path.join(dir, HOLDER_FILE), 'utf8')) as CacheHolder;
    expect(sidecar.pid).toBe(process.pid);
  });
});

describe('meta and samples', () => {
  it('stores JSON meta and refuses keys the cache owns', async () => {
    const cache = await openCache();
    await cache.putMeta('model', { name: 'mobilenet_v2', boundary: 'out_relu' });
    expect(await cache.getMeta('model')).toEqual({ name: 'mobilenet_v2', boundary: 'out_relu' });
    expect(await cache.getMeta('absent')).toBeUndefined();
    await expect(cache.putMeta('fingerprints', [])).rejects.toThrow(/owned by the cache/);
  });

  it('stores sample records by id', async () => {
    const cache = await openCache();
    await cache.putSamples([
      { id: 'h1', label: 'cat', source: 'cat/1.png' },
      { id: 'h2', label: 3, source: 'idx:train#2' },
      { id: 'h3', source: 'unlabelled.png' },
    ]);
    expect(await cache.getSample('h1')).toEqual({ label: 'cat', source: 'cat/1.png' });
    expect(await cache.getSample('nope')).toBeUndefined();
    expect(await cache.getSamples(['h3', 'nope', 'h2'])).toEqual([{ source: 'unlabelled.png' }, undefined, { label: 3, source: 'idx:train#2' }]);
    expect((await cache.stats()).samples).toBe(3);
  });
});

describe('features', () => {
  it('round-trips float32 bit-exactly and float16 within 2^-11 relative', async () => {
    const cache = await openCache();
    const data = Float32Array.from({ length: DIM }, (_, i) => Math.sin(i) * 10 ** ((i % 7) - 3));
    await cache.putFeatures(FP, [{ sampleId: 'x', data, shape: [DIM] }], 'float32');
    await cache.putFeatures(FP2, [{ sampleId: 'x', data, shape: [1, DIM] }], 'float16');
    const f32 = await cache.getFeatures(FP, 'x');
    expect(f32?.dtype).toBe('float32');
    expect(new Uint32Array(f32!.data.buffer)).toEqual(new Uint32Array(data.buffer));
    const f16 = await cache.getFeatures(FP2, 'x');
    expect(f16?.shape).toEqual([1, DIM]);
    for (let i = 0; i < DIM; i++) {
      if (Math.abs(data[i]!) < 2 ** -14) continue; // binary16 subnormals have absolute, not relative, precision
      expect(Math.abs(f16!.data[i]! - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -11);
    }
    expect(await cache.getFeatures(FP, 'x', { view: 1 })).toBeUndefined();
    expect(await cache.hasFeatures(FP, 'x')).toBe(true);
    expect(await cache.hasFeatures(FP, 'x', { aug: 'flip' })).toBe(false);
  });

  it('a batch with one malformed entry writes nothing', async () => {
    const cache = await openCache();
    const batch = [...entries(5), { sampleId: 'bad', data: features(9, 10), shape: [DIM] }];
    await expect(cache.putFeatures(FP, batch, 'float32')).rejects.toThrow(/shape \[1280\] has 1280 elements but the features have 10/);
    expect(await cache.countEntries(FP)).toBe(0);
    expect(await cache.listFingerprints()).toEqual([]);
  });

  it('registers fingerprints and augmentation specs in the same batch, persistently', async () => {
    const cache = await openCache();
    await cache.putFeatures(FP2, entries(1), 'float32');
    await Promise.all([
      cache.putFeatures(FP, entries(2, { aug: 'flip' }), 'float32'),
      cache.putFeatures(FP, entries(2, { aug: 'noise:0.1' }), 'float32'),
      cache.putFeatures(FP, entries(2, { aug: 'crop:0.9' }), 'float32'),
    ]);
    await cache.close();
    await cache.open();
    expect(await cache.listFingerprints()).toEqual([FP, FP2].sort());
    for (const aug of ['flip', 'noise:0.1', 'crop:0.9']) {
      const [batch] = await collect(cache.iterateFeatures(FP, { aug }));
      expect(batch!.map((e) => e.aug)).toEqual([aug, aug]);
    }
  });

  it('missingSampleIds returns the ids lacking an entry (or any of K views), in input order', async () => {
    const cache = await openCache();
    const ids = Array.from({ length: 3000 }, (_, i) => sampleId(i));
    await cache.putFeatures(FP, entries(2000).filter((_, i) => i % 2 === 0), 'float32');
    const missing = await cache.missingSampleIds(FP, [...ids, sampleId(1)]);
    expect(missing).toEqual(ids.filter((_, i) => i >= 2000 || i % 2 === 1));

    const aug = 'flip';
    await cache.putFeatures(FP, [0, 1, 2].map((view) => ({ sampleId: 'a', aug, view, data: features(view), shape: [DIM] })), 'float32');
    await cache.putFeatures(FP, [0, 2].map((view) => ({ sampleId: 'b', aug, view, data: features(view), shape: [DIM] })), 'float32');
    expect(await cache.missingSampleIds(FP, ['a', 'b', 'c'], { aug, views: 3 })).toEqual(['b', 'c']);
    expect(await cache.missingSampleIds(FP, ['a', 'b', 'c'], { aug, view: 2 })).toEqual(['c']);
    expect(await cache.missingSampleIds(FP, ['a'], { aug, views: 3, generation: 1 })).toEqual(['a']);
  });

  it('iterateFeatures yields every entry in key order, in batches of at most batchSize', async () => {
    const cache = await openCache();
    const aug = 'flip,crop:0.9';
    // Written in reverse to show the order comes from the keys.
    for (const generation of [2, 0]) {
      for (const view of [1, 0]) {
        await cache.putFeatures(FP, entries(50, { aug, generation, view }).reverse(), 'float32');
      }
    }
    await cache.putFeatures(FP, entries(7), 'float32'); // no augmentation: another range

    const batches = await collect(cache.iterateFeatures(FP, { aug, batchSize: 16 }));
    expect(batches.every((b) => b.length >= 1 && b.length <= 16)).toBe(true);
    const all = batches.flat();
    expect(all).toHaveLength(200);
    const keys = all.map((e) => featureKey({ augKey: augKey(aug), generation: e.generation, sampleId: e.sampleId, view: e.view }));
    expect(keys).toEqual([...keys].sort());
    expect(new Set(keys).size).toBe(200);
    expect(all[0]).toMatchObject({ sampleId: sampleId(0), generation: 0, view: 0, aug, shape: [DIM], dtype: 'float32' });
    for (const e of all) expect(e.data[0]).toBe(Number(e.sampleId.slice(1)));

    const gen2 = (await collect(cache.iterateFeatures(FP, { aug, generation: 2, batchSize: 1000 }))).flat();
    expect(gen2).toHaveLength(100);
    expect(gen2.every((e) => e.generation === 2)).toBe(true);
    const plain = (await collect(cache.iterateFeatures(FP))).flat();
    expect(plain.map((e) => [e.sampleId, e.aug])).toEqual(Array.from({ length: 7 }, (_, i) => [sampleId(i), undefined]));
    expect(await collect(cache.iterateFeatures(FP2))).toEqual([]);
  });

  it('deleteGeneration removes exactly that (augmentation, generation)', async () => {
    const cache = await openCache();
    const aug = 'flip';
    for (const generation of [0, 1, 2]) await cache.putFeatures(FP, entries(30, { aug, generation }), 'float32');
    await cache.putFeatures(FP, entries(30, { aug: 'noise', generation: 1 }), 'float32');
    await cache.putFeatures(FP, entries(30, { generation: 1 }), 'float32');
    await cache.putFeatures(FP2, entries(30, { aug, generation: 1 }), 'float32');

    expect(await cache.deleteGeneration(FP, aug, 1)).toBe(30);
    expect(await cache.deleteGeneration(FP, aug, 1)).toBe(0);
    const left = (await collect(cache.iterateFeatures(FP, { aug }))).flat();
    expect([...new Set(left.map((e) => e.generation))]).toEqual([0, 2]);
    expect(left).toHaveLength(60);
    expect(await cache.countEntries(FP)).toBe(120);
    expect(await cache.countEntries(FP2)).toBe(30);
    expect((await collect(cache.iterateFeatures(FP, { aug: 'noise', generation: 1 }))).flat()).toHaveLength(30);
  });

  it('rejects malformed arguments with TypeError before touching the store', async () => {
    const cache = await openCache();
    await expect(cache.getFeatures('not a fingerprint', 'x')).rejects.toThrow(TypeError);
    await expect(cache.getFeatures(FP, 'a!b')).rejects.toThrow(/sample id/);
    await expect(cache.putFeatures(FP, entries(1, { view: 1.5 }), 'float32')).rejects.toThrow(/view must be an integer/);
    await expect(cache.putFeatures(FP, entries(1), 'int8' as 'float32')).rejects.toThrow(/dtype must be one of/);
    await expect(collect(cache.iterateFeatures(FP, { batchSize: 0 }))).rejects.toThrow(/batchSize must be a positive integer/);
  });
});

describe('corruption', () => {
  const key = featureKey({ augKey: NO_AUG, generation: 0, sampleId: sampleId(3), view: 0 });

  it('a flipped payload byte is SPLITFIT_CACHE_CORRUPT on read, naming key and fingerprint', async () => {
    const cache = await openCache();
    await cache.putFeatures(FP, entries(10), 'float32');
    await cache.close();
    await tamper(FP, key, (v) => {
      v[headerByteLength(1) + 100]! ^= 0x80;
      return v;
    });
    await cache.open();
    const err = await rejection(cache.getFeatures(FP, sampleId(3)));
    expect(err.code).toBe('SPLITFIT_CACHE_CORRUPT');
    expect(err.message).toContain('crc mismatch');
    expect(err.message).toContain(key);
    expect(err.message).toContain(shortFingerprint(FP));
    expect((await rejection(collect(cache.iterateFeatures(FP)))).code).toBe('SPLITFIT_CACHE_CORRUPT');
    expect((await cache.getFeatures(FP, sampleId(4)))?.data).toEqual(features(4));
  });

  it('verify finds truncated and flipped entries; repair deletes exactly those', async () => {
    const cache = await openCache();
    await cache.putFeatures(FP, entries(10), 'float16');
    await cache.putFeatures(FP2, entries(5), 'float32');
    await cache.close();
    await tamper(FP, key, (v) => v.subarray(0, v.length - 2));
    const key7 = featureKey({ augKey: NO_AUG, generation: 0, sampleId: sampleId(7), view: 0 });
    await tamper(FP, key7, (v) => {
      v[v.length - 1]! ^= 0xff;
      return v;
    });
    await cache.open();

    const found = await cache.verify();
    expect(found.checked).toBe(15);
    expect(found.ok).toBe(false);
    expect(found.repaired).toBe(0);
    expect(found.corrupt.map((c) => [c.fingerprint, c.key, c.reason])).toEqual([
      [FP, key, 'truncated'],
      [FP, key7, 'crc mismatch'],
    ]);
    expect((await cache.verify({ fingerprint: FP2 })).ok).toBe(true);

    const repaired = await cache.verify({ repair: true });
    expect(repaired).toMatchObject({ checked: 15, repaired: 2, ok: true });
    expect(await cache.missingSampleIds(FP, entries(10).map((e) => e.sampleId))).toEqual([sampleId(3), sampleId(7)]);
    expect(await cache.verify()).toEqual({ checked: 13, corrupt: [], repaired: 0, ok: true });
  });

  it('a value of a newer format version is corrupt, not silently decoded', async () => {
    const cache = await openCache();
    await cache.putFeatures(FP, entries(5), 'float32');
    await cache.close();
    await tamper(FP, key, (v) => {
      new DataView(v.buffer, v.byteOffset).setUint16(4, CACHE_FORMAT_VERSION + 1, true);
      return v;
    });
    await cache.open();
    const err = await rejection(cache.getFeatures(FP, sampleId(3)));
    expect(err.code).toBe('SPLITFIT_CACHE_CORRUPT');
    expect(err.message).toContain('wrong version');
    expect((await cache.verify()).corrupt.map((c) => c.reason)).toEqual(['wrong version']);
  });
});

describe('maintenance', () => {
  it('stats counts samples, entries, views, generations and value bytes per fingerprint', async () => {
    const cache = await openCache();
    await cache.putSamples(entries(12).map((e) => ({ id: e.sampleId, label: 1, source: `${e.sampleId}.png` })));
    for (const view of [0, 1, 2]) {
      for (const generation of [0, 4]) await cache.putFeatures(FP, entries(12, { aug: 'flip', view, generation }), 'float16');
    }
    await cache.putFeatures(FP2, entries(5, { shape: [1, DIM] }), 'float32');
    const stats = await cache.stats();
    expect(stats.samples).toBe(12);
    expect(stats.fingerprints).toEqual([
      {
        fingerprint: FP,
        entries: 72,
        views: 3,
        generation: 4,
        generations: [0, 4],
        bytes: 72 * encodedByteLength([DIM], 'float16'),
        diskBytes: expect.any(Number) as number,
      },
      {
        fingerprint: FP2,
        entries: 5,
        views: 1,
        generation: 0,
        generations: [0],
        bytes: 5 * encodedByteLength([1, DIM], 'float32'),
        diskBytes: expect.any(Number) as number,
      },
    ]);
    expect(stats.bytes).toBe(72 * (16 + 2 * DIM) + 5 * (20 + 4 * DIM));
    expect(stats.diskBytes).toBeGreaterThanOrEqual(0);
  });

  it('gc dry run reports what it would drop and changes nothing; the real run drops it', async () => {
    const cache = await openCache();
    await cache.putFeatures(FP, entries(8), 'float32');
    await cache.putFeatures(FP2, entries(3, { aug: 'flip' }), 'float32');

    const dry = await cache.gc([FP], { dryRun: true });
    const freed = { entries: 3, bytes: 3 * encodedByteLength([DIM], 'float32') };
    expect(dry).toEqual({ dryRun: true, dropped: [{ fingerprint: FP2, ...freed }], orphaned: [], superseded: [], samples: 0, freed, kept: [FP] });
    expect(await cache.countEntries(FP2)).toBe(3);
    expect(await cache.listFingerprints()).toEqual([FP, FP2]);

    const real = await cache.gc([FP]);
    expect(real).toEqual({ dryRun: false, dropped: [{ fingerprint: FP2, ...freed }], orphaned: [], superseded: [], samples: 0, freed, kept: [FP] });
    expect(await cache.countEntries(FP2)).toBe(0);
    expect(await cache.countEntries(FP)).toBe(8);
    await cache.close();
    await cache.open();
    expect(await cache.listFingerprints()).toEqual([FP]);
    expect((await cache.stats()).fingerprints.map((f) => f.fingerprint)).toEqual([FP]);
    expect(await cache.gc([FP])).toEqual({ dryRun: false, dropped: [], orphaned: [], superseded: [], samples: 0, freed: { entries: 0, bytes: 0 }, kept: [FP] });
  });

  it('clear empties the cache and leaves it usable', async () => {
    const cache = await openCache({ command: 'clearer' });
    await cache.putSamples([{ id: 'h1', source: 'a.png' }]);
    await cache.putMeta('model', 'm');
    await cache.putFeatures(FP, entries(4, { aug: 'flip' }), 'float32');
    await cache.clear();
    expect(await cache.stats()).toMatchObject({ samples: 0, bytes: 0, fingerprints: [] });
    expect(await cache.getMeta('model')).toBeUndefined();
    expect((await cache.getMeta<CacheHolder>('holder'))?.command).toBe('clearer');
    await cache.putFeatures(FP, entries(2), 'float32');
    expect(await cache.countEntries(FP)).toBe(2);
    expect(await cache.listFingerprints()).toEqual([FP]);
  });
});
