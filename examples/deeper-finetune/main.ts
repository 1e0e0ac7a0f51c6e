/**
 * Second stage of a transfer-learning workflow: move the boundary lower and fine-tune the upper
 * pretrained blocks (their BN layers in training mode) on cached lower features, then compare
 * held-out accuracy with the plain `out_relu` head on the same split.
 *
 *   npm run example:deeper-finetune [-- --boundary block_12_add --per-class 60 --epochs 15 --lr 0.001 --finetune-lr 0.0001 --json]
 *
 * MobileNetV2 has no `block_13_add` (block 13 has stride 2); `block_12_add` is the cut just below it.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveBackend } from 'splitfit';
import { extractFeatures } from 'splitfit';
import { evaluate } from 'splitfit';
import { trainHead } from 'splitfit';
import { makeEmojiDataset } from '../emoji-categories/dataset.js';

const { values } = parseArgs({
  options: {
    boundary: { type: 'string', default: 'block_12_add' },
    'per-class': { type: 'string', default: '60' },
    epochs: { type: 'string', default: '15' },
    lr: { type: 'string', default: '0.001' },
    // Keras's transfer-learning guide fine-tunes pretrained blocks with a much lower rate.
    'finetune-lr': { type: 'string', default: '0.0001' },
    seed: { type: 'string', default: '0' },
    backend: { type: 'string', default: 'auto' },
    json: { type: 'boolean', default: false },
  },
});
const backend = await resolveBackend(values.backend as 'auto');
const work = await mkdtemp(join(tmpdir(), 'splitfit-deeper-'));
const data = join(work, 'data');
await makeEmojiDataset({ out: data, perClass: Number(values['per-class']), testFraction: 0.3, seed: Number(values.seed) });

const stages: { name: string; boundary: string; head: string; lr: number; lockBatchNorm?: boolean }[] = [
  { name: 'out_relu head', boundary: 'out_relu', head: 'gap,dense:N:softmax', lr: Number(values.lr) },
  { name: `${values.boundary} + upper, BN training`, boundary: values.boundary, head: 'original:out_relu,gap,dense:N:softmax', lr: Number(values['finetune-lr']) },
  { name: `${values.boundary} + upper, BN locked`, boundary: values.boundary, head: 'original:out_relu,gap,dense:N:softmax', lockBatchNorm: true, lr: Number(values['finetune-lr']) },
];
const results = [];
for (const stage of stages) {
  const t0 = performance.now();
  const cache = join(work, `cache-${stage.boundary}`); // stages at one boundary share the cache: extraction runs once
  const x = await extractFeatures({ model: 'mobilenet_v2', boundary: stage.boundary, data: join(data, 'train'), cache });
  const out = join(work, `model-${results.length}`);
  const t = await trainHead({ cache, out, head: stage.head, lockBatchNorm: stage.lockBatchNorm === true, epochs: Number(values.epochs), learningRate: stage.lr, seed: Number(values.seed) });
  const e = await evaluate({ model: join(out, 'model.json'), data: join(data, 'test') });
  results.push({
    stage: stage.name,
    boundary: stage.boundary,
    head: stage.head,
    learningRate: stage.lr,
    lockBatchNorm: stage.lockBatchNorm === true,
    featureShape: x.featureShape,
    trainableParams: t.head.trainableWeights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0),
    trainAccuracy: t.history.acc.at(-1),
    testAccuracy: e.accuracy,
    testLoss: e.loss,
    testAuc: e.auc,
    seconds: (performance.now() - t0) / 1000,
  });
}
if (values.json) console.log(JSON.stringify({ backend, tfjs: tf.version.tfjs, results }));
else {
  console.log(`backend ${backend}; Twemoji 4 categories, ${values['per-class']} per class (30% held out), ${values.epochs} epochs`);
  for (const r of results) {
    console.log(
      `${r.stage.padEnd(28)} features ${JSON.stringify(r.featureShape).padEnd(14)} trainable ${String(r.trainableParams).padStart(8)}  train acc ${r.trainAccuracy?.toFixed(3)}  test acc ${r.testAccuracy.toFixed(3)}  loss ${r.testLoss.toFixed(3)}  ${r.seconds.toFixed(1)} s`,
    );
  }
}
