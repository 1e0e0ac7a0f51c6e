/**
 * Extraction benchmark: how fast the frozen base runs, side by side.
 *
 *   npm run bench:extraction [-- --quick] [--model mobilenet_v2|inception_v3] [--backends tensorflow,wasm,cpu] [--batch 32] [--batches N]
 *                            [--images N] [--rounds N] [--python /tmp/tfpy/bin/python | --no-python]
 *                            [--no-rss] [--json]
 *
 * Per available backend, on the bundled MobileNetV2 cut at `out_relu` (224×224×3 → 7×7×1280), or
 * with `--model inception_v3` on the bundled InceptionV3 cut at `mixed10` (299×299×3 → 8×8×2048):
 *   - `predict`       the plain base, `base.predict(x)` (tfjs-layers, op by op)
 *   - `compiled-ops`  `compileBase(base, {graph: false})`: BN folded, fused ops, op by op
 *   - `compiled`      `compileBase(base)`: on tensorflow one native TF graph per batch; at batch 32
 *                     and at the batch extraction picks by default (`suggestBatchSize`)
 *   - `extract`       splitfit's whole `extractFeatures` on real PNGs (Twemoji 64×64, decoded and
 *                     resized to the input size by the shared pixel pipeline, preprocessed, cache writes to LevelDB included),
 *                     compiled at both batch sizes, and plain at batch 32
 * then the same network in Python TensorFlow (bench/python/mobilenet_predict.py) when a Python
 * with tensorflow is found, and the peak RSS of `trainHead` on 1k / 10k / 50k synthetic cached
 * 1280-d samples, streamed and in memory.
 *
 * Every measurement runs in a fresh child process, and the list runs `--rounds` times interleaved
 * (3 by default, 1 with --quick; the JS backends once): the tables give the best round and the
 * median. The machine's vCPUs are shared with other VMs, so the script also prints how many cores
 * it delivers (a busy loop on 2 threads vs 1) and, per row, the CPU other processes used. Random
 * input for the raw rows (throughput does not depend on the values). Progress goes to stderr;
 * stdout gets the tables and, with --json, one JSON object as the last line. See docs/BENCHMARKS.md
 * for a measured run and what limits each number.
 */
import * as tf from '@tensorflow/tfjs';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { type BackendName, probeBackend, resolveBackend } from '../src/backend/resolve.js';
import { FeatureCache } from '../src/cache/feature-cache.js';
import { extractFeatures } from '../src/extract/extract.js';
import { prepareBase } from '../src/extract/prepare.js';
import { baseRunFields, type RunInput, saveRun } from '../src/extract/run-meta.js';
import { suggestBatchSize } from '../src/model/batch-size.js';
import { compileBase } from '../src/model/compile/index.js';
import { loadModel } from '../src/model/io.js';
import { splitBase } from '../src/model/split.js';
import { trainHead } from '../src/index.js';
import { findPython, runPythonJson } from './python-peer.js';
import { intFlag } from './args.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The bundled backbones this bench runs (`--model`), each with the cut extraction uses and its Keras peer. */
const BACKBONES = {
  mobilenet_v2: { boundary: 'out_relu', size: 224, keras: 'MobileNetV2' },
  inception_v3: { boundary: 'mixed10', size: 299, keras: 'InceptionV3' },
} as const;
/** The 1280-d vector boundary of the bundled MobileNetV2 (after its 7×7 average pool), for the RSS rows. */
const VECTOR_BOUNDARY = 'flatten_1';

const { values: argv } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    model: { type: 'string', default: 'mobilenet_v2' },
    backends: { type: 'string', default: 'tensorflow,wasm,cpu' },
    batch: { type: 'string' },
    batches: { type: 'string' },
    images: { type: 'string' },
    rounds: { type: 'string' },
    python: { type: 'string' },
    'no-python': { type: 'boolean', default: false },
    'no-rss': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    // Internal: every measurement runs in a fresh child process. (Flag names avoid `--dir` and
    // other prefixes of node-pre-gyp's options: tfjs-node finds its binding with node-pre-gyp,
    // which parses process.argv and would take `--dir` as its own `--directory`.)
    'child-kind': { type: 'string' },
    'child-backend': { type: 'string' },
    'child-batch': { type: 'string' },
    'child-batches': { type: 'string' },
    'child-plain': { type: 'boolean', default: false },
    'child-manifest': { type: 'string' },
    'child-warm': { type: 'string' },
    'child-cache': { type: 'string' },
    'child-samples': { type: 'string' },
    'child-budget': { type: 'string' },
  },
  strict: true,
});

