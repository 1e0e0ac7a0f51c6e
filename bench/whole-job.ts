/**
 * Whole-job benchmark: splitfit (extract once, train the head on cached features) against the
 * naive TF.js recipe (frozen base + new head as one model, `model.fit` on the images), on the same
 * Fashion-MNIST images, the same pretrained MobileNetV2 and the same backend, run one after the other.
 *
 *   npx tsx bench/whole-job.ts [--quick] [--n 1000] [--epochs 10] [--test-per-class 50]
 *                              [--backend auto] [--rounds 2] [--keep] [--json]
 *
 * Progress goes to stderr; stdout gets the table and, with --json, one JSON object as the last line.
 * See docs/BENCHMARKS.md for a measured run and what limits each number.
 */
import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import PQueue from 'p-queue';
import { type BackendChoice, resolveBackend } from '../src/backend/resolve.js';
import { decodeImage } from '../src/data/decode.js';
import { FASHION_MNIST_CLASSES } from '../src/data/idx.js';
import { preprocess } from '../src/data/preprocess.js';
import { selectSamples } from '../src/data/select.js';
import { openDataSource } from '../src/data/sources.js';
import type { DataSource } from '../src/data/types.js';
import { FeatureCache } from '../src/cache/feature-cache.js';
import { extractFeatures } from '../src/extract/extract.js';
import { prepareBase } from '../src/extract/prepare.js';
import { compileBase } from '../src/model/compile/index.js';
import { loadModel } from '../src/model/io.js';
import { classificationMetrics } from '../src/train/metrics.js';
import { trainHead } from '../src/index.js';
import { intFlag } from './args.js';
import { findPython, runPythonJson } from './python-peer.js';

const FASHION = '/usr/share/datasets/fashion-mnist';
const TRAIN_IDX = `${FASHION}/train-images-idx3-ubyte.gz`;
const TEST_IDX = `${FASHION}/t10k-images-idx3-ubyte.gz`;
const MODEL = 'mobilenet_v2';
const BOUNDARY = 'out_relu';
const HEAD = 'gap,dense:N:softmax';
const BATCH = 32;
const LR = 1e-3;
const SIZE = 224;
const CHANNELS = 3;
const PRESET = 'unit' as const;

// ---------------------------------------------------------------------------------------------
// Options

const { values: argv } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    n: { type: 'string' },
    epochs: { type: 'string' },
    'test-per-class': { type: 'string' },
    'extract-batch': { type: 'string' },
    rounds: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    python: { type: 'string' },
    'no-python': { type: 'boolean', default: false },
  },
  strict: true,
});

const int = intFlag;

const quick = argv.quick === true;
const nTrain = int('n', argv.n, quick ? 100 : 1000);
const epochs = int('epochs', argv.epochs, quick ? 2 : 10);
const testPerClass = int('test-per-class', argv['test-per-class'], quick ? 5 : 50);
const rounds = int('rounds', argv.rounds, quick ? 1 : 2);
/** Extraction batch size; undefined = the library's default for the base. */
const extractBatch = argv['extract-batch'] === undefined ? undefined : int('extract-batch', argv['extract-batch'], 1);
const k = FASHION_MNIST_CLASSES.length;
if (nTrain % k !== 0) throw new Error(`--n must be a multiple of ${k} (classes), got ${nTrain}`);
const perClass = nTrain / k;

/** SHA-256 over src/**: the working tree has no commit to name, so this identifies the code measured. */
function srcDigest(): string {
  const root = fileURLToPath(new URL('../src', import.meta.url));
  const files = (readdirSync(root, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name))
    .sort();
  const h = createHash('sha256');
  for (const f of files) h.update(relative(root, f)).update('\0').update(readFileSync(f)).update('\0');
  return `${h.digest('hex').slice(0, 16)} (${files.length} files)`;
}

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

