/**
 * Augmentation benchmark on a real small-data RGB task (Twemoji categories, npm
 * emoji-datasource-twitter) with the bundled MobileNetV2 cut at out_relu, in one run:
 *   (a) no augmentation, features cached once;
 *   (b) cached augmented views: K=2 views, a new generation every R=5 epochs (extracted while training);
 *   (c) fully online augmentation: a fresh augmented view every epoch (R=1, K=1: the base runs every
 *       epoch, as the naive way does; splitfit still overlaps that extraction with training).
 * Reports held-out accuracy (un-augmented test split) and total time for each.
 *
 *   npx tsx bench/augment.ts [--per-class 70] [--epochs 20] [--augment SPEC] [--quick] [--json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { type BackendChoice, resolveBackend } from '../src/backend/resolve.js';
import { extractFeatures } from '../src/extract/extract.js';
import { evaluate } from '../src/index.js';
import { trainHead } from '../src/index.js';

const { values } = parseArgs({
  options: {
    'per-class': { type: 'string', default: '100' },
    epochs: { type: 'string', default: '20' },
    augment: { type: 'string', default: 'flip:h,crop:0.85,rotate:15,brightness:0.15,contrast:0.15' },
    lr: { type: 'string', default: '0.003' },
    backend: { type: 'string', default: 'auto' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const perClass = values.quick ? 12 : Number(values['per-class']);
const epochs = values.quick ? 4 : Number(values.epochs);
const refresh = values.quick ? 2 : 5;
const backend = await resolveBackend(values.backend as BackendChoice);
const work = await mkdtemp(join(tmpdir(), 'splitfit-bench-aug-'));
const counts = await makeEmojiDataset({ out: join(work, 'data'), perClass, testFraction: 0.3, seed: 0 });
const log = (s: string): boolean => process.stderr.write(`${s}\n`);
log(`Twemoji ${counts.classes.join(', ')}: ${counts.train} train / ${counts.test} test; ${epochs} epochs; backend ${backend}`);

interface Row {
  name: string;
  basePasses: number;
  generations: number;
  waitedSeconds: number;
  seconds: number;
  testAccuracy: number;
  testLoss: number;
}

async function runCase(name: string, opts: { augment?: string; views?: number; refreshEvery?: number }): Promise<Row> {
  const t0 = performance.now();
  const cache = join(work, `cache-${name}`);
  const x = await extractFeatures({
    model: 'mobilenet_v2',
    boundary: 'out_relu',
    data: join(work, 'data', 'train'),
    cache,
    ...(opts.augment === undefined ? {} : { augment: opts.augment, views: opts.views ?? 1, seed: 1 }),
  });
  const out = join(work, `model-${name}`);
  const t = await trainHead({
    cache,
    out,
    epochs,
    learningRate: Number(values.lr),
    seed: 0,
    ...(opts.refreshEvery === undefined ? {} : { refreshEvery: opts.refreshEvery }),
  });
  const seconds = (performance.now() - t0) / 1000;
  const e = await evaluate({ model: join(out, 'model.json'), data: join(work, 'data', 'test') });
  const refreshes = t.history.generations.slice(1);
  const row: Row = {
    name,
    basePasses: x.extracted + refreshes.length * counts.train * (opts.views ?? 1),
    generations: t.generations,
    waitedSeconds: t.history.generations.reduce((s, g) => s + g.waitedSeconds, 0),
    seconds,
    testAccuracy: e.accuracy,
    testLoss: e.loss,
  };
  log(`${name}: ${JSON.stringify(row)}`);
  await rm(cache, { recursive: true, force: true });
  return row;
}

const rows = [
  await runCase('a-plain', {}),
  await runCase(`b-K2-R${refresh}`, { augment: values.augment, views: 2, refreshEvery: refresh }),
  await runCase('c-online', { augment: values.augment, views: 1, refreshEvery: 1 }),
];
await rm(work, { recursive: true, force: true });
const [, b, c] = rows as [Row, Row, Row];
const summary = { backend, epochs, train: counts.train, test: counts.test, augment: values.augment, rows, speedupBvsC: c.seconds / b.seconds, accuracyBminusC: b.testAccuracy - c.testAccuracy };
console.log('case            base passes  generations  waited s  total s  test acc  test loss');
for (const r of rows) {
  console.log(
    `${r.name.padEnd(15)} ${String(r.basePasses).padStart(11)}  ${String(r.generations).padStart(11)}  ${r.waitedSeconds.toFixed(1).padStart(8)}  ${r.seconds.toFixed(1).padStart(7)}  ${r.testAccuracy.toFixed(3).padStart(8)}  ${r.testLoss.toFixed(3).padStart(9)}`,
  );
}
console.log(`(b) vs (c): ${summary.speedupBvsC.toFixed(2)}× faster, accuracy ${(summary.accuracyBminusC * 100).toFixed(1)} points`);
if (values.json) console.log(JSON.stringify(summary));
