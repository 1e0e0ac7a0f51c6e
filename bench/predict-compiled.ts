/**
 * `predictSamples` (behind `splitfit evaluate` and `predict`) on a compiled copy of the stitched model
 * vs plain `model.predict`, side by side in one process, rounds interleaved: images per second of the
 * whole call (decode + preprocess + forward), and the largest probability difference between the two.
 * Default: a head trained here on 16 Twemoji icons (mobilenet_v2, 4 per category), predicting 512 icons.
 *
 *   npx tsx bench/predict-compiled.ts [--images 512] [--rounds 3] [--model <output folder>] [--data <spec>]
 */
import { mkdtemp } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { resolveBackend } from '../src/backend/resolve.js';
import { selectSamples } from '../src/data/select.js';
import { openDataSource } from '../src/data/sources.js';
import { extractFeatures } from '../src/extract/extract.js';
import { loadPredictor, predictSamples } from '../src/infer/predictor.js';
import { trainHead } from '../src/job/train-head.js';
import { intFlag } from './args.js';

const { values: argv } = parseArgs({ options: { images: { type: 'string' }, rounds: { type: 'string' }, model: { type: 'string' }, data: { type: 'string' } }, strict: true });
const images = intFlag('images', argv.images, 512);
const rounds = intFlag('rounds', argv.rounds, 3);
const backend = await resolveBackend('auto');

let model = argv.model;
let dataSpec = argv.data;
if (model === undefined || dataSpec === undefined) {
  const root = await mkdtemp(join(tmpdir(), 'splitfit-bench-predict-'));
  await makeEmojiDataset({ out: join(root, 'data'), categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places', 'Smileys & Emotion'], perClass: 128, testFraction: 0, seed: 0 });
  dataSpec ??= join(root, 'data', 'train');
  if (model === undefined) {
    const data = await openDataSource(dataSpec);
    await extractFeatures({ model: 'mobilenet_v2', data: selectSamples(data, { perClass: 4, seed: 0 }), cache: join(root, 'cache') });
    await trainHead({ cache: join(root, 'cache'), out: join(root, 'model'), epochs: 3, learningRate: 0.01, seed: 0 });
    model = join(root, 'model');
  }
}
const data = await openDataSource(dataSpec);
const samples = data.samples.slice(0, images);
const p = await loadPredictor(model);
console.log(`backend ${backend}; ${samples.length} images of ${dataSpec} through ${model}; load average ${loadavg().map((l) => l.toFixed(2)).join(', ')}`);

const rates: Record<'compiled' | 'predict', number[]> = { compiled: [], predict: [] };
let worst = 0;
for (let r = 0; r < rounds; r++) {
  const out: Partial<Record<'compiled' | 'predict', Float32Array>> = {};
  for (const mode of r % 2 === 0 ? (['compiled', 'predict'] as const) : (['predict', 'compiled'] as const)) {
    const t0 = performance.now();
    out[mode] = (await predictSamples(p, samples, 32, undefined, { compiled: mode === 'compiled' })).probs;
    rates[mode].push(samples.length / ((performance.now() - t0) / 1000));
  }
  for (let i = 0; i < out.compiled!.length; i++) worst = Math.max(worst, Math.abs(out.compiled![i]! - out.predict![i]!));
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`compiled (compile included): ${median(rates.compiled).toFixed(1)} img/s; predict: ${median(rates.predict).toFixed(1)} img/s; ×${(median(rates.compiled) / median(rates.predict)).toFixed(2)} (medians of ${rounds})`);
console.log(`max |Δp| (compiled − predict, every probability of every image): ${worst.toExponential(2)}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(', ')}`);