const int = intFlag;

if (!Object.hasOwn(BACKBONES, argv.model)) throw new Error(`--model must be one of ${Object.keys(BACKBONES).join(', ')}, got ${argv.model}`);
const MODEL = argv.model as keyof typeof BACKBONES;
const { boundary: BOUNDARY, size: SIZE, keras: KERAS_ARCH } = BACKBONES[MODEL];

const quick = argv.quick === true;
const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (n: number | undefined, digits = 1): string => (n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits));

/** Core-seconds used by all processes (from /proc/stat), to show contention from other jobs. */
async function busySeconds(): Promise<number | undefined> {
  try {
    const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return (user + nice + system + irq + softirq + steal) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Cores this machine delivers right now: the same busy loop on 1 and then on 2 worker threads;
 * 2 means both vCPUs are ours, ~1 means the host gives us about one core's worth. Contention
 * from other virtual machines on the host does not show in /proc/stat here, only in this ratio.
 */
async function effectiveCores(): Promise<number> {
  const code = `const { parentPort } = require('node:worker_threads'); let x = 0; for (let i = 0; i < 3e8; i++) x = (x * 31 + i) >>> 0; parentPort.postMessage(x);`;
  const spin = (): Promise<void> =>
    new Promise((res, rej) => {
      const w = new Worker(code, { eval: true });
      w.once('message', () => void w.terminate().then(() => res()));
      w.once('error', rej);
    });
  let t0 = performance.now();
  await spin();
  const one = performance.now() - t0;
  t0 = performance.now();
  await Promise.all([spin(), spin()]);
  const two = performance.now() - t0;
  return (2 * one) / two;
}

/** This process's CPU time so far, in core-seconds. */
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Images/s of `run` on one batch of `batch` images: warm-up calls, then the median of timed ones. */
function throughput(run: (x: tf.Tensor4D) => tf.Tensor, batch: number, batches: number, warmup: number): number {
  const x = tf.randomUniform([batch, SIZE, SIZE, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  // Features are read outside tf.tidy: tidy walks a returned typed array element by element.
  const once = (): void => {
    const y = tf.tidy(() => run(x));
    y.dataSync();
    y.dispose();
  };
  try {
    for (let i = 0; i < warmup; i++) once();
    const seconds: number[] = [];
    for (let i = 0; i < batches; i++) {
      const t0 = performance.now();
      once();
      seconds.push((performance.now() - t0) / 1000);
    }
    return batch / median(seconds);
  } finally {
    x.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Data: Twemoji PNGs (npm emoji-datasource-twitter) listed in a CSV manifest.

async function emojiManifest(dir: string, n: number): Promise<string> {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('emoji-datasource-twitter/package.json'));
  const imgDir = join(root, 'img', 'twitter', '64');
  const files = (await readdir(imgDir)).filter((f) => f.endsWith('.png')).sort();
  if (files.length < n) throw new Error(`only ${files.length} Twemoji PNGs, asked for ${n}`);
  // Every k-th file, so the sample covers the whole set; two dummy labels (labels don't matter here),
  // taken from the bytes: some Twemoji files are byte-identical, and one image with two labels is
  // SPLITFIT_DATA_CONFLICT.
  const step = Math.floor(files.length / n);
  const rows = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const file = join(imgDir, files[i * step]!);
      const parity = createHash('sha256').update(await readFile(file)).digest()[0]! % 2;
      return `${file},${parity ? 'odd' : 'even'}`;
    }),
  );
  await mkdir(dir, { recursive: true });
  const file = join(dir, `emoji-${n}.csv`);
  await writeFile(file, `path,label\n${rows.join('\n')}\n`);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Children: one measurement each, in a fresh process (no allocator, oneDNN-cache or JIT state
// carried from one measurement into the next).

type Kind = 'predict' | 'compiled' | 'compiled-ops' | 'extract';

/** Runs this script as a child with `args`; returns its last stdout line as JSON and the load of others meanwhile. */
async function child(args: string[]): Promise<Record<string, unknown> & { othersCores?: number }> {
  const script = fileURLToPath(import.meta.url);
  const b0 = await busySeconds();
  const me0 = cpuSeconds();
  const t0 = performance.now();
  const r = await new Promise<Record<string, unknown>>((res, rej) => {
    const p = spawn(process.execPath, [...process.execArgv, script, '--model', MODEL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', rej);
    p.on('close', (code) => {
      if (code !== 0) return rej(new Error(`child ${args.join(' ')} exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      try {
        res(JSON.parse(out.trim().split('\n').at(-1) ?? '') as Record<string, unknown>);
      } catch {
        rej(new Error(`child ${args.join(' ')}: unexpected output ${out.slice(-200)}`));
      }
    });
  });
  const wall = (performance.now() - t0) / 1000;
  const b1 = await busySeconds();
  const ours = cpuSeconds() - me0 + Number(r['cpuSeconds'] ?? 0);
  return b0 === undefined || b1 === undefined ? r : { ...r, othersCores: Math.max(0, b1 - b0 - ours) / wall };
}

/** Child: raw throughput of one way to run the base. */
async function childRaw(backend: BackendName, kind: Kind, batch: number, batches: number): Promise<Record<string, unknown>> {
  await resolveBackend(backend);
  const model = await loadModel(MODEL);
  const { base } = splitBase(model, BOUNDARY);
  const warmup = backend === 'tensorflow' ? 2 : 1;
  if (kind === 'predict') return { imagesPerSecond: throughput((x) => base.predict(x) as tf.Tensor, batch, batches, warmup), cpuSeconds: cpuSeconds() };
  const t0 = performance.now();
  const compiled = compileBase(base, { graph: kind === 'compiled' });
  // The first batch runs TensorFlow's graph optimizer: it counts as compile time.
  tf.dispose(tf.tidy(() => compiled.predict(tf.zeros([batch, SIZE, SIZE, 3]) as tf.Tensor4D)));
  const compileSeconds = (performance.now() - t0) / 1000;
  const imagesPerSecond = throughput((x) => compiled.predict(x), batch, batches, warmup);
  return { imagesPerSecond, mode: compiled.mode, compileSeconds, cpuSeconds: cpuSeconds() };
}

/**
 * Child: splitfit's extractFeatures end to end (decode + preprocess + base + LevelDB writes),
 * timed after the model is loaded (`extractSeconds`). A warm-up extraction into a scratch cache
 * compiles the base and runs TensorFlow's graph optimizer first.
 */
async function childExtract(backend: BackendName, plain: boolean, batch: number | undefined, manifest: string, warm: string, cache: string): Promise<Record<string, unknown>> {
  await resolveBackend(backend);
  const prepared = await prepareBase({ model: MODEL, boundary: BOUNDARY, compiled: !plain });
  const batchSize = batch ?? prepared.batchSize;
  // A fresh cache per child (a second run into the same one would find everything cached).
  const dir = `${cache}-${process.pid}`;
  try {
    await extractFeatures({ prepared, model: MODEL, data: warm, cache: `${dir}-warm`, batchSize });
    const r = await extractFeatures({ prepared, model: MODEL, data: manifest, cache: dir, batchSize });
    if (r.failed !== 0 || r.extracted === 0) throw new Error(`extraction: ${JSON.stringify({ ...r, failures: r.failures.slice(0, 3) })}`);
    return { imagesPerSecond: r.extracted / r.extractSeconds, images: r.extracted, batch: batchSize, cpuSeconds: cpuSeconds() };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(`${dir}-warm`, { recursive: true, force: true });
  }
}

interface Measure {
  label: string;
  backend: string;
  kind: Kind | 'python predict' | 'python tf.function';
  batch: number;
  /** Images/s per round. */
  rounds: number[];
  othersCores: number[];
  mode?: string;
  compileSeconds?: number;
  images?: number;
  skipped?: string;
}

// ---------------------------------------------------------------------------------------------
// Python TensorFlow peer (bench/python/mobilenet_predict.py), also one process per round.

async function python(bin: string, batch: number, batches: number): Promise<{ predict: number; tfFunction: number; version: string; othersCores?: number }> {
  const script = join(HERE, 'python', 'mobilenet_predict.py');
  const b0 = await busySeconds();
  const t0 = performance.now();
  const r = await runPythonJson<{ tensorflow: string; keras: string; imagesPerSecond: { predict: number; tf_function: number }; cpuSeconds: number }>(bin, script, [
    '--arch',
    KERAS_ARCH,
    '--size',
    String(SIZE),
    '--batch',
    String(batch),
    '--batches',
    String(batches),
    '--json',
  ]);
  const wall = (performance.now() - t0) / 1000;
  const b1 = await busySeconds();
  const out = { predict: r.imagesPerSecond.predict, tfFunction: r.imagesPerSecond.tf_function, version: `TensorFlow ${r.tensorflow}, Keras ${r.keras}` };
  return b0 === undefined || b1 === undefined ? out : { ...out, othersCores: Math.max(0, b1 - b0 - r.cpuSeconds) / wall };
}

// ---------------------------------------------------------------------------------------------
// Peak RSS of trainHead over n cached 1280-d samples: each n written and trained in fresh children.

/** Deterministic class-dependent features: class mean + uniform noise (xorshift). */
function syntheticFeatures(i: number, label: number, dim: number): Float32Array {
  let s = (i * 2654435761) >>> 0 || 1;
  const out = new Float32Array(dim);
  for (let d = 0; d < dim; d++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[d] = ((s >>> 0) / 2 ** 32) * 2 + (d % 10 === label ? 1.5 : 0);
  }
  return out;
}

async function rssWrite(dir: string, n: number): Promise<Record<string, unknown>> {
  await resolveBackend('auto');
  const p = await prepareBase({ model: MODEL, boundary: VECTOR_BOUNDARY });
  const dim = p.featureShape.reduce((a, b) => a * b, 1);
  const labels = Array.from({ length: 10 }, (_, k) => `class${k}`);
  const cache = await FeatureCache.open(dir, { command: 'bench' });
  try {
    const ids: { id: string; label: number }[] = [];
    for (let start = 0; start < n; start += 1000) {
      const chunk = Array.from({ length: Math.min(1000, n - start) }, (_, j) => {
        const i = start + j;
        return { id: `synthetic-${i.toString(16).padStart(8, '0')}`, label: i % 10 };
      });
      ids.push(...chunk);
      await cache.putSamples(chunk.map((c) => ({ id: c.id, source: `synthetic#${c.id}`, label: labels[c.label]! })));
      await cache.putFeatures(
        p.fingerprint,
        chunk.map((c, j) => ({ sampleId: c.id, data: syntheticFeatures(start + j, c.label, dim), shape: p.featureShape })),
        'float32',
      );
    }
    const meta: RunInput = {
      ...baseRunFields(p),
      model: MODEL,
      labels,
      data: '<synthetic>',
      samples: ids,
      views: 1,
      generation: 0,
      seed: 0,
      plainView0: false,
      createdAt: new Date().toISOString(),
    };
    await saveRun(cache, meta, { current: true });
  } finally {
    await cache.close();
  }
  return { n, dim };
}

/**
 * Anonymous RSS (heap and native allocations), without file-backed pages: LevelDB reads its
 * table files through mmap, and the pages it touched count in RSS although the kernel can drop them.
 */
function rssAnon(): number | undefined {
  try {
    const m = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function rssTrain(dir: string, budget: number): Promise<Record<string, unknown>> {
  const backend = await resolveBackend('auto');
  // Sampled RSS while epochs run (from the 'start' event to the last epoch), besides the
  // process peak, which also covers loading the model and stitching/saving after training.
  let training = false;
  let trainPeak = 0;
  let trainPeakAnon = 0;
  const sample = (): void => {
    if (!training) return;
    trainPeak = Math.max(trainPeak, process.memoryUsage().rss);
    trainPeakAnon = Math.max(trainPeakAnon, rssAnon() ?? 0);
  };
  const timer = setInterval(sample, 10);
  const t0 = performance.now();
  const r = await trainHead({
    cache: dir,
    out: join(dir, '..', `out-${process.pid}`),
    epochs: 2,
    batchSize: 32,
    seed: 0,
    memoryBudget: budget,
    onProgress: (e) => {
      if (e.type === 'start') training = true;
      sample();
      if (e.type === 'epoch' && e.epoch === 2) training = false;
    },
  });
  clearInterval(timer);
  const seconds = (performance.now() - t0) / 1000;
  return {
    backend,
    mode: r.mode,
    seconds,
    acc: r.history.acc.at(-1),
    trainPeakMiB: trainPeak / 2 ** 20,
    trainPeakAnonMiB: trainPeakAnon / 2 ** 20,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

interface RssRow {
  n: number;
  mode: string;
  /** Peak RSS of the whole trainHead child (load, train, stitch, save). */
  maxRssMiB: number;
  /** Highest RSS sampled while epochs ran. */
  trainPeakMiB: number;
  /** Highest anonymous RSS (no mmapped LevelDB pages) sampled while epochs ran. */
  trainPeakAnonMiB: number;
  seconds: number;
  acc: number;
}

async function benchRss(work: string): Promise<RssRow[]> {
  const rows: RssRow[] = [];
  const rssBackend = await resolveBackend('auto');
  const sizes = quick ? [1000, 10000] : [1000, 10000, 50000];
  for (const n of sizes) {
    const dir = join(work, `rss-${n}`, 'cache');
    log(`rss: writing ${n} synthetic 1280-d samples`);
    await child(['--child-kind', 'rss-write', '--child-samples', String(n), '--child-cache', dir]);
    // 1 MiB budget: streamed from LevelDB; the default 1 GiB: held in memory (for contrast).
    for (const [mode, budget] of [
      ['stream', 1 << 20],
      ['memory', 1 << 30],
    ] as const) {
      const r = await child(['--child-kind', 'rss-train', '--child-cache', dir, '--child-budget', String(budget)]);
      if (r['mode'] !== mode) throw new Error(`expected ${mode} mode, trainHead used ${String(r['mode'])}`);
      if (r['backend'] !== rssBackend) throw new Error(`the child ran on ${String(r['backend'])}, the parent on ${rssBackend}`);
      const row = {
        n,
        mode,
        maxRssMiB: Number(r['maxRssMiB']),
        trainPeakMiB: Number(r['trainPeakMiB']),
        trainPeakAnonMiB: Number(r['trainPeakAnonMiB']),
        seconds: Number(r['seconds']),
        acc: Number(r['acc']),
      };
      rows.push(row);
      log(`rss: ${n} ${mode}: peak RSS ${fmt(row.maxRssMiB, 0)} MiB (while training ${fmt(row.trainPeakMiB, 0)}, anonymous ${fmt(row.trainPeakAnonMiB, 0)} MiB), ${fmt(row.seconds)} s`);
    }
    await rm(join(work, `rss-${n}`), { recursive: true, force: true });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'splitfit-bench-extraction-'));
  const started = loadavg();
  const coresStart = await effectiveCores();
  log(
    `work dir ${work}; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
      `load average ${started.map((l) => l.toFixed(2)).join(' ')}; effective cores ${coresStart.toFixed(2)}`,
  );
  const rounds = int('rounds', argv.rounds, quick ? 1 : 3);
  const batch = int('batch', argv.batch, 32);
  const wanted = argv.backends.split(',').map((b) => b.trim()).filter((b) => b !== '') as BackendName[];
  // The batch extraction picks by default (see suggestBatchSize), computed on any backend.
  const autoBatch = suggestBatchSize(splitBase(await loadModel(MODEL), BOUNDARY).base);

  try {
    // Plan every measurement, then run the plan `rounds` times (interleaved, so slow phases of
    // other jobs on the machine spread over all rows instead of hitting one).
    const plan: { m: Measure; args?: string[]; py?: { bin: string } }[] = [];
    const pyBin = findPython(argv.python, argv['no-python'] === true);
    const pyBatches = quick ? 3 : 8;
    for (const backend of wanted) {
      const probe = await probeBackend(backend);
      const native = backend === 'tensorflow';
      if (!probe.ok) {
        plan.push({ m: { label: `${backend}`, backend, kind: 'predict', batch: 0, rounds: [], othersCores: [], skipped: probe.reason ?? 'unavailable' } });
        continue;
      }
      // The JS backends are slow: a few small batches show the order of magnitude.
      const b = native ? batch : 8;
      const batches = String(int('batches', argv.batches, native ? (quick ? 3 : 8) : 1));
      const images = int('images', argv.images, native ? (quick ? 128 : 1024) : quick ? 8 : 16);
      const manifest = await emojiManifest(join(work, backend), images);
      const warm = await emojiManifest(join(work, backend, 'warm'), Math.min(images, Math.max(b, autoBatch)));
      const raw = (kind: Kind, bs: number): void => {
        plan.push({
          m: { label: `${kind} @${bs}`, backend, kind, batch: bs, rounds: [], othersCores: [] },
          args: ['--child-kind', kind, '--child-backend', backend, '--child-batch', String(bs), '--child-batches', batches],
        });
      };
      const extract = (plain: boolean, bs: number): void => {
        plan.push({
          m: { label: `extract ${plain ? 'plain' : 'compiled'} @${bs}`, backend, kind: 'extract', batch: bs, rounds: [], othersCores: [], images, ...(plain ? { mode: 'plain' } : { mode: 'compiled' }) },
          args: [
            '--child-kind', 'extract', '--child-backend', backend, '--child-batch', String(bs),
            '--child-manifest', manifest, '--child-warm', warm, '--child-cache', join(work, backend, 'cache'),
            ...(plain ? ['--child-plain'] : []),
          ],
        });
      };
      raw('predict', b);
      if (native) raw('compiled-ops', b);
      raw('compiled', b);
      if (native && autoBatch !== b) raw('compiled', autoBatch);
      extract(false, autoBatch);
      if (native) {
        extract(false, b);
        extract(true, b);
        if (pyBin !== undefined) {
          plan.push({ m: { label: `python @${b}`, backend: 'python', kind: 'python tf.function', batch: b, rounds: [], othersCores: [] }, py: { bin: pyBin } });
          if (autoBatch !== b) plan.push({ m: { label: `python @${autoBatch}`, backend: 'python', kind: 'python tf.function', batch: autoBatch, rounds: [], othersCores: [] }, py: { bin: pyBin } });
        }
      }
    }
    const pyPredict = new Map<number, number[]>();
    let pyVersion: string | undefined;
    let pyError: string | undefined = pyBin === undefined ? 'no Python with tensorflow found (pass --python <path>; see docs/BENCHMARKS.md)' : undefined;

    for (let round = 0; round < rounds; round++) {
      for (const { m, args, py } of plan) {
        if (m.skipped !== undefined) continue;
        // The JS backends take minutes per image batch: one round shows their order of magnitude.
        if (round > 0 && (m.backend === 'wasm' || m.backend === 'cpu')) continue;
        try {
          if (py) {
            const r = await python(py.bin, m.batch, pyBatches);
            m.rounds.push(r.tfFunction);
            pyPredict.set(m.batch, [...(pyPredict.get(m.batch) ?? []), r.predict]);
            pyVersion = r.version;
            if (r.othersCores !== undefined) m.othersCores.push(r.othersCores);
            log(`round ${round + 1}: python @${m.batch}: tf.function ${fmt(r.tfFunction)}, predict ${fmt(r.predict)} img/s (others ${fmt(r.othersCores, 2)} cores)`);
          } else {
            const r = await child(args!);
            m.rounds.push(Number(r['imagesPerSecond']));
            if (r.othersCores !== undefined) m.othersCores.push(r.othersCores);
            if (typeof r['mode'] === 'string' && m.kind !== 'extract') m.mode = r['mode'];
            if (typeof r['compileSeconds'] === 'number') m.compileSeconds = r['compileSeconds'];
            log(`round ${round + 1}: ${m.backend} ${m.label}: ${fmt(Number(r['imagesPerSecond']))} img/s (others ${fmt(r.othersCores, 2)} cores)`);
          }
        } catch (err) {
          if (py) pyError = (err as Error).message;
          m.skipped = (err as Error).message.split('\n')[0]!;
          log(`${m.backend} ${m.label}: ${m.skipped}`);
        }
      }
    }
    // The RSS rows are about train-head on 1280-d vectors (MobileNetV2's), whatever the backbone.
    const rss = argv['no-rss'] || MODEL !== 'mobilenet_v2' ? [] : await benchRss(work);

    // Tables: best round (least disturbed by other jobs) and median over rounds.
    const best = (m: Measure): number | undefined => (m.rounds.length ? Math.max(...m.rounds) : undefined);
    const out: string[] = [];
    out.push(`${KERAS_ARCH} ${SIZE}×${SIZE}×3 → ${BOUNDARY}, images/s: best of ${rounds} round(s) (median of rounds); tfjs ${tf.version.tfjs}`);
    out.push('| backend | what | batch | images/s | median | others’ load (cores) | notes |');
    out.push('|---|---|---:|---:|---:|---:|---|');
    for (const { m } of plan) {
      if (m.skipped !== undefined) {
        out.push(`| ${m.backend} | ${m.label} | ${m.batch || '—'} | — | — | — | skipped: ${m.skipped} |`);
        continue;
      }
      const what =
        m.kind === 'predict'
          ? '`base.predict`'
          : m.kind === 'compiled-ops'
            ? 'compiled, op by op'
            : m.kind === 'compiled'
              ? `compiled (${m.mode ?? '?'})`
              : m.kind === 'extract'
                ? `extractFeatures, ${m.mode}`
                : 'Python tf.function';
      const notes = [
        m.compileSeconds === undefined ? '' : `compile + 1st batch ${fmt(m.compileSeconds, 2)} s`,
        m.images === undefined ? '' : `${m.images} PNGs, decode + cache writes`,
        m.backend === 'python' ? `model.predict ${fmt(Math.max(...(pyPredict.get(m.batch) ?? [NaN])))} img/s` : '',
      ].filter((x) => x !== '');
      out.push(`| ${m.backend} | ${what} | ${m.batch} | ${fmt(best(m))} | ${fmt(median(m.rounds))} | ${fmt(m.othersCores.length ? median(m.othersCores) : undefined, 2)} | ${notes.join('; ')} |`);
    }
    if (pyError !== undefined) out.push(`Python TensorFlow: ${pyError}`);
    else if (pyVersion !== undefined) out.push(`Python peer: ${pyVersion} (bench/python/mobilenet_predict.py, random weights)`);

    const find = (backend: string, kind: Measure['kind'], bs: number, mode?: string): Measure | undefined =>
      plan.map((p) => p.m).find((m) => m.backend === backend && m.kind === kind && m.batch === bs && (mode === undefined || m.mode === mode) && m.rounds.length > 0);
    const ratios: Record<string, number> = {};
    const ratio = (name: string, a: Measure | undefined, b: Measure | number | undefined): void => {
      const x = a && best(a);
      const y = typeof b === 'number' ? b : b && best(b);
      if (x !== undefined && y !== undefined && y > 0) ratios[name] = x / y;
    };
    const compiledAt = (bs: number): Measure | undefined => find('tensorflow', 'compiled', bs);
    const pyPredictBest = (bs: number): number | undefined => (pyPredict.get(bs)?.length ? Math.max(...pyPredict.get(bs)!) : undefined);
    ratio(`compiled / Python model.predict (batch ${batch})`, compiledAt(batch), pyPredictBest(batch));
    ratio(`compiled / Python tf.function (batch ${batch})`, compiledAt(batch), find('python', 'python tf.function', batch));
    ratio(`compiled / Python model.predict (batch ${autoBatch})`, compiledAt(autoBatch), pyPredictBest(autoBatch));
    ratio(`compiled / Python tf.function (batch ${autoBatch})`, compiledAt(autoBatch), find('python', 'python tf.function', autoBatch));
    ratio(`compiled / predict (batch ${batch})`, compiledAt(batch), find('tensorflow', 'predict', batch));
    ratio(`extractFeatures compiled @${autoBatch} / compiled raw @${autoBatch}`, find('tensorflow', 'extract', autoBatch, 'compiled'), compiledAt(autoBatch));
    ratio(`extractFeatures compiled @${batch} / compiled raw @${batch}`, find('tensorflow', 'extract', batch, 'compiled'), compiledAt(batch));
    ratio(`extractFeatures compiled @${autoBatch} / plain @${batch} (default before)`, find('tensorflow', 'extract', autoBatch, 'compiled'), find('tensorflow', 'extract', batch, 'plain'));

    if (rss.length > 0) {
      out.push('');
      out.push('trainHead peak RSS (child process; 2 epochs, batch 32, head dense:N:softmax on 1280-d features)');
      out.push('| samples | mode | peak RSS MiB (whole run) | RSS MiB while training | of which anonymous | seconds | final acc |');
      out.push('|---:|---|---:|---:|---:|---:|---:|');
      for (const r of rss) {
        out.push(`| ${r.n} | ${r.mode} | ${fmt(r.maxRssMiB, 0)} | ${fmt(r.trainPeakMiB, 0)} | ${fmt(r.trainPeakAnonMiB, 0)} | ${fmt(r.seconds)} | ${fmt(r.acc, 3)} |`);
      }
      const s = rss.filter((r) => r.mode === 'stream');
      if (s.length > 1) {
        const [first, last] = [s[0]!, s.at(-1)!];
        ratios[`stream peak RSS ${last.n} / ${first.n}`] = last.maxRssMiB / first.maxRssMiB;
        ratios[`stream training anonymous RSS ${last.n} / ${first.n}`] = last.trainPeakAnonMiB / first.trainPeakAnonMiB;
      }
    }
    out.push('');
    for (const [k, v] of Object.entries(ratios)) out.push(`${k}: ${v.toFixed(2)}×`);
    const coresEnd = await effectiveCores();
    out.push(`load average at start ${started.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    out.push(`effective cores (same busy loop on 2 threads vs 1; 2.00 = both vCPUs free) at start ${coresStart.toFixed(2)}, at end ${coresEnd.toFixed(2)}`);
    process.stdout.write(`${out.join('\n')}\n`);
    if (argv.json) {
      const json = { measures: plan.map((p) => p.m), pythonPredict: Object.fromEntries(pyPredict), ratios, rss, autoBatch, loadavg: { start: started, end: loadavg() }, effectiveCores: { start: coresStart, end: coresEnd } };
      process.stdout.write(`${JSON.stringify(json)}\n`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const kind = argv['child-kind'];
if (kind === undefined) {
  await main();
} else {
  const backend = (argv['child-backend'] ?? 'tensorflow') as BackendName;
  const batch = argv['child-batch'] === undefined ? undefined : int('child-batch', argv['child-batch'], 32);
  let r: Record<string, unknown>;
  if (kind === 'predict' || kind === 'compiled' || kind === 'compiled-ops') r = await childRaw(backend, kind, batch ?? 32, int('child-batches', argv['child-batches'], 8));
  else if (kind === 'extract') r = await childExtract(backend, argv['child-plain'] === true, batch, argv['child-manifest']!, argv['child-warm']!, argv['child-cache']!);
  else if (kind === 'rss-write') r = await rssWrite(resolve(argv['child-cache']!), int('child-samples', argv['child-samples'], 1000));
  else if (kind === 'rss-train') r = await rssTrain(resolve(argv['child-cache']!), int('child-budget', argv['child-budget'], 1 << 20));
  else throw new Error(`unknown --child-kind ${kind}`);
  process.stdout.write(`${JSON.stringify({ ...r, cpuSeconds: cpuSeconds() })}\n`);
}
