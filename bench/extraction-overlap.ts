/**
 * Where extraction's time goes beyond the compiled base, side by side in one process: the same
 * Twemoji PNGs through five pipelines that add one stage at a time, then `extractFeatures` itself.
 *
 *   raw             the compiled base on one fixed input tensor (what "compiled base alone" means)
 *   forward         + a new input tensor per batch from uint8 pixels decoded beforehand (preprocessInto, tensor4d, dataSync)
 *   forward+writes  + the cache writes extraction makes (maps and pooled vectors, one LevelDB batch per forward)
 *   pixels main     + decoding on the fly as extraction does it: sharp on libuv threads, the JS pixel pipeline on the main thread
 *   pixels worker   the same with decode and pixel pipeline in one worker thread (transferred back)
 *   extractFeatures the library call on a manifest of the same images (source opening and run records included)
 *
 * Rounds interleave the variants (order rotated) so drifting load hits all alike; the table gives
 * the best and median round, the ratio of each to `raw`, and CPU core-seconds per image of the
 * whole process (all threads). Progress on stderr, the table on stdout.
 *
 *   npx tsx bench/extraction-overlap.ts [--images 512] [--batch 4] [--rounds 3]
 */
import { createHash } from 'node:crypto';
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { resolveBackend } from '../src/backend/resolve.js';
import { FeatureCache } from '../src/cache/feature-cache.js';
import { pooledEntries, pooledNamespace } from '../src/cache/pooled.js';
import { decodeImage } from '../src/data/decode.js';
import { preprocessInto } from '../src/data/preprocess.js';
import { extractFeatures } from '../src/extract/extract.js';
import { type PreparedBase, prepareBase } from '../src/extract/prepare.js';
import { intFlag } from './args.js';

const { values: argv } = parseArgs({ options: { images: { type: 'string' }, batch: { type: 'string' }, rounds: { type: 'string' } }, strict: true });
const log = (msg: string): void => void process.stderr.write(`[overlap ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

type Variant = 'raw' | 'forward' | 'forward+writes' | 'pixels main' | 'pixels worker' | 'extractFeatures';
const VARIANTS: readonly Variant[] = ['raw', 'forward', 'forward+writes', 'pixels main', 'pixels worker', 'extractFeatures'];

interface Images {
  files: string[];
  bytes: Buffer[];
  pixels: Uint8Array[];
}

async function twemoji(n: number): Promise<{ files: string[]; bytes: Buffer[] }> {
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('emoji-datasource-twitter/package.json')), 'img', 'twitter', '64');
  const all = (await readdir(dir)).filter((f) => f.endsWith('.png')).sort();
  // Every k-th file, skipping files whose bytes repeat an earlier one (extraction counts those once).
  const step = Math.floor(all.length / (n + 16));
  const seen = new Set<string>();
  const files: string[] = [];
  const bytes: Buffer[] = [];
  for (let i = 0; files.length < n && i * step < all.length; i++) {
    const file = join(dir, all[i * step]!);
    const b = await readFile(file);
    const hash = createHash('sha256').update(b).digest('hex');
    if (seen.has(hash)) continue;
    seen.add(hash);
    files.push(file);
    bytes.push(b);
  }
  if (files.length < n) throw new Error(`only ${files.length} distinct Twemoji PNGs, asked for ${n}`);
  return { files, bytes };
}

/** Decodes through one worker thread, `id` → pixels. */
class PixelWorker {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, (pixels: Uint8Array) => void>();
  constructor(target: { height: number; width: number; channels: 1 | 3 }) {
    // The worker is TypeScript: register tsx in it first (a worker does not inherit the parent's loader).
    const entry = new URL('./extraction-overlap-worker.ts', import.meta.url).href;
    const boot = `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
    this.#worker = new Worker(boot, { eval: true, workerData: target });
    this.#worker.on('message', (m: { id: number; pixels: Uint8Array }) => {
      this.#waiting.get(m.id)!(m.pixels);
      this.#waiting.delete(m.id);
    });
  }
  decode(id: number, bytes: Buffer): Promise<Uint8Array> {
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#worker.postMessage({ id, bytes });
    });
  }
  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

interface Pipeline {
  p: PreparedBase;
  batch: number;
  images: Images;
  worker: PixelWorker;
  work: string;
}

/** Forward passes over all images with `pixelsOf` feeding them (3 batches read ahead), optionally writing the cache. */
async function pipeline(ctx: Pipeline, pixelsOf: (i: number) => Promise<Uint8Array>, cacheDir: string | undefined): Promise<void> {
  const { p, batch } = ctx;
  const n = ctx.images.bytes.length;
  const [h, w] = p.inputSize;
  const per = h * w * p.channels;
  const featurePer = p.featureShape.reduce((a, b) => a * b, 1);
  const cache = cacheDir === undefined ? undefined : await FeatureCache.open(cacheDir, { command: 'bench/extraction-overlap' });
  const pooled = pooledNamespace(p.fingerprint)!;
  try {
    const ahead: Promise<Uint8Array>[] = [];
    let next = 0;
    while (next < Math.min(n, 3 * batch)) ahead.push(pixelsOf(next++));
    let pending: Promise<void> = Promise.resolve();
    for (let start = 0; start < n; start += batch) {
      const count = Math.min(batch, n - start);
      const images = await Promise.all(ahead.splice(0, count));
      for (let k = 0; k < count && next < n; k++) ahead.push(pixelsOf(next++));
      const flat = new Float32Array(count * per);
      images.forEach((img, j) => preprocessInto(img, p.channels, p.preset, flat, j * per));
      const y = tf.tidy(() => p.run(tf.tensor4d(flat, [count, h, w, p.channels])));
      const features = y.dataSync() as Float32Array;
      y.dispose();
      if (cache === undefined) continue;
      await pending;
      const entries = images.map((_, j) => ({ sampleId: `s${String(start + j).padStart(6, '0')}`, view: 0, generation: 0, data: features.subarray(j * featurePer, (j + 1) * featurePer), shape: p.featureShape }));
      pending = cache.putFeatureSets([
        { fingerprint: p.fingerprint, entries, dtype: p.dtype },
        { fingerprint: pooled, entries: pooledEntries(entries), dtype: 'float32' },
      ]);
    }
    await pending;
  } finally {
    await cache?.close();
  }
}

