/**
 * Which preprocessing do the bundled InceptionV3 weights want, and does the exported model carry
 * a BN trap? Held-out accuracy, not speed.
 *
 * On Twemoji categories (examples/emoji-categories/dataset.ts, seeded split), for each candidate
 * preset: cache mixed10 features of the train split, train the default head
 * (gap,dense:N:softmax), evaluate on the test split. Then, for the `unit` model, compare-modes on
 * the test split for the model train-head wrote (base BN unfolded) and for the same weights
 * stitched with `foldBatchNorm: true`.
 *
 *   npx tsx bench/inception-preprocess.ts [--model inception_v3|mobilenet_v2] [--per-class 60] [--epochs 30] [--presets unit,symmetric] [--seed 0] [--finetune <epochs>]
 */
import * as tf from '@tensorflow/tfjs';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CATEGORIES, makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
// The public API where it has the name, so the script survives the job/ and infer/ moves.
import { bundledModel } from '../src/model/bundled.js';
import { loadImages } from '../src/infer/predictor.js';
import { compareModes, evaluate, extractFeatures, loadModel, loadPredictor, openDataSource, resolveBackend, split, stitch, trainHead } from '../src/index.js';

const { values } = parseArgs({
  options: {
    'per-class': { type: 'string', default: '60' },
    epochs: { type: 'string', default: '30' },
    presets: { type: 'string', default: 'unit,symmetric' },
    out: { type: 'string', default: '/tmp/splitfit-inception-preprocess' },
    'modes-batch': { type: 'string', default: '16' },
    seed: { type: 'string', default: '0' },
    model: { type: 'string', default: 'inception_v3' },
    /** Also fine-tune mixed10 on mixed9 features (original: head, lockBatchNorm) for the first preset. */
    finetune: { type: 'string', default: '0' },
  },
});
await resolveBackend('auto');
const bundled = bundledModel(values.model);
if (!bundled) throw new Error(`--model must be a bundled model, got ${values.model}`);
const boundary = bundled.boundary;
const work = values.out;
const counts = await makeEmojiDataset({ out: join(work, 'data'), categories: DEFAULT_CATEGORIES, perClass: Number(values['per-class']), testFraction: 0.3, seed: Number(values.seed) });
console.log(`backend ${tf.getBackend()}; Twemoji ${counts.classes.join(', ')}: ${counts.train} train / ${counts.test} test`);

const results: Record<string, unknown> = {};
for (const preset of values.presets.split(',')) {
  const cache = join(work, `cache-${preset}`);
  const out = join(work, `model-${preset}`);
  rmSync(cache, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  await extractFeatures({ model: values.model, boundary, data: join(work, 'data', 'train'), cache, preprocess: preset });
  await trainHead({ cache, out, epochs: Number(values.epochs), learningRate: 0.003, seed: 0 });
  const r = await evaluate({ model: join(out, 'model.json'), data: join(work, 'data', 'test') });
  results[preset] = { accuracy: r.accuracy, n: r.n };
  console.log(`${preset}: held-out accuracy ${r.accuracy.toFixed(4)} (n = ${r.n})`);
}

// BN trap: the model train-head wrote vs the same weights stitched folded.
const preset = values.presets.split(',')[0]!;
const modelPath = join(work, `model-${preset}`, 'model.json');
const predictor = await loadPredictor(modelPath);
const source = await openDataSource(join(work, 'data', 'test'));
const labels = predictor.labels ?? source.labels;
const pixels = await loadImages(source.samples, predictor);
const x = tf.tensor4d(pixels, [source.samples.length, predictor.inputSize[0], predictor.inputSize[1], predictor.channels]);
const y = tf.oneHot(tf.tensor1d(source.samples.map((s) => labels.indexOf(s.label!)), 'int32'), labels.length).toFloat();
const batchSize = Number(values['modes-batch']);
const written = await loadModel(modelPath);
const naive = await compareModes(written, x, y, { batchSize });
console.log(`compare-modes, model as train-head wrote it: training ${naive.training.accuracy.toFixed(4)}, inference ${naive.inference.accuracy.toFixed(4)}, gap ${naive.accuracyGap.toFixed(4)}`);
const parts = await split(written, boundary);
const folded = await stitch(parts.base, parts.head, { foldBatchNorm: true });
const fm = await compareModes(folded, x, y, { batchSize });
console.log(`compare-modes, stitched with foldBatchNorm: training ${fm.training.accuracy.toFixed(4)}, inference ${fm.inference.accuracy.toFixed(4)}, gap ${fm.accuracyGap.toFixed(4)}`);
console.log(JSON.stringify({ presets: results, compareModes: { written: naive, folded: fm } }));

const finetuneEpochs = Number(values.finetune);
if (finetuneEpochs > 0 && values.model === 'inception_v3') {
  // The second stage of the recipe: mixed10 (its BN frozen and locked) + a new classifier on mixed9 features.
  const cache = join(work, 'cache-mixed9');
  const out = join(work, 'model-finetune');
  rmSync(cache, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  await extractFeatures({ model: 'inception_v3', boundary: 'mixed9', data: join(work, 'data', 'train'), cache, preprocess: preset });
  await trainHead({ cache, out, epochs: finetuneEpochs, learningRate: 1e-4, seed: 0, head: 'original:mixed10,gap,dense:N:softmax', lockBatchNorm: true, batchSize: 16 });
  const r = await evaluate({ model: join(out, 'model.json'), data: join(work, 'data', 'test') });
  console.log(`fine-tune original:mixed10 on mixed9 (${finetuneEpochs} epochs, lr 1e-4, lockBatchNorm): held-out accuracy ${r.accuracy.toFixed(4)} (n = ${r.n})`);
}
