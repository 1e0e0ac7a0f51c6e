/**
 * The automatic learning-rate sweep (`chooseAutomatically`) in lockstep vs one learning rate at a
 * time, on synthetic pooled features shaped like the issue #13 case: 1,000 samples of 1280-d
 * (MobileNetV2's pooled width), 10 classes, the default head `gap,dense:N:softmax`, batch 32. The
 * sequential time is the sweep run once per rate (`learningRates: [r]`, which takes the one-by-one
 * path): the same trials the sequential loop runs. Prints both times, both choices, and the load.
 *
 *   npx tsx bench/auto-sweep.ts [--n 1000] [--runs 1] [--noise 2.5]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { resolveBackend } from '../src/backend/resolve.js';
import { AUTO, type AutoChoice, type AutoInput, chooseAutomatically } from '../src/job/auto.js';
import { planHead, TrainingSets } from '../src/job/head-trainer.js';
import { rng } from '../src/random.js';
import type { FeatureSet } from '../src/train/feature-set.js';
import { intFlag } from './args.js';

const { values: argv } = parseArgs({ options: { n: { type: 'string' }, runs: { type: 'string' }, noise: { type: 'string' } }, strict: true });
const n = intFlag('n', argv.n, 1000);
const runs = intFlag('runs', argv.runs, 1);
const noise = argv.noise === undefined ? 2.5 : Number(argv.noise);
const backend = await resolveBackend('auto');
const d = 1280;
const k = 10;

/** Non-negative noisy clusters (pooled ReLU6 features are ≥ 0), stored as [1, 1, 1280] maps so the `gap` plan pools them. */
function features(): FeatureSet {
  const r = rng(13);
  const centers = Array.from({ length: k }, () => Float32Array.from({ length: d }, () => r() * (r() < 0.1 ? 3 : 0.5)));
  const labels = Array.from({ length: n }, (_, i) => i % k);
  const x = new Float32Array(n * d);
  labels.forEach((y, i) => {
    for (let j = 0; j < d; j++) x[i * d + j] = Math.max(0, centers[y]![j]! + noise * (r() - 0.5));
  });
  return { ids: labels.map((_, i) => `s${i}`), labels, x, featureShape: [1, 1, d], views: 1 };
}

const featureShape = [1, 1, d];
// A one-layer source model is all `buildHead` needs to name the head's layers.
const source = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 4, name: 'stub' })] });
const sets = new TrainingSets(features());
const input: AutoInput = {
  ctx: { source, boundary: 'stub', featureShape, numClasses: k },
  plan: planHead('gap,dense:N:softmax', featureShape, true),
  sets,
  learningRate: undefined,
  epochs: undefined,
  optimizer: 'adam',
  seed: 0,
  fit: { batchSize: 32 },
};
const show = (c: AutoChoice): string => `lr ${c.learningRate}, ${c.epochs} epochs; trials ${c.trials.map((t) => `${t.learningRate}:${t.epochs}ep/${t.valLoss?.toFixed(4)}`).join(' ')}`;
console.log(`backend ${backend}; n ${n}, ${d}-d, ${k} classes, noise ${noise}; load average ${loadavg().map((l) => l.toFixed(2)).join(', ')}`);
sets.for(input.plan); // pool once, outside the timings
for (let i = 0; i < runs; i++) {
  let t0 = performance.now();
  const batched = await chooseAutomatically(input);
  const tb = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const trials = [];
  for (const r of AUTO.learningRates) trials.push(...(await chooseAutomatically({ ...input, learningRates: [r] })).trials);
  const ts = (performance.now() - t0) / 1000;
  console.log(`run ${i + 1}: lockstep ${tb.toFixed(2)} s (batched ${batched.batched === true}, ${batched.holdouts} hold-out of ${batched.holdout}); one by one ${ts.toFixed(2)} s; ×${(ts / tb).toFixed(2)}; 1-min load ${loadavg()[0]!.toFixed(1)}`);
  console.log(`  lockstep:   ${show(batched)}`);
  console.log(`  one by one: trials ${trials.map((t) => `${t.learningRate}:${t.epochs}ep/${t.valLoss?.toFixed(4)}`).join(' ')}`);
}
