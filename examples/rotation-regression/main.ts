/**
 * Regression on real images: the rotation angle (±45°, seeded) of Twemoji, MobileNetV2 features,
 * held out; splitfit vs a naive TF.js fit vs the mean predictor (see ../task-bench.ts).
 *
 *   npm run example:rotation [-- --count 300 --epochs 6 --lr 0.003 --backend auto --json]
 */
import { parseArgs } from 'node:util';
import { type BackendChoice, resolveBackend } from 'splitfit';
import { markdownTable, runTaskBench } from '../task-bench.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '300' }, epochs: { type: 'string', default: '6' }, lr: { type: 'string', default: '0.003' }, json: { type: 'boolean', default: false }, backend: { type: 'string', default: 'auto' } } });
console.error(`backend: ${await resolveBackend(values.backend as BackendChoice)}`);
const r = await runTaskBench({ task: 'regress', count: Number(values.count), epochs: Number(values.epochs), learningRate: Number(values.lr), log: (m) => console.error(m) });
console.log(values.json ? JSON.stringify(r) : markdownTable(r));
