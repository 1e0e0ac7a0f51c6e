/**
 * In-memory against streamed head epochs, side by side in one run, at 1,000 and 50,000 cached
 * samples. Synthetic features of the right shape are written through the real cache (so every
 * streamed value is CRC-checked as in a job), then each case trains the same head with the job's
 * own loop (`fitEpochs`) on `memoryBatches` and on `streamBatches` (what `--memory-budget-mb 1`
 * selects, with `reuseBuffers` as train-head sets it). Cases:
 *   maps/flatten  7×7×1280 maps, `flatten,dense:10:softmax` (maps both ways)
 *   maps/gap      7×7×1280 maps, `gap,dense:10:softmax` as train-head runs it: pooled once in
 *                 memory; streamed, read from the pooled namespace (made in epoch 1)
 *   pooled        1280-d vectors (a boundary after pooling), `dense:10:softmax`
 * The ratio: one child per (case, size) trains both modes alternately, epoch by epoch, so drifting
 * load hits both alike. Peak RSS: each (case, size, mode) also runs in its own child process, so
 * its peak RSS is its own (its epoch ratio is printed too). Epoch 1 (warm-up) is left out.
 * At 50k, 7×7×1280 maps are 12.5 GB: beyond `--max-map-gb` the map shrinks to `--big-map` (said in the output).
 * Features are as sparse as real ones, so the cache stores them as it stores real ones (zero-bitmap
 * values): `--zeros` is the fraction of exact zeros in maps (MobileNetV2 `out_relu` measured 0.949 on
 * 511 Twemoji icons, 0.947 on 300 Fashion-MNIST images), `--vector-zeros` in 1280-d vectors (their
 * global averages: 0.579 on the same Fashion-MNIST images — channels zero at all 49 positions).
 *
 *   npx tsx bench/streaming.ts [--sizes 1000,50000] [--epochs 3] [--rounds 1] [--work <dir>] [--max-map-gb 2] [--big-map 7x7x128]
 *                              [--zeros 0.95] [--vector-zeros 0.58]
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { resolveBackend } from '../src/backend/resolve.js';
import { FeatureCache } from '../src/cache/feature-cache.js';
import { memoryBatches, pooledBatches, streamBatches, type BatchSource } from '../src/train/batches.js';
import { featureSize, loadFeatureSet, PLAIN, poolFeatureSet } from '../src/train/feature-set.js';
import { fitEpochs } from '../src/train/fit.js';
import { intFlag } from './args.js';

type CaseName = 'maps/flatten' | 'maps/gap' | 'pooled';
type Mode = 'memory' | 'stream';
type ChildMode = Mode | 'interleaved';
interface ChildJob {
  work: string;
  n: number;
  shape: number[];
  /** Fraction of exact zeros in the synthetic features. */
  zeros: number;
  caseName: CaseName;
  mode: ChildMode;
  epochs: number;
}
/** Both modes in one process, epoch by epoch alternately: the ratio least disturbed by drifting load. */
interface InterleavedResult {
  memory: number[];
  stream: number[];
}
interface ChildResult {
  /** Epochs 2… (epoch 1 warms up kernels and, for a streamed gap head, makes the pooled namespace). */
  seconds: number[];
  firstEpochSeconds: number;
  loadSeconds: number;
  maxRssMb: number;
}

const CLASSES = 10;
const BATCH = 32;

const { values: argv } = parseArgs({
  options: {
    sizes: { type: 'string' },
    epochs: { type: 'string' },
    rounds: { type: 'string' },
    work: { type: 'string' },
    'max-map-gb': { type: 'string' },
    'big-map': { type: 'string' },
    zeros: { type: 'string' },
    'vector-zeros': { type: 'string' },
    child: { type: 'string' },
  },
  strict: true,
});

if (argv.child !== undefined) {
  const job = JSON.parse(argv.child) as ChildJob;
  console.log(JSON.stringify(job.mode === 'interleaved' ? await interleavedChild(job) : await child(job)));
} else {
  await main();
}

