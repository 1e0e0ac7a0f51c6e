/**
 * Per-epoch time of a `gap` head trained on features pooled once per run against the same head
 * pooling every 7×7×1280 map on every step (`poolFeatures: false`), on an existing cache (e.g. the one
 * `bench/heads.ts --work <dir>` leaves). Rounds alternate so drifting load hits both alike; the
 * machine's load average is printed with the numbers, which are only as quiet as the machine was.
 *
 *   npx tsx bench/pooled-epochs.ts --cache <dir> [--epochs 5] [--rounds 2]
 */
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveBackend } from '../src/backend/resolve.js';
import { trainHead } from '../src/job/train-head.js';
import { intFlag } from './args.js';

const { values: argv } = parseArgs({ options: { cache: { type: 'string' }, epochs: { type: 'string' }, rounds: { type: 'string' } }, strict: true });
if (!argv.cache) throw new Error('--cache <dir> is required');
const epochs = intFlag('epochs', argv.epochs, 5);
const rounds = intFlag('rounds', argv.rounds, 2);
const backend = await resolveBackend('auto');
const seconds: Record<'pooled' | 'maps', number[]> = { pooled: [], maps: [] };
const loads: number[] = [];
for (let r = 0; r < rounds; r++) {
  for (const mode of ['pooled', 'maps'] as const) {
    const res = await trainHead({ cache: argv.cache, out: join(tmpdir(), `splitfit-pooled-${mode}`), head: 'gap,dense:N:softmax', epochs, learningRate: 1e-3, batchSize: 32, seed: 0, poolFeatures: mode === 'pooled' });
    // Epoch 1 of each run includes warm-up of new kernels: left out.
    seconds[mode].push(...res.history.seconds.slice(1));
    loads.push(loadavg()[0]!);
    res.model.dispose();
    res.head.dispose();
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p = median(seconds.pooled);
const m = median(seconds.maps);
console.log(`backend ${backend}; ${rounds} rounds × ${epochs - 1} timed epochs each; 1-min load average during the runs: ${loads.map((l) => l.toFixed(1)).join(', ')} on ${(await import('node:os')).cpus().length} cores`);
console.log(`median epoch: pooled once ${p.toFixed(3)} s, pooled every step ${m.toFixed(3)} s → ${(m / p).toFixed(1)}× faster`);
console.log(JSON.stringify({ backend, epochs, rounds, pooled: seconds.pooled, maps: seconds.maps, loads }));
