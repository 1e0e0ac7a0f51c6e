/**
 * train-head's fixed cost: train + stitch + save (report and folded export included) of a fixed
 * head (`learningRate` 0.01, 10 epochs, the default `gap,dense:N:softmax`) on an existing cache,
 * e.g. 1,000 Fashion-MNIST images cached by `bench/whole-job.ts --work <dir>` or by
 * `splitfit cache-features`. The first run of a cache also makes its pooled namespace (the maps
 * read and pooled once); later runs read the pooled vectors. Prints each run's total and the sum
 * of its epochs (the rest is the fixed cost), and the machine's load.
 *
 *   npx tsx bench/train-head-cost.ts --cache <dir> [--runs 3] [--fresh]   (--fresh: drop the pooled namespace first)
 */
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveBackend } from '../src/backend/resolve.js';
import { FeatureCache } from '../src/cache/feature-cache.js';
import { isPooledNamespace } from '../src/cache/pooled.js';
import { trainHead } from '../src/job/train-head.js';
import { intFlag } from './args.js';

const { values: argv } = parseArgs({ options: { cache: { type: 'string' }, runs: { type: 'string' }, fresh: { type: 'boolean', default: false } }, strict: true });
if (!argv.cache) throw new Error('--cache <dir> is required');
const runs = intFlag('runs', argv.runs, 3);
const backend = await resolveBackend('auto');
if (argv.fresh) {
  await using cache = await FeatureCache.open(argv.cache, { command: 'bench/train-head-cost' });
  await cache.gc((await cache.listFingerprints()).filter((f) => !isPooledNamespace(f)));
}
console.log(`backend ${backend}; load average ${loadavg().map((l) => l.toFixed(2)).join(', ')}`);
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const r = await trainHead({ cache: argv.cache, out: join(tmpdir(), `splitfit-th-cost-${i}`), learningRate: 0.01, epochs: 10, seed: 0 });
  const total = (performance.now() - t0) / 1000;
  const epochs = r.history.seconds.reduce((a, b) => a + b, 0);
  console.log(`run ${i + 1}: train + stitch + save ${total.toFixed(2)} s (epochs ${epochs.toFixed(2)} s, the rest ${(total - epochs).toFixed(2)} s); mode ${r.mode}; 1-min load ${loadavg()[0]!.toFixed(1)}`);
  r.model.dispose();
  r.head.dispose();
}