async function main(): Promise<void> {
  const sizes = (argv.sizes ?? '1000,50000').split(',').map((s) => intFlag('sizes', s, 0));
  const epochs = intFlag('epochs', argv.epochs, 3);
  const rounds = intFlag('rounds', argv.rounds, 1);
  const work = argv.work ?? join(tmpdir(), 'splitfit-bench-streaming');
  const maxMapBytes = Number(argv['max-map-gb'] ?? '2') * 2 ** 30;
  const bigMap = (argv['big-map'] ?? '7x7x128').split('x').map(Number);
  const fraction = (flag: string, value: string | undefined, fallback: number): number => {
    const z = Number(value ?? fallback);
    if (!(z >= 0 && z < 1)) throw new Error(`--${flag} must be in [0, 1), got ${value}`);
    return z;
  };
  const mapZeros = fraction('zeros', argv.zeros, 0.95);
  const vectorZeros = fraction('vector-zeros', argv['vector-zeros'], 0.58);
  const backend = await resolveBackend('auto');
  console.log(`backend ${backend}; ${cpus().length} cores; load average at start ${loadavg().map((l) => l.toFixed(2)).join(', ')}; batch ${BATCH}; ${epochs - 1} timed epochs`);
  const rows: string[] = [];
  const record: unknown[] = [];
  for (const n of sizes) {
    const full = [7, 7, 1280];
    const map = n * featureSize(full) * 4 <= maxMapBytes ? full : bigMap;
    if (map !== full) console.log(`n=${n}: 7×7×1280 maps would be ${((n * featureSize(full) * 4) / 2 ** 30).toFixed(1)} GB (> --max-map-gb); maps cases use ${map.join('×')}`);
    for (const [caseName, shape] of [['maps/flatten', map], ['maps/gap', map], ['pooled', [1280]]] as [CaseName, number[]][]) {
      const zeros = shape.length === 3 ? mapZeros : vectorZeros;
      await ensureCache(work, n, shape, zeros);
      const runs: Record<Mode, ChildResult[]> = { memory: [], stream: [] };
      const loads: number[] = [];
      for (let r = 0; r < rounds; r++) {
        for (const mode of (r % 2 === 0 ? ['memory', 'stream'] : ['stream', 'memory']) as Mode[]) {
          runs[mode].push(runChild({ work, n, shape, zeros, caseName, mode, epochs }));
          loads.push(loadavg()[0]!);
        }
      }
      const inter = runChild<InterleavedResult>({ work, n, shape, zeros, caseName, mode: 'interleaved', epochs });
      const interRatio = median(inter.memory) / median(inter.stream);
      const med = (m: Mode): number => median(runs[m].flatMap((x) => x.seconds));
      const rss = (m: Mode): number => Math.max(...runs[m].map((x) => x.maxRssMb));
      const ratio = med('memory') / med('stream');
      const line =
        `${caseName.padEnd(12)} n=${String(n).padStart(6)} [${shape.join('×')}]: interleaved in one process: epoch memory ${median(inter.memory).toFixed(3)} s, stream ${median(inter.stream).toFixed(3)} s → memory/stream ${interRatio.toFixed(2)}; ` +
        `separate processes: memory ${med('memory').toFixed(3)} s, stream ${med('stream').toFixed(3)} s → ${ratio.toFixed(2)}; ` +
        `first epoch memory ${median(runs.memory.map((x) => x.firstEpochSeconds)).toFixed(2)} s (+ load ${median(runs.memory.map((x) => x.loadSeconds)).toFixed(2)} s), stream ${median(runs.stream.map((x) => x.firstEpochSeconds)).toFixed(2)} s; peak RSS memory ${rss('memory').toFixed(0)} MB, stream ${rss('stream').toFixed(0)} MB; 1-min load ${loads.map((l) => l.toFixed(1)).join(', ')}`;
      console.log(line);
      rows.push(line);
      record.push({ caseName, n, shape, interleaved: { ratio: interRatio, ...inter }, ratio, memory: runs.memory, stream: runs.stream, loads });
    }
  }
  console.log(JSON.stringify({ backend, epochs, rounds, record }));
}

/** Runs one child job; `T` is what its mode prints (`InterleavedResult` for 'interleaved'). */
function runChild<T = ChildResult>(job: ChildJob): T {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [...process.execArgv, script, '--child', JSON.stringify(job)], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`child ${job.caseName} ${job.mode} n=${job.n} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const last = r.stdout.trim().split('\n').at(-1)!;
  return JSON.parse(last) as T;
}

function fingerprintOf(shape: readonly number[]): string {
  return `bench-streaming-${shape.join('x')}`;
}

function cacheDir(work: string, n: number, shape: readonly number[], zeros: number): string {
  return join(work, `n${n}-${shape.join('x')}-z${zeros}`);
}

function sampleId(i: number): string {
  return `s${String(i).padStart(7, '0')}`;
}

/** Writes `n` synthetic entries of `shape` through the cache (once; a re-run reuses them). */
async function ensureCache(work: string, n: number, shape: number[], zeros: number): Promise<void> {
  await using cache = await FeatureCache.open(cacheDir(work, n, shape, zeros), { command: 'bench/streaming' });
  const fp = fingerprintOf(shape);
  if ((await cache.listFingerprints()).includes(fp) && (await cache.countEntries(fp)) === n) return;
  const t0 = performance.now();
  const per = featureSize(shape);
  let s = 12345;
  const chunk = Math.max(1, Math.floor((32 * 2 ** 20) / (per * 4)));
  for (let start = 0; start < n; start += chunk) {
    const entries = [];
    for (let i = start; i < Math.min(n, start + chunk); i++) {
      const data = new Float32Array(per);
      // Post-ReLU-like values (non-negative, varied), cheap to make: a seeded LCG.
      for (let j = 0; j < per; j++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        const u = (s >>> 8) / 2 ** 24;
        data[j] = u < zeros ? 0 : (u - zeros) / (1 - zeros);
      }
      entries.push({ sampleId: sampleId(i), data, shape });
    }
    await cache.putFeatures(fp, entries, 'float32');
  }
  console.log(`wrote ${n} × [${shape.join('×')}] float32 entries (${zeros} zeros) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

function headFor(caseName: CaseName, shape: readonly number[]): tf.LayersModel {
  const init = tf.initializers.glorotUniform({ seed: 1 });
  const dense = (): tf.layers.Layer => tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init });
  if (caseName === 'maps/flatten') return tf.sequential({ layers: [tf.layers.flatten({ inputShape: [...shape] }), dense()] });
  // maps/gap trains the pooled head (train-head's pooledSpec); pooled is a dense head on vectors.
  const c = shape.at(-1)!;
  return tf.sequential({ layers: [tf.layers.dense({ inputShape: [c], units: CLASSES, activation: 'softmax', kernelInitializer: init })] });
}