// ---------------------------------------------------------------------------------------------
// Timing and CPU accounting: wall time, this process's CPU time, and everyone else's CPU time
// (from /proc/stat), so contention from other jobs on the machine shows up in the numbers.

interface Phase {
  name: string;
  seconds: number;
  /** Core-seconds this process used. */
  cpuOurs: number;
  /** Core-seconds all other processes used meanwhile (/proc/stat busy − ours); undefined off Linux. */
  cpuOthers?: number;
}

function procBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ = 100 on Linux
  } catch {
    return undefined;
  }
}

const phases: Phase[] = [];

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const busy0 = procBusySeconds();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  log(`${name} …`);
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuOurs = (cpu.user + cpu.system) / 1e6;
  const busy1 = procBusySeconds();
  const phase: Phase = { name, seconds, cpuOurs };
  if (busy0 !== undefined && busy1 !== undefined) phase.cpuOthers = Math.max(0, busy1 - busy0 - cpuOurs);
  phases.push(phase);
  log(`${name}: ${seconds.toFixed(1)} s (cpu ours ${cpuOurs.toFixed(1)} core·s${phase.cpuOthers === undefined ? '' : `, others ${phase.cpuOthers.toFixed(1)} core·s`})`);
  return result;
}

/** A point in time for per-epoch accounting: wall clock, our CPU time, the machine's busy time. */
interface Mark {
  t: number;
  cpu: NodeJS.CpuUsage;
  busy: number | undefined;
}
const mark = (): Mark => ({ t: performance.now(), cpu: process.cpuUsage(), busy: procBusySeconds() });

/** Average number of cores other processes kept busy since `m` (undefined off Linux). */
function othersCoresSince(m: Mark): number | undefined {
  const seconds = (performance.now() - m.t) / 1000;
  const cpu = process.cpuUsage(m.cpu);
  const busy = procBusySeconds();
  if (m.busy === undefined || busy === undefined || seconds <= 0) return undefined;
  return Math.max(0, busy - m.busy - (cpu.user + cpu.system) / 1e6) / seconds;
}

/** An epoch counts as quiet when other processes averaged less than this many cores during it. */
const QUIET_CORES = 0.1;

interface EpochTime {
  seconds: number;
  othersCores: number | undefined;
}

function epochStats(xs: EpochTime[]): { mean: number; median: number; n: number; quietMean: number | undefined; quietMedian: number | undefined; quietN: number; othersCores: (number | null)[] } {
  const secs = xs.map((x) => x.seconds);
  const quiet = xs.filter((x) => x.othersCores !== undefined && x.othersCores < QUIET_CORES).map((x) => x.seconds);
  return {
    mean: mean(secs),
    median: median(secs),
    n: secs.length,
    quietMean: quiet.length > 0 ? mean(quiet) : undefined,
    quietMedian: quiet.length > 0 ? median(quiet) : undefined,
    quietN: quiet.length,
    othersCores: xs.map((x) => (x.othersCores === undefined ? null : Math.round(x.othersCores * 100) / 100)),
  };
}

function phaseSeconds(...names: string[]): number {
  return names.reduce((s, n) => s + (phases.find((p) => p.name === n)?.seconds ?? 0), 0);
}

// ---------------------------------------------------------------------------------------------
// Data: the same decode + preprocess functions the extraction pipeline uses, same concurrency.

async function decodeAll(source: DataSource): Promise<{ x: Float32Array; labels: number[] }> {
  const per = SIZE * SIZE * CHANNELS;
  const x = new Float32Array(source.samples.length * per);
  const queue = new PQueue({ concurrency: 4 });
  await Promise.all(
    source.samples.map((s, i) =>
      queue.add(async () => {
        const pixels = await decodeImage(await s.load(), { height: SIZE, width: SIZE, channels: CHANNELS }, s.source);
        x.set(preprocess(pixels, CHANNELS, PRESET), i * per);
      }),
    ),
  );
  return { x, labels: source.samples.map((s) => source.labels.indexOf(s.label!)) };
}

