/**
 * Quantized export: file size and held-out accuracy of float32 vs float16 vs uint8 exports of the same
 * trained head (issue #15 item 4). Trains once (cache-features + train-head through the library, as the
 * CLI does), exports with `exportModel`, then predicts the held-out set with each export. The
 * `folded-*` rows quantize the folded model as it is — what splitfit does not write (see DESIGN.md).
 *
 *   npx tsx bench/quantized-export.ts --task emoji|fashion [--model mobilenet_v2|inception_v3]
 *
 * emoji: `npm run example:emoji`'s data and training (4 Twemoji categories, 280 train / 120 test,
 * --validation-split 0.2, seed 0, automatic lr/epochs). fashion: Fashion-MNIST (Debian
 * dataset-fashion-mnist), 10 × 50 train drawn with seed 0, 10 × 100 test with seed 1 (as
 * bench/whole-job.ts draws them), 10 epochs at lr 1e-3.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CATEGORIES, makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { resolveBackend } from '../src/backend/resolve.js';
import { loadModel, modelFiles } from '../src/model/io.js';
import { type DataSource, exportModel, extractFeatures, FASHION_MNIST_CLASSES, loadPredictor, openDataSource, predictSamples, selectSamples, trainHead } from '../src/index.js';

const { values } = parseArgs({ options: { task: { type: 'string', default: 'emoji' }, model: { type: 'string', default: 'mobilenet_v2' }, keep: { type: 'boolean', default: false } } });
const task = values.task!;
const model = values.model!;
const boundary = model === 'inception_v3' ? 'mixed10' : 'out_relu';
await resolveBackend('auto');
const work = await mkdtemp(join(tmpdir(), `splitfit-qbench-${task}-`));

let train: string | DataSource;
let test: DataSource;
let fit: { validationSplit?: number; epochs?: number; learningRate?: number };
if (task === 'emoji') {
  await makeEmojiDataset({ out: join(work, 'data'), categories: DEFAULT_CATEGORIES, perClass: 100, testFraction: 0.3, seed: 0 });
  train = join(work, 'data', 'train');
  test = await openDataSource(join(work, 'data', 'test'));
  fit = { validationSplit: 0.2 };
} else {
  const FASHION = '/usr/share/datasets/fashion-mnist';
  train = selectSamples(await openDataSource(`${FASHION}/train-images-idx3-ubyte.gz`, { classNames: FASHION_MNIST_CLASSES }), { perClass: 50, seed: 0 });
  test = selectSamples(await openDataSource(`${FASHION}/t10k-images-idx3-ubyte.gz`, { classNames: FASHION_MNIST_CLASSES }), { perClass: 100, seed: 1 });
  fit = { epochs: 10, learningRate: 1e-3 };
}
const cache = join(work, 'cache');
await extractFeatures({ model, boundary, data: train, cache });
const out = join(work, 'float32');
await trainHead({ cache, out, seed: 0, ...fit });

/**
 * For the record, what splitfit does NOT write: the folded float32 model quantized as it is (BN folded
 * into the kernels), to show why quantized exports keep BN as affine layers.
 */
async function foldedQuantized(q: 'float16' | 'uint8'): Promise<{ dir: string; bytes: number }> {
  const dir = join(work, `folded-${q}`);
  const m = await loadModel(join(out, 'model.json'));
  const files = await modelFiles(m, { quantize: q });
  m.dispose();
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'weights.bin'), files.weights);
  await writeFile(join(dir, 'model.json'), files.json);
  return { dir, bytes: files.weights.byteLength };
}

interface Row { name: string; bytes: number; accuracy: number; maxDp: number; flips: number }
const rows: Row[] = [];
let reference: Float32Array | undefined;
for (const variant of ['float32', 'float16', 'uint8', 'folded-float16', 'folded-uint8'] as const) {
  let dir: string;
  let bytes: number;
  if (variant === 'float32') {
    dir = out;
    bytes = (await exportModel({ model: out, out: join(work, 'f32-copy') })).bytes.source.weights;
  } else if (variant === 'float16' || variant === 'uint8') {
    dir = join(work, variant);
    bytes = (await exportModel({ model: out, out: dir, quantize: variant })).bytes.exported.weights;
  } else {
    ({ dir, bytes } = await foldedQuantized(variant === 'folded-uint8' ? 'uint8' : 'float16'));
  }
  const p = await loadPredictor(dir);
  const { probs, k } = await predictSamples(p, test.samples);
  const labels = p.labels!;
  const argmax = (i: number): number => {
    let b = 0;
    for (let j = 1; j < k; j++) if (probs[i * k + j]! > probs[i * k + b]!) b = j;
    return b;
  };
  let correct = 0;
  let flips = 0;
  let maxDp = 0;
  test.samples.forEach((s, i) => {
    if (labels[argmax(i)] === s.label) correct++;
    if (reference) {
      let rb = 0;
      for (let j = 1; j < k; j++) if (reference[i * k + j]! > reference[i * k + rb]!) rb = j;
      if (rb !== argmax(i)) flips++;
      for (let j = 0; j < k; j++) maxDp = Math.max(maxDp, Math.abs(probs[i * k + j]! - reference[i * k + j]!));
    }
  });
  reference ??= probs;
  rows.push({ name: variant, bytes, accuracy: correct / test.samples.length, maxDp, flips });
  p.model.dispose();
}
const base = rows[0]!;
console.log(`\n${task}, ${model} (${test.samples.length} held-out images)`);
console.log('| export | weights.bin | held-out accuracy | change | top-1 flips vs float32 | max abs Δp |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.name} | ${(r.bytes / 2 ** 20).toFixed(2)} MB (${((100 * r.bytes) / base.bytes).toFixed(1)} %) | ${r.accuracy.toFixed(4)} | ${r === base ? '—' : `${((r.accuracy - base.accuracy) * 100).toFixed(2)} points`} | ${r === base ? '—' : r.flips} | ${r === base ? '—' : r.maxDp.toFixed(4)} |`);
}
if (!values.keep) await rm(work, { recursive: true, force: true });
else console.log(`kept ${work}`);