async function child(job: ChildJob): Promise<ChildResult> {
  await resolveBackend('auto');
  // Writable for a streamed gap head: its pooled namespace is made in its first epoch (dropped first, so every run makes it).
  const pooling = job.caseName === 'maps/gap' && job.mode === 'stream';
  await using cache = await FeatureCache.open(cacheDir(job.work, job.n, job.shape, job.zeros), { readOnly: !pooling, command: 'bench/streaming' });
  const fp = fingerprintOf(job.shape);
  if (pooling) await cache.gc([fp]);
  const samples = Array.from({ length: job.n }, (_, i) => ({ id: sampleId(i), label: i % CLASSES }));
  const t0 = performance.now();
  let source: BatchSource;
  if (job.mode === 'memory') {
    const set = await loadFeatureSet(cache, fp, samples, job.shape, PLAIN);
    source = memoryBatches(job.caseName === 'maps/gap' ? poolFeatureSet(set) : set, BATCH, 0);
  } else {
    const s = streamBatches(cache, fp, samples, job.shape, PLAIN, { batchSize: BATCH, seed: 0, reuseBuffers: true });
    source = job.caseName === 'maps/gap' ? pooledBatches(s, job.shape) : s;
  }
  const loadSeconds = (performance.now() - t0) / 1000;
  const head = headFor(job.caseName, job.shape);
  const history = await fitEpochs(head, { source, valSet: undefined }, 0, undefined, CLASSES, { epochs: job.epochs, batchSize: BATCH, optimizer: 'adam', learningRate: 1e-3, seed: 0 });
  head.dispose();
  return { seconds: history.seconds.slice(1), firstEpochSeconds: history.seconds[0]!, loadSeconds, maxRssMb: process.resourceUsage().maxRSS / 1024 };
}

async function interleavedChild(job: ChildJob): Promise<InterleavedResult> {
  await resolveBackend('auto');
  const pooling = job.caseName === 'maps/gap';
  await using cache = await FeatureCache.open(cacheDir(job.work, job.n, job.shape, job.zeros), { readOnly: !pooling, command: 'bench/streaming' });
  const fp = fingerprintOf(job.shape);
  if (pooling) await cache.gc([fp]);
  const samples = Array.from({ length: job.n }, (_, i) => ({ id: sampleId(i), label: i % CLASSES }));
  const set = await loadFeatureSet(cache, fp, samples, job.shape, PLAIN);
  const sources: Record<Mode, BatchSource> = {
    memory: memoryBatches(job.caseName === 'maps/gap' ? poolFeatureSet(set) : set, BATCH, 0),
    stream: job.caseName === 'maps/gap' ? pooledBatches(streamBatches(cache, fp, samples, job.shape, PLAIN, { batchSize: BATCH, seed: 0, reuseBuffers: true }), job.shape) : streamBatches(cache, fp, samples, job.shape, PLAIN, { batchSize: BATCH, seed: 0, reuseBuffers: true }),
  };
  const heads: Record<Mode, tf.LayersModel> = { memory: headFor(job.caseName, job.shape), stream: headFor(job.caseName, job.shape) };
  const out: InterleavedResult = { memory: [], stream: [] };
  for (let e = 0; e < job.epochs; e++) {
    for (const mode of (e % 2 === 0 ? ['memory', 'stream'] : ['stream', 'memory']) as Mode[]) {
      const h = await fitEpochs(heads[mode], { source: sources[mode], valSet: undefined }, 0, undefined, CLASSES, { epochs: 1, batchSize: BATCH, optimizer: 'adam', learningRate: 1e-3, seed: e });
      // Epoch 1 of each warms kernels up (and makes the pooled namespace): left out.
      if (e > 0) out[mode].push(h.seconds[0]!);
    }
  }
  heads.memory.dispose();
  heads.stream.dispose();
  return out;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