function predictAccuracy(model: tf.LayersModel, x: tf.Tensor4D, labels: number[]): { accuracy: number; loss: number } {
  const probs = tf.tidy(() => (model.predict(x, { batchSize: BATCH }) as tf.Tensor).dataSync() as Float32Array);
  const m = classificationMetrics(probs, labels, k);
  return { accuracy: m.accuracy, loss: m.loss };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// ---------------------------------------------------------------------------------------------
// The Keras 3 peers (bench/python/keras_route.py), alternating route and end-to-end per round.

interface KerasRun {
  mode: 'route' | 'end-to-end';
  tf: string;
  keras: string;
  n: number;
  wholeJobExcludingImport: number;
  extractSeconds: number;
  trainSeconds: number;
}

async function kerasPeers(work: string, indices: number[]): Promise<{ version: string; route: KerasRun[]; endToEnd: KerasRun[] } | undefined> {
  const bin = findPython(argv.python, argv['no-python'] === true);
  if (bin === undefined) {
    log('Keras peers: no Python with TensorFlow found (--python, $SPLITFIT_BENCH_PYTHON, /tmp/tfpy); skipped');
    return undefined;
  }
  if (indices.some((i) => !Number.isInteger(i))) throw new Error('cannot name the drawn images by IDX index for the Keras peers');
  const file = join(work, 'keras-indices.json');
  await writeFile(file, JSON.stringify(indices));
  const script = fileURLToPath(new URL('python/keras_route.py', import.meta.url));
  const route: KerasRun[] = [];
  const endToEnd: KerasRun[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const mode of ['route', 'end-to-end'] as const) {
      const run = await timed(`keras: ${mode} (round ${r + 1})`, () => runPythonJson<KerasRun>(bin, script, ['--mode', mode, '--epochs', String(epochs), '--indices', file]));
      if (run.n !== indices.length) throw new Error(`keras ${mode} trained on ${run.n} images, expected ${indices.length}`);
      (mode === 'route' ? route : endToEnd).push(run);
    }
  }
  return { version: `TensorFlow ${route[0]!.tf}, Keras ${route[0]!.keras}`, route, endToEnd };
}

