/**
 * Bad input, through the CLI: every row must give a coded error (exit 1, or 2 for usage), one
 * stderr line naming the culprit and the fix, no stack trace (unless --verbose), and leave the disk
 * as it was — an existing cache unchanged, no output folder, no cache created where there was none.
 */
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Level } from 'level';
import { type ErrorCode, FeatureCache, loadModel, saveModel } from '../src/index.js';
import { featuresSublevelName } from '../src/cache/keys.js';
import { png16, sha256, tinyBmp } from './data-fixtures.js';
import { backendArgs, type CliResult, runCli } from './helpers/cli.js';
import { randomizeBatchNorm, residualToyModel } from './helpers/models.js';
import { diffSnapshots, exists, makeToyFixture, readRawFeatures, snapshotCache, splitfitStderr, stackLines, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
/** A cache with the fixture's 12 entries; every cache-features failure row runs against it. */
let goodCache: string;
let pristineCache: string;
/** Two good PNGs per class (copied from the fixture), to which a row adds its bad file. */
let goodFiles: { a: string[]; b: string[] };

const P = {} as Record<string, string>;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-bad-input-'));
  fx = await makeToyFixture(join(root, 'fx'), 4);
  goodCache = join(root, 'good-cache');
  const made = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', goodCache, '--json', ...backendArgs()]);
  expect(made.status, made.stderr).toBe(0);
  pristineCache = join(root, 'pristine-cache');
  await cp(goodCache, pristineCache, { recursive: true });
  const [ca, cb] = fx.classes;
  const list = async (c: string): Promise<string[]> => (await readdir(join(fx.data, c))).sort().slice(0, 2).map((f) => join(fx.data, c, f));
  goodFiles = { a: await list(ca!), b: await list(cb!) };

  const emoji = await sharp(goodFiles.a[0]!).toBuffer();
  const pngBytes = await sharp(emoji).png().toBuffer();
  const jpegBytes = await sharp(emoji).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toBuffer();
  const bmp = tinyBmp();

  P['zero'] = await dataset('zero', { 'a/empty.png': Buffer.alloc(0) });
  P['truncPng'] = await dataset('trunc-png', { 'a/cut.png': pngBytes.subarray(0, Math.floor(pngBytes.length / 2)) });
  P['truncJpeg'] = await dataset('trunc-jpeg', { 'b/cut.jpg': jpegBytes.subarray(0, Math.floor(jpegBytes.length / 2)) });
  P['text'] = await dataset('text', { 'a/notes.png': Buffer.from('these are my notes, not an image\n') });
  P['bmpFolder'] = await dataset('bmp-folder', { 'a/old.bmp': bmp });
  P['bmpManifest'] = await manifest('bmp-manifest', 'path,label\na.png,a\nb.png,b\nold.bmp,a\n', { 'a.png': goodFiles.a[0]!, 'b.png': goodFiles.b[0]!, 'old.bmp': bmp });
  P['svg'] = await dataset('svg', { 'a/icon.svg': Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>') });
  P['emptyRoot'] = join(root, 'empty-root');
  await mkdir(P['emptyRoot'], { recursive: true });
  P['emptyClass'] = await dataset('empty-class', {});
  await mkdir(join(P['emptyClass'], 'c-empty'));
  P['missingFile'] = await manifest('missing-file', 'path,label\na.png,a\nb.png,b\ngone.png,a\n', { 'a.png': goodFiles.a[0]!, 'b.png': goodFiles.b[0]! });
  P['badHeader'] = await manifest('bad-header', 'file,class\na.png,a\n', { 'a.png': goodFiles.a[0]! });
  P['noRows'] = await manifest('no-rows', 'path,label\n', {});
  P['idx'] = join(root, 'idx');
  await mkdir(P['idx']);
  const idx = (magic: number[], dims: number[], data: number): Buffer => {
    const header = Buffer.alloc(4 + 4 * dims.length);
    header.set(magic, 0);
    dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
    return Buffer.concat([header, Buffer.alloc(data, 7)]);
  };
  await writeFile(join(P['idx'], 'x-images-idx3-ubyte'), idx([0, 0, 8, 3], [3, 8, 8], 3 * 64));
  await writeFile(join(P['idx'], 'x-labels-idx1-ubyte'), idx([0, 0, 8, 1], [2], 2));

  // Models: a shard missing, a GraphModel, not JSON, a changed model, NaN weights.
  P['noShard'] = join(root, 'no-shard');
  await cp(join(fx.dir, 'toy'), P['noShard'], { recursive: true });
  await rm(join(P['noShard'], 'weights.bin'));
  P['graph'] = join(root, 'graph');
  await mkdir(P['graph']);
  await writeFile(join(P['graph'], 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [], library: {}, versions: {} }, weightsManifest: [] }));
  P['notJson'] = join(root, 'not-json');
  await mkdir(P['notJson']);
  await writeFile(join(P['notJson'], 'model.json'), '<html>404 Not Found</html>');
  const nan = await loadModel(fx.model);
  const stem = nan.getLayer('stem');
  const [kernel, bias] = stem.getWeights();
  const k = kernel!.dataSync().slice();
  k[0] = Number.NaN;
  stem.setWeights([tf.tensor(k, kernel!.shape), bias!]);
  P['nanModel'] = join(root, 'nan-model');
  await saveModel(nan, P['nanModel']);
  nan.dispose();

  // Caches for train-head: one class only, a model changed since caching, no entries, empty.
  P['oneClassData'] = join(root, 'one-class');
  await mkdir(join(P['oneClassData'], 'a'), { recursive: true });
  for (const f of goodFiles.a) await copyFile(f, join(P['oneClassData'], 'a', f.split('/').at(-1)!));
  P['oneClassCache'] = join(root, 'one-class-cache');
  P['changedModel'] = join(root, 'changed-model');
  await cp(join(fx.dir, 'toy'), P['changedModel'], { recursive: true });
  P['changedCache'] = join(root, 'changed-cache');
  P['nanCache'] = join(root, 'nan-cache');
  for (const [data, model, cache, extra] of [
    [P['oneClassData'], fx.model, P['oneClassCache'], []],
    [fx.data, join(P['changedModel'], 'model.json'), P['changedCache'], []],
    [fx.data, join(P['nanModel'], 'model.json'), P['nanCache'], ['--skip-bad']],
  ] as const) {
    const r = await runCli(['cache-features', '--model', model, '--boundary', fx.boundary, '--data', data, '--cache', cache, '--json', ...extra, ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
  }
  const other = residualToyModel(2);
  randomizeBatchNorm(other, 11);
  await saveModel(other, P['changedModel']);
  other.dispose();
  // A recorded run whose entries are all gone.
  P['noEntriesCache'] = join(root, 'no-entries-cache');
  await cp(goodCache, P['noEntriesCache'], { recursive: true });
  const db = new Level<string, string>(P['noEntriesCache']);
  const fingerprints = (await db.sublevel<string, string[]>('meta', { valueEncoding: 'json' }).get('fingerprints'))!;
  for (const fp of fingerprints) await db.sublevel(featuresSublevelName(fp)).clear();
  await db.close();
  P['emptyCache'] = join(root, 'empty-cache');
  await (await FeatureCache.open(P['emptyCache'])).close();
  P['aFile'] = join(root, 'a-file.txt');
  await writeFile(P['aFile'], 'not a folder\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A class-folder data set: two good PNGs in `a/` and `b/`, plus `extra` files. */
async function dataset(name: string, extra: Record<string, Buffer>): Promise<string> {
  const dir = join(root, 'data', name);
  for (const [cls, files] of Object.entries(goodFiles)) {
    await mkdir(join(dir, cls), { recursive: true });
    for (const f of files) await copyFile(f, join(dir, cls, f.split('/').at(-1)!));
  }
  for (const [rel, bytes] of Object.entries(extra)) await writeFile(join(dir, rel), bytes);
  return dir;
}

/** A CSV manifest with the given text; `files` maps names beside it to a source path or bytes. */
async function manifest(name: string, text: string, files: Record<string, string | Buffer>): Promise<string> {
  const dir = join(root, 'manifests', name);
  await mkdir(dir, { recursive: true });
  for (const [rel, from] of Object.entries(files)) {
    if (typeof from === 'string') await copyFile(from, join(dir, rel));
    else await writeFile(join(dir, rel), from);
  }
  await writeFile(join(dir, 'labels.csv'), text);
  return join(dir, 'labels.csv');
}

const cf = (data: string, ...extra: string[]): string[] => ['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', data, '--cache', goodCache, ...extra];
const cfModel = (model: string, ...extra: string[]): string[] => ['cache-features', '--model', model, '--boundary', fx.boundary, '--data', fx.data, '--cache', goodCache, ...extra];
const th = (cache: string, out: string, ...extra: string[]): string[] => ['train-head', '--cache', cache, '--out', out, '--epochs', '1', ...extra];

interface Row {
  name: string;
  /** The command line; `out` is a fresh path for whatever the command could write. */
  args: (out: string) => string[];
  code: ErrorCode;
  /** Texts the message must contain: the culprit and the fix. */
  mentions: () => string[];
  /** Paths that must not exist afterwards (besides `out`). */
  absent?: () => string[];
}

const FIX_DECODE = '--skip-bad';
const rows: Row[] = [
  // images
  { name: 'zero-byte image', args: () => cf(P['zero']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['empty.png', '0 bytes', FIX_DECODE] },
  { name: 'truncated PNG', args: () => cf(P['truncPng']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['cut.png', 'truncated or damaged', FIX_DECODE] },
  { name: 'truncated JPEG', args: () => cf(P['truncJpeg']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['cut.jpg', FIX_DECODE] },
  { name: 'a text file named .png', args: () => cf(P['text']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['notes.png', 'not an image in a supported format', FIX_DECODE] },
  { name: 'unsupported format (BMP) in a class folder', args: () => cf(P['bmpFolder']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['old.bmp', 'supported format', FIX_DECODE] },
  { name: 'unsupported format (BMP) in a manifest', args: () => cf(P['bmpManifest']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['old.bmp', 'supported format', FIX_DECODE] },
  { name: 'SVG (rendering depends on fonts)', args: () => cf(P['svg']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['icon.svg', 'SVG', FIX_DECODE] },
  // data sets
  { name: 'empty data set', args: () => cf(P['emptyRoot']!), code: 'SPLITFIT_DATA_EMPTY', mentions: () => [P['emptyRoot']!, 'one subfolder per class'] },
  { name: 'empty class folder', args: () => cf(P['emptyClass']!), code: 'SPLITFIT_DATA_EMPTY', mentions: () => ['c-empty', 'add images or remove the folder'] },
  { name: 'manifest line pointing to a missing file', args: () => cf(P['missingFile']!), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['gone.png', 'labels.csv line 4', 'file not found'] },
  { name: 'manifest with a bad header', args: () => cf(P['badHeader']!), code: 'SPLITFIT_USAGE', mentions: () => ['labels.csv', 'path,label', 'file,class'] },
  { name: 'manifest without rows', args: () => cf(P['noRows']!), code: 'SPLITFIT_DATA_EMPTY', mentions: () => ['labels.csv', 'no samples'] },
  { name: 'IDX with mismatched counts', args: () => cf(join(P['idx']!, 'x-images-idx3-ubyte')), code: 'SPLITFIT_DATA_DECODE', mentions: () => ['3 images', '2 labels'] },
  { name: 'data path that does not exist', args: () => cf(join(root, 'nowhere')), code: 'SPLITFIT_IO', mentions: () => ['nowhere', 'not found'] },
  // models
  { name: 'model.json missing a weight shard', args: () => cfModel(join(P['noShard']!, 'model.json')), code: 'SPLITFIT_MODEL_LOAD', mentions: () => ['weights.bin'] },
  { name: 'model.json that is not a LayersModel', args: () => cfModel(join(P['graph']!, 'model.json')), code: 'SPLITFIT_MODEL_LOAD', mentions: () => ['GraphModel', 'LayersModel'] },
  { name: 'model.json that is not JSON', args: () => cfModel(join(P['notJson']!, 'model.json')), code: 'SPLITFIT_MODEL_LOAD', mentions: () => ['model.json'] },
  { name: 'model path that does not exist', args: () => cfModel(join(root, 'no-model', 'model.json')), code: 'SPLITFIT_MODEL_LOAD', mentions: () => ['no-model', 'file not found', 'splitfit models'] },
  { name: 'unknown boundary layer', args: () => ['cache-features', '--model', fx.model, '--boundary', 'block2_ad', '--data', fx.data, '--cache', goodCache], code: 'SPLITFIT_LAYER_NOT_FOUND', mentions: () => ['block2_ad', 'block2_add'] },
  { name: 'boundary index out of range', args: () => ['cache-features', '--model', fx.model, '--boundary', '99', '--data', fx.data, '--cache', goodCache], code: 'SPLITFIT_LAYER_NOT_FOUND', mentions: () => ['99', 'out of range'] },
  { name: 'boundary that is not a cut', args: () => ['cache-features', '--model', fx.model, '--boundary', 'block1_relu', '--data', fx.data, '--cache', goodCache], code: 'SPLITFIT_BOUNDARY_NOT_A_CUT', mentions: () => ['block1_relu', 'block1_add'] },
  // The stem's first kernel weight is NaN: model.predict gives NaN everywhere, so must extraction.
  { name: 'NaN in the features', args: () => cfModel(join(P['nanModel']!, 'model.json')), code: 'SPLITFIT_NUMERIC', mentions: () => ['NaN'] },
  // cache-features flags
  { name: 'cache-features without --model', args: () => ['cache-features', '--data', fx.data, '--cache', goodCache], code: 'SPLITFIT_USAGE', mentions: () => ['--model'] },
  { name: '--batch-size 0', args: () => cf(fx.data, '--batch-size', '0'), code: 'SPLITFIT_USAGE', mentions: () => ['--batch-size', '"0"'] },
  { name: '--input-size that does not match the model', args: () => cf(fx.data, '--input-size', '32x32'), code: 'SPLITFIT_USAGE', mentions: () => ['--input-size', '16x16'] },
  { name: 'malformed --input-size', args: () => cf(fx.data, '--input-size', '16'), code: 'SPLITFIT_USAGE', mentions: () => ['--input-size', 'HxW'] },
  { name: 'unknown --preprocess', args: () => cf(fx.data, '--preprocess', 'imagenet'), code: 'SPLITFIT_USAGE', mentions: () => ['imagenet', 'unit'] },
  { name: 'unknown --dtype', args: () => cf(fx.data, '--dtype', 'float64'), code: 'SPLITFIT_USAGE', mentions: () => ['--dtype', 'float16'] },
  { name: 'unknown --backend', args: () => cf(fx.data, '--backend', 'gpu'), code: 'SPLITFIT_USAGE', mentions: () => ['--backend', 'wasm'] },
  // train-head
  { name: 'invalid head spec', args: (out) => th(goodCache, out, '--head', 'gap,dense:many:relu,dense:N:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: () => ['dense:many:relu'] },
  { name: 'head spec not ending in N outputs', args: (out) => th(goodCache, out, '--head', 'gap,dense:5:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: () => ['5', '3'] },
  { name: 'train-head on a cache built for another model', args: (out) => th(P['changedCache']!, out), code: 'SPLITFIT_CACHE_MISMATCH', mentions: () => ['changed-model', 'cache-features'] },
  { name: 'train-head on a fingerprint not in the cache', args: (out) => th(goodCache, out, '--fingerprint', 'ab'.repeat(32)), code: 'SPLITFIT_CACHE_MISMATCH', mentions: () => ['ab'.repeat(32), 'cache stats'] },
  { name: 'train-head on a cache without runs', args: (out) => th(P['emptyCache']!, out), code: 'SPLITFIT_CACHE_MISMATCH', mentions: () => ['cache-features'] },
  { name: 'train-head on a cache with no entries', args: (out) => th(P['noEntriesCache']!, out), code: 'SPLITFIT_CACHE_MISMATCH', mentions: () => ['no feature entries', 'cache-features'] },
  { name: 'train-head on a cache that does not exist', args: (out) => th(join(root, 'no-cache'), out), code: 'SPLITFIT_IO', mentions: () => ['no-cache', 'cache-features'], absent: () => [join(root, 'no-cache')] },
  { name: 'train-head on a single class', args: (out) => th(P['oneClassCache']!, out), code: 'SPLITFIT_DATA_EMPTY', mentions: () => ['2 classes'] },
  { name: '--epochs 0', args: (out) => th(goodCache, out, '--epochs', '0'), code: 'SPLITFIT_USAGE', mentions: () => ['--epochs', '"0"'] },
  { name: 'negative --epochs', args: (out) => th(goodCache, out, '--epochs', '-3'), code: 'SPLITFIT_USAGE', mentions: () => ['--epochs', '"-3"'] },
  { name: 'non-numeric --epochs', args: (out) => th(goodCache, out, '--epochs', 'ten'), code: 'SPLITFIT_USAGE', mentions: () => ['--epochs', '"ten"'] },
  { name: '--lr NaN', args: (out) => th(goodCache, out, '--lr', 'NaN'), code: 'SPLITFIT_USAGE', mentions: () => ['--lr', 'NaN'] },
  { name: '--lr Infinity', args: (out) => th(goodCache, out, '--lr', 'Infinity'), code: 'SPLITFIT_USAGE', mentions: () => ['--lr', 'Infinity'] },
  { name: '--validation-split 1', args: (out) => th(goodCache, out, '--validation-split', '1'), code: 'SPLITFIT_USAGE', mentions: () => ['--validation-split', '[0, 1)'] },
  { name: '--class-weights with a negative weight', args: (out) => th(goodCache, out, '--class-weights', '1,-1,1'), code: 'SPLITFIT_USAGE', mentions: () => ['--class-weights'] },
  { name: 'unknown flag', args: (out) => th(goodCache, out, '--epoch', '3'), code: 'SPLITFIT_USAGE', mentions: () => ['--epoch', 'splitfit --help'] },
  { name: 'unknown command', args: () => ['train-heads', '--cache', goodCache], code: 'SPLITFIT_USAGE', mentions: () => ['train-heads', 'train-head'] },
  { name: 'train-head without --out', args: () => ['train-head', '--cache', goodCache], code: 'SPLITFIT_USAGE', mentions: () => ['--out'] },
  { name: '--out is an existing file', args: () => ['train-head', '--cache', goodCache, '--out', P['aFile']!], code: 'SPLITFIT_IO', mentions: () => ['--out', 'a-file.txt', 'not a folder'] },
  { name: '--out below a file', args: () => ['train-head', '--cache', goodCache, '--out', join(P['aFile']!, 'model')], code: 'SPLITFIT_IO', mentions: () => ['--out', 'a-file.txt'] },
  // cache maintenance
  { name: 'cache verify on a folder without a cache', args: () => ['cache', 'verify', '--cache', join(root, 'no-cache-2')], code: 'SPLITFIT_IO', mentions: () => ['no-cache-2', 'cache-features'], absent: () => [join(root, 'no-cache-2')] },
];

function expectCodedFailure(r: CliResult, code: ErrorCode, mentions: string[]): string {
  expect(r.status, r.stderr).toBe(code === 'SPLITFIT_USAGE' ? 2 : 1);
  expect(r.json).toEqual({ error: { code, message: expect.any(String) } });
  const lines = splitfitStderr(r.stderr);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^splitfit: ${code}: \\S`));
  expect(stackLines(r.stderr)).toEqual([]);
  for (const m of mentions) expect(lines[0]).toContain(m);
  return lines[0]!;
}

describe('bad input through the CLI: coded error, one line, nothing written or lost', () => {
  it.each(rows.map((r, i) => [r.name, r, i] as const))('%s', async (_name, row, i) => {
    // Each row starts from the same good cache, so a row that changes it cannot break the next ones.
    await rm(goodCache, { recursive: true, force: true });
    await cp(pristineCache, goodCache, { recursive: true });
    const caches = [goodCache, P['changedCache']!, P['nanCache']!, P['noEntriesCache']!, P['emptyCache']!, P['oneClassCache']!];
    const before = await Promise.all(caches.map(snapshotCache));
    const out = join(root, 'outs', String(i));
    const args = row.args(out);
    const r = await runCli([...args, '--json', ...(args[0] === 'cache' ? [] : backendArgs())]);
    expectCodedFailure(r, row.code, row.mentions());
    const after = await Promise.all(caches.map(snapshotCache));
    // A failed cache-features must not record itself as the cache's run (train-head would train on it).
    caches.forEach((c, i) => expect(diffSnapshots(before[i]!, after[i]!), `${c}: the failed command changed the cache`).toEqual([]));
    for (const path of [out, ...(row.absent?.() ?? [])]) expect(await exists(path), path).toBe(false);
  });

  it('--verbose adds the stack trace; without it there is none', async () => {
    const quiet = await runCli([...cf(P['zero']!), ...backendArgs()]);
    expect(stackLines(quiet.stderr)).toEqual([]);
    const verbose = await runCli([...cf(P['zero']!), '--verbose', ...backendArgs()]);
    expect(verbose.status).toBe(1);
    expect(splitfitStderr(verbose.stderr)[0]).toMatch(/^splitfit: SPLITFIT_DATA_DECODE: /);
    expect(stackLines(verbose.stderr).length).toBeGreaterThan(0);
  });

  it('--skip-bad counts undecodable images as failed, caches the rest, and names each on stderr', async () => {
    const cache = join(root, 'skip-bad-cache');
    const data = await dataset('skip-bad', { 'a/empty.png': Buffer.alloc(0), 'b/notes.png': Buffer.from('text\n'), 'a/old.bmp': Buffer.from('BM') });
    const r = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', data, '--cache', cache, '--skip-bad', '--json', ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ total: 7, extracted: 4, failed: 3, entries: 4 });
    const failures = (r.json['failures'] as { source: string }[]).map((f) => f.source.split('/').at(-1)).sort();
    expect(failures).toEqual(['empty.png', 'notes.png', 'old.bmp']);
    expect(splitfitStderr(r.stderr).filter((l) => l.startsWith('skipped '))).toHaveLength(3);
  });

  it('NaN features with --skip-bad: every sample failed, nothing cached, and train-head refuses the run', async () => {
    const cache = join(root, 'nan-skip');
    const r = await runCli(['cache-features', '--model', join(P['nanModel']!, 'model.json'), '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--skip-bad', '--json', ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ total: 12, failed: 12, entries: 0 });
    expect((r.json['failures'] as { reason: string }[]).every((f) => f.reason.includes('NaN'))).toBe(true);
    expect((await readRawFeatures(cache)).get(String(r.json['fingerprint']))?.size ?? 0).toBe(0);
    const train = await runCli(['train-head', '--cache', cache, '--out', join(root, 'nan-out'), '--json', ...backendArgs()]);
    expectCodedFailure(train, 'SPLITFIT_CACHE_MISMATCH', ['no feature entries']);
    expect(await exists(join(root, 'nan-out'))).toBe(false);
  });

  it('--out on a read-only file system is SPLITFIT_IO before any training (root: a read-only tmpfs)', async (ctx) => {
    const mnt = join(root, 'ro-mount');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch (err) {
      // Needs root with CAP_SYS_ADMIN (permissions alone do not stop root); CI must run it.
      if (process.env['CI'] === 'true') throw err;
      ctx.skip();
    }
    try {
      const r = await runCli([...th(goodCache, join(mnt, 'model')), '--json', ...backendArgs()]);
      expectCodedFailure(r, 'SPLITFIT_IO', ['--out', 'read-only file system']);
      expect(await readdir(mnt)).toEqual([]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});

describe('unusual but valid images are converted, not rejected', () => {
  it('16-bit, gray, gray+alpha and CMYK images are accepted; 16-bit and gray give the features of their 8-bit RGB twins', async () => {
    // Twins: a 16-bit PNG with values v·257 decodes to v; a 1-channel gray PNG equals its 3-channel copy.
    const w = 16;
    const rgb8 = Array.from({ length: w * w * 3 }, (_, i) => (i * 37) % 256);
    const gray8 = Array.from({ length: w * w }, (_, i) => (i * 53) % 256);
    const files: Record<string, Buffer> = {
      'a/rgb8.png': await sharp(Buffer.from(rgb8), { raw: { width: w, height: w, channels: 3 } }).png().toBuffer(),
      'a/rgb16.png': png16(rgb8.map((v) => v * 257), w, w, 3),
      'b/gray1.png': await sharp(Buffer.from(gray8), { raw: { width: w, height: w, channels: 1 } }).toColourspace('b-w').png().toBuffer(),
      'b/gray3.png': await sharp(Buffer.from(gray8.flatMap((v) => [v, v, v])), { raw: { width: w, height: w, channels: 3 } }).png().toBuffer(),
      'b/gray-alpha.png': await sharp(Buffer.from(gray8.flatMap((v) => [v, 255])), { raw: { width: w, height: w, channels: 2 } }).toColourspace('b-w').png().toBuffer(),
      'a/cmyk.jpg': await sharp(Buffer.from(rgb8), { raw: { width: w, height: w, channels: 3 } }).toColourspace('cmyk').jpeg().toBuffer(),
    };
    expect((await sharp(files['a/rgb16.png']).metadata()).depth).toBe('ushort');
    expect((await sharp(files['a/cmyk.jpg']).metadata()).space).toBe('cmyk');
    expect((await sharp(files['b/gray1.png']).metadata()).channels).toBe(1);
    expect((await sharp(files['b/gray-alpha.png']).metadata()).channels).toBe(2);
    const dir = join(root, 'data', 'unusual');
    for (const [rel, bytes] of Object.entries(files)) {
      await mkdir(join(dir, rel.split('/')[0]!), { recursive: true });
      await writeFile(join(dir, rel), bytes);
    }
    const cache = join(root, 'unusual-cache');
    const r = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', dir, '--cache', cache, '--json', ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ total: 6, extracted: 6, failed: 0, entries: 6 });
    const raw = (await readRawFeatures(cache)).get(String(r.json['fingerprint']))!;
    const entry = (rel: string): Buffer => [...raw].find(([key]) => key.includes(`!${sha256(files[rel]!)}!`))![1];
    expect(entry('a/rgb16.png').equals(entry('a/rgb8.png'))).toBe(true);
    expect(entry('b/gray1.png').equals(entry('b/gray3.png'))).toBe(true);
    expect(entry('b/gray-alpha.png').equals(entry('b/gray3.png'))).toBe(true); // opaque alpha changes nothing
  });
});