async function runVariant(v: Variant, ctx: Pipeline, manifest: string, round: number): Promise<void> {
  const { p, batch, images } = ctx;
  const dir = join(ctx.work, `${v.replace(/\W+/g, '-')}-${round}`);
  const target = { height: p.inputSize[0], width: p.inputSize[1], channels: p.channels };
  switch (v) {
    case 'raw': {
      const x = tf.randomUniform([batch, ...p.inputSize, p.channels], -1, 1) as tf.Tensor4D;
      for (let i = 0; i < images.bytes.length; i += batch) {
        const y = p.run(x);
        y.dataSync();
        y.dispose();
      }
      x.dispose();
      return;
    }
    case 'forward':
      return pipeline(ctx, (i) => Promise.resolve(images.pixels[i]!), undefined);
    case 'forward+writes':
      return pipeline(ctx, (i) => Promise.resolve(images.pixels[i]!), dir);
    case 'pixels main':
      return pipeline(ctx, (i) => decodeImage(images.bytes[i]!, target, images.files[i]!), dir);
    case 'pixels worker':
      return pipeline(ctx, (i) => ctx.worker.decode(i, images.bytes[i]!), dir);
    case 'extractFeatures': {
      const r = await extractFeatures({ prepared: p, model: 'mobilenet_v2', data: manifest, cache: dir, batchSize: batch });
      if (r.extracted !== images.bytes.length) throw new Error(`extractFeatures extracted ${r.extracted} of ${images.bytes.length}`);
    }
  }
}

async function main(): Promise<void> {
  const n = intFlag('images', argv.images, 512);
  const rounds = intFlag('rounds', argv.rounds, 3);
  const backend = await resolveBackend('tensorflow');
  const p = await prepareBase({ model: 'mobilenet_v2', boundary: 'out_relu', compiled: true });
  const batch = intFlag('batch', argv.batch, p.batchSize);
  const work = await mkdtemp(join(tmpdir(), 'splitfit-bench-overlap-'));
  const worker = new PixelWorker({ height: p.inputSize[0], width: p.inputSize[1], channels: p.channels });
  try {
    const { files, bytes } = await twemoji(n);
    const target = { height: p.inputSize[0], width: p.inputSize[1], channels: p.channels };
    const pixels = await Promise.all(bytes.map((b, i) => decodeImage(b, target, files[i]!)));
    // Labels do not matter (one class).
    const manifest = join(work, 'images.csv');
    await writeFile(manifest, `path,label\n${files.map((f) => `${f},x`).join('\n')}\n`);
    const images: Images = { files, bytes, pixels };
    const ctx: Pipeline = { p, batch, images, worker, work };
    log(`backend ${backend}; ${cpus().length} cores; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${n} images, batch ${batch}, ${rounds} rounds; warming up`);
    await mkdir(join(work, 'warm'), { recursive: true });
    await Promise.all([0, 1, 2, 3].map((i) => worker.decode(i, bytes[i]!)));
    await pipeline({ ...ctx, images: { files: files.slice(0, 3 * batch), bytes: bytes.slice(0, 3 * batch), pixels: pixels.slice(0, 3 * batch) } }, (i) => Promise.resolve(pixels[i]!), join(work, 'warm', 'cache'));

    const seconds = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
    const cpu = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
    for (let r = 0; r < rounds; r++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length]!);
      for (const v of order) {
        const u0 = process.cpuUsage();
        const t0 = performance.now();
        await runVariant(v, ctx, manifest, r);
        const s = (performance.now() - t0) / 1000;
        const u = process.cpuUsage(u0);
        seconds.get(v)!.push(s);
        cpu.get(v)!.push((u.user + u.system) / 1e6);
        log(`round ${r + 1} ${v}: ${(n / s).toFixed(1)} img/s, ${((u.user + u.system) / 1e3 / n).toFixed(2)} CPU-ms/image; load ${loadavg()[0]!.toFixed(2)}`);
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const raw = n / Math.min(...seconds.get('raw')!);
    console.log(`MobileNetV2 out_relu, ${n} Twemoji 64 px PNGs → 224², batch ${batch}, tfjs ${tf.version.tfjs} on ${backend}, ${cpus().length} cores, ${rounds} rounds`);
    console.log('| pipeline | img/s best (median) | / raw | CPU-ms per image (all threads) |');
    console.log('|---|---:|---:|---:|');
    for (const v of VARIANTS) {
      const best = n / Math.min(...seconds.get(v)!);
      console.log(`| ${v} | ${best.toFixed(1)} (${(n / median(seconds.get(v)!)).toFixed(1)}) | ${(best / raw).toFixed(2)} | ${((median(cpu.get(v)!) * 1000) / n).toFixed(2)} |`);
    }
  } finally {
    await worker.terminate();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