async function main(): Promise<void> {
  const digest = srcDigest();
  const backend = await resolveBackend(argv.backend as BackendChoice);
  const work = await mkdtemp(join(tmpdir(), 'splitfit-whole-job-'));
  const cacheDir = join(work, 'cache');
  const loadStart = loadavg();
  log(`backend ${backend}, tfjs ${tf.version.tfjs}; ${nTrain} train images (${k} × ${perClass}), ${k} × ${testPerClass} test, ${epochs} epochs, batch ${BATCH}; work dir ${work}`);
  log(`load average at start: ${loadStart.map((l) => l.toFixed(2)).join(' ')}`);

  try {
    // Shared: list the IDX files and draw the samples (both jobs need this; in neither total).
    const { train, test } = await timed('open data (shared)', async () => {
      const trainAll = await openDataSource(TRAIN_IDX, { classNames: FASHION_MNIST_CLASSES });
      const testAll = await openDataSource(TEST_IDX, { classNames: FASHION_MNIST_CLASSES });
      return {
        train: selectSamples(trainAll, { perClass, seed: 0 }),
        test: selectSamples(testAll, { perClass: testPerClass, seed: 1 }),
      };
    });
    if (train.samples.length !== nTrain) throw new Error(`selected ${train.samples.length} training images, expected ${nTrain}`);

    // 1. Whole job, splitfit: extract into a fresh cache, then train the head (which reloads the
    //    model, trains, stitches and saves) — exactly what `cache-features` + `train-head` do.
    const extract = await timed('splitfit: extract', () =>
      extractFeatures({ model: MODEL, boundary: BOUNDARY, data: train, cache: cacheDir, ...(extractBatch === undefined ? {} : { batchSize: extractBatch }) }),
    );
    if (extract.extracted !== nTrain || extract.failed !== 0) throw new Error(`extraction: ${JSON.stringify({ ...extract, failures: undefined })}`);
    const sf = await timed('splitfit: train head + stitch + save', () =>
      trainHead({ cache: cacheDir, out: join(work, 'splitfit-out'), head: HEAD, epochs, batchSize: BATCH, optimizer: 'adam', learningRate: LR, seed: 0 }),
    );
    const sfEpochSeconds = sf.history.seconds.reduce((a, b) => a + b, 0);

    // Held-out test images, decoded once and shared by both models' predictions.
    const testData = await timed('decode test images (shared)', () => decodeAll(test));
    const testX = tf.tensor4d(testData.x, [test.samples.length, SIZE, SIZE, CHANNELS]);
    const sfTest = await timed('splitfit: predict test', async () => predictAccuracy(sf.model, testX, testData.labels));
    sf.model.dispose();
    sf.head.dispose();

    // 2. Whole job, naive TF.js: one model, frozen base layers, fit on the images every epoch.
    const naive = await timed('naive: load + build + compile', async () => {
      const source = await loadModel(MODEL);
      for (const layer of source.layers) layer.trainable = false;
      const features = source.getLayer(BOUNDARY).output as tf.SymbolicTensor;
      const pooled = tf.layers.globalAveragePooling2d({ name: 'head_gap' }).apply(features) as tf.SymbolicTensor;
      const out = tf.layers
        .dense({ units: k, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 0 }), name: 'head_dense_1' })
        .apply(pooled) as tf.SymbolicTensor;
      const model = tf.model({ inputs: source.inputs, outputs: out, name: 'naive' });
      model.compile({ optimizer: tf.train.adam(LR), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
      return model;
    });
    const trainable = naive.trainableWeights.reduce((s, w) => s + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0);
    log(`naive model: ${naive.layers.length} layers, ${trainable} trainable parameters`);
    const trainData = await timed('naive: decode train images', () => decodeAll(train));
    const trainX = tf.tensor4d(trainData.x, [nTrain, SIZE, SIZE, CHANNELS]);
    trainData.x = new Float32Array(0); // the tensor holds its own copy
    const trainY = tf.tidy(() => tf.oneHot(tf.tensor1d(trainData.labels, 'int32'), k).toFloat());
    const naiveEpochs: { seconds: number; othersCores: number | undefined; loss: number; acc: number }[] = [];
    let epochStart = mark();
    await timed('naive: fit', async () => {
      await naive.fit(trainX, trainY, {
        epochs,
        batchSize: BATCH,
        shuffle: true,
        verbose: 0,
        callbacks: {
          onEpochBegin: async () => {
            epochStart = mark();
          },
          onEpochEnd: async (epoch, logs) => {
            const e = {
              seconds: (performance.now() - epochStart.t) / 1000,
              othersCores: othersCoresSince(epochStart),
              loss: logs?.['loss'] ?? NaN,
              acc: logs?.['acc'] ?? logs?.['accuracy'] ?? NaN,
            };
            naiveEpochs.push(e);
            log(`  naive epoch ${epoch + 1}/${epochs}: ${e.seconds.toFixed(1)} s, loss ${e.loss.toFixed(4)}, acc ${e.acc.toFixed(4)}, others ${e.othersCores?.toFixed(2) ?? '?'} cores`);
          },
        },
      });
    });
    tf.dispose([trainX, trainY]);
    const naiveTest = await timed('naive: predict test', async () => predictAccuracy(naive, testX, testData.labels));
    naive.dispose();
    testX.dispose();

    // 3. The Keras 3 peers on the same images (speed only: random weights), when a Python has them.
    const keras = await kerasPeers(work, train.samples.map((s) => Number(/#(\d+)$/.exec(s.source)?.[1] ?? NaN)));

    // 4. Head epochs from LevelDB (stream) vs in memory, on the features cached in step 1.
    //    Alternating rounds, so drifting load on the machine hits both modes alike.
    const modeEpochs: Record<'memory' | 'stream', EpochTime[]> = { memory: [], stream: [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['memory', 'stream'] as const) {
        let m = mark();
        const res = await timed(`head epochs, ${mode} (round ${r + 1})`, () =>
          trainHead({
            cache: cacheDir,
            out: join(work, `mode-${mode}-${r}`),
            head: HEAD,
            epochs,
            batchSize: BATCH,
            learningRate: LR,
            seed: 0,
            memoryBudget: mode === 'memory' ? Number.MAX_SAFE_INTEGER : 1,
            onProgress: (e) => {
              if (e.type === 'epoch') {
                modeEpochs[mode].push({ seconds: e.seconds, othersCores: othersCoresSince(m) });
              }
              m = mark();
            },
          }),
        );
        if (res.mode !== mode) throw new Error(`asked for ${mode} mode, trainHead ran in ${res.mode} mode`);
        res.model.dispose();
        res.head.dispose();
      }
    }

    // Where a streamed epoch's extra time goes: one read-only pass over the cached features
    // (LevelDB `nextv` windows of 4096, value decode + CRC check), no training.
    const readPasses: number[] = [];
    await timed('read-only pass over the cache', async () => {
      const cache = await FeatureCache.open(cacheDir, { readOnly: true, command: 'bench/whole-job.ts read pass' });
      try {
        for (let r = 0; r < rounds; r++) {
          const t0 = performance.now();
          let entries = 0;
          for await (const chunk of cache.iterateFeatures(extract.fingerprint, { batchSize: 4096 })) entries += chunk.length;
          readPasses.push((performance.now() - t0) / 1000);
          if (entries !== nTrain) throw new Error(`read pass saw ${entries} entries, expected ${nTrain}`);
        }
      } finally {
        await cache.close();
      }
    });

    // Untimed diagnostics: which extraction batch size and which base path (compiled graph, op by
    // op, or plain predict) the library uses here, so the numbers above can be attributed.
    const diag = await (async () => {
      const p = await prepareBase({ model: MODEL, boundary: BOUNDARY });
      try {
        const c = compileBase(p.base);
        const d = { extractBatch: extractBatch ?? p.batchSize, compiled: { mode: c.mode, folded: c.folded, fallbacks: c.fallbacks.length, ...(c.graphError ? { graphError: c.graphError } : {}) } };
        c.dispose();
        return d;
      } catch (err) {
        return { extractBatch: extractBatch ?? p.batchSize, compiled: { error: err instanceof Error ? err.message : String(err) } };
      } finally {
        p.source.dispose();
      }
    })();

    // ---- Report
    const sfTotal = phaseSeconds('splitfit: extract', 'splitfit: train head + stitch + save');
    const naiveFitTotal = phaseSeconds('naive: decode train images', 'naive: fit');
    const naiveTotal = naiveFitTotal + phaseSeconds('naive: load + build + compile');
    const mem = epochStats(modeEpochs.memory);
    const str = epochStats(modeEpochs.stream);
    const nv = epochStats(naiveEpochs);
    const loadEnd = loadavg();
    const result = {
      bench: 'whole-job',
      quick,
      backend,
      tfjs: tf.version.tfjs,
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      srcDigest: digest,
      extraction: diag,
      data: { train: nTrain, test: test.samples.length, perClass, testPerClass, classes: k, input: `${SIZE}x${SIZE}x${CHANNELS}`, preprocess: PRESET },
      config: { model: MODEL, boundary: BOUNDARY, head: HEAD, epochs, batchSize: BATCH, optimizer: 'adam', learningRate: LR },
      splitfit: {
        totalSeconds: sfTotal,
        extractPhaseSeconds: phaseSeconds('splitfit: extract'),
        extractSeconds: extract.extractSeconds,
        trainPhaseSeconds: phaseSeconds('splitfit: train head + stitch + save'),
        epochSeconds: sfEpochSeconds,
        mode: sf.mode,
        lastTrainAcc: sf.history.acc.at(-1),
        lastTrainLoss: sf.history.loss.at(-1),
        testAccuracy: sfTest.accuracy,
        testLoss: sfTest.loss,
      },
      naive: {
        totalSeconds: naiveTotal,
        decodeFitSeconds: naiveFitTotal,
        buildSeconds: phaseSeconds('naive: load + build + compile'),
        decodeSeconds: phaseSeconds('naive: decode train images'),
        fitSeconds: phaseSeconds('naive: fit'),
        epochSeconds: naiveEpochs.map((e) => e.seconds),
        epochs: nv,
        lastFitAcc: naiveEpochs.at(-1)?.acc,
        lastFitLoss: naiveEpochs.at(-1)?.loss,
        testAccuracy: naiveTest.accuracy,
        testLoss: naiveTest.loss,
      },
      ratios: {
        naiveDecodeFitOverSplitfitTotal: naiveFitTotal / sfTotal,
        naiveTotalOverSplitfitTotal: naiveTotal / sfTotal,
        naiveEpochOverSplitfitEpoch: mean(naiveEpochs.map((e) => e.seconds)) / (sfEpochSeconds / sf.history.seconds.length),
      },
      headEpochs: {
        rounds,
        memory: mem,
        stream: str,
        streamOverMemoryMean: str.mean / mem.mean,
        memoryOverStreamMean: mem.mean / str.mean,
        streamOverMemoryMedian: str.median / mem.median,
        memoryOverStreamMedian: mem.median / str.median,
        memoryOverStreamQuietMean: mem.quietMean !== undefined && str.quietMean !== undefined ? mem.quietMean / str.quietMean : undefined,
        readPassSeconds: readPasses,
      },
      keras: keras && {
        ...keras,
        routeOverSplitfit: median(keras.route.map((r) => r.wholeJobExcludingImport)) / sfTotal,
        endToEndOverSplitfit: median(keras.endToEnd.map((r) => r.wholeJobExcludingImport)) / sfTotal,
      },
      phases,
      loadavg: { start: loadStart, end: loadEnd },
    };

    const f1 = (x: number | undefined): string => (x === undefined ? '—' : x.toFixed(1));
    const f2 = (x: number | undefined): string => (x === undefined ? '—' : x.toFixed(2));
    const f3 = (x: number | undefined): string => (x === undefined ? '—' : x.toFixed(3));
    const quietCell = (e: ReturnType<typeof epochStats>, f: (x: number | undefined) => string): string => `${f(e.quietMean)} (${e.quietN})`;
    const lines = [
      `whole-job bench: ${backend} backend, tfjs ${tf.version.tfjs}, ${cpus().length} × ${result.cpuModel}; ${nTrain} train / ${test.samples.length} test Fashion-MNIST images, ${epochs} epochs, batch ${BATCH}`,
      `src ${digest}; extraction batch ${diag.extractBatch}, base ${JSON.stringify(diag.compiled)}`,
      '',
      '| job | total s | of which | last train acc | held-out acc (predict) |',
      '|---|---:|---|---:|---:|',
      `| splitfit | ${f1(sfTotal)} | extract ${f1(result.splitfit.extractPhaseSeconds)} (after model load ${f1(extract.extractSeconds)}), train+stitch+save ${f1(result.splitfit.trainPhaseSeconds)} (epochs ${f2(sfEpochSeconds)}) | ${f3(result.splitfit.lastTrainAcc)} | ${f3(sfTest.accuracy)} |`,
      `| naive TF.js | ${f1(naiveTotal)} | load+build ${f1(result.naive.buildSeconds)}, decode ${f1(result.naive.decodeSeconds)}, fit ${f1(result.naive.fitSeconds)} | ${f3(result.naive.lastFitAcc)} | ${f3(naiveTest.accuracy)} |`,
      '',
      ...(result.keras
        ? [
            `| Keras 3 feature-extraction route (${result.keras.version}; median of ${result.keras.route.length}) | ${f1(median(result.keras.route.map((r) => r.wholeJobExcludingImport)))} | predict ${result.keras.route.map((r) => f1(r.extractSeconds)).join(' / ')}, fit ${result.keras.route.map((r) => f1(r.trainSeconds)).join(' / ')} | — | — (random weights) |`,
            `| Keras 3 frozen end-to-end fit (median of ${result.keras.endToEnd.length}) | ${f1(median(result.keras.endToEnd.map((r) => r.wholeJobExcludingImport)))} | fit ${result.keras.endToEnd.map((r) => f1(r.trainSeconds)).join(' / ')} | — | — (random weights) |`,
          ]
        : ['| Keras 3 peers | — | no Python with TensorFlow found (--python) | — | — |']),
      '',
      ...(result.keras ? [`ratios vs Keras 3: route / splitfit = ${f2(result.keras.routeOverSplitfit)}×; end-to-end / splitfit = ${f2(result.keras.endToEndOverSplitfit)}× (Keras times exclude the Python import, as splitfit's exclude Node's)`] : []),
      `ratios: naive (decode+fit) / splitfit total = ${f2(result.ratios.naiveDecodeFitOverSplitfitTotal)}×; naive total / splitfit total = ${f2(result.ratios.naiveTotalOverSplitfitTotal)}×; naive epoch / splitfit head epoch = ${f1(result.ratios.naiveEpochOverSplitfitEpoch)}×`,
      '',
      `| epoch | mean s | median s | epochs | quiet epochs: mean s (n) |`,
      '|---|---:|---:|---:|---:|',
      `| naive fit (${nTrain} images) | ${f2(nv.mean)} | ${f2(nv.median)} | ${nv.n} | ${quietCell(nv, f2)} |`,
      `| head, features in memory | ${f3(mem.mean)} | ${f3(mem.median)} | ${mem.n} | ${quietCell(mem, f3)} |`,
      `| head, streamed from LevelDB | ${f3(str.mean)} | ${f3(str.median)} | ${str.n} | ${quietCell(str, f3)} |`,
      `| read-only pass over the cache (no training) | ${f3(mean(readPasses))} | ${f3(median(readPasses))} | ${readPasses.length} | — |`,
      '',
      `quiet = other processes averaged < ${QUIET_CORES} cores during the epoch. naive epochs, others' cores: ${nv.othersCores.map((c) => (c === null ? '?' : c.toFixed(2))).join(' ')}`,
      `memory/stream = ${f2(result.headEpochs.memoryOverStreamMean)} (mean), ${f2(result.headEpochs.memoryOverStreamMedian)} (median), ${f2(result.headEpochs.memoryOverStreamQuietMean)} (quiet means); stream/memory = ${f2(result.headEpochs.streamOverMemoryMean)}× (mean)`,
      '',
      '| phase | wall s | cpu ours (core·s) | cpu others (core·s) |',
      '|---|---:|---:|---:|',
      ...phases.map((p) => `| ${p.name} | ${f1(p.seconds)} | ${f1(p.cpuOurs)} | ${f1(p.cpuOthers)} |`),
      '',
      `load average: start ${loadStart.map(f2).join(' ')}, end ${loadEnd.map(f2).join(' ')}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (argv.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    if (argv.keep) log(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  if (argv.json) process.stdout.write(`${JSON.stringify({ error: { message: err instanceof Error ? err.message : String(err) } })}\n`);
  process.exitCode = 1;
});
