/**
 * The main job on shipped data: Twemoji categories (npm emoji-datasource-twitter) from a
 * folder layout to a stitched model and predictions, through the CLI a user would type.
 *
 *   npm run example:emoji [-- --per-class 100 [--epochs N --lr X] --backend auto]
 *
 * Without --epochs/--lr, train-head chooses them on a hold-out of the training data (the default).
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CATEGORIES, makeEmojiDataset } from './dataset.js';

const { values } = parseArgs({
  options: {
    'per-class': { type: 'string', default: '100' },
    epochs: { type: 'string' },
    lr: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    out: { type: 'string', default: join(import.meta.dirname, 'work') },
  },
});
const work = values.out;
const cli = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');

function splitfit(...args: string[]): void {
  console.log(`\n$ splitfit ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args, '--backend', values.backend], { stdio: 'inherit', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const counts = await makeEmojiDataset({ out: join(work, 'data'), categories: DEFAULT_CATEGORIES, perClass: Number(values['per-class']), testFraction: 0.3, seed: 0 });
console.log(`Twemoji data set: ${counts.classes.join(', ')}; ${counts.train} train / ${counts.test} test images in ${join(work, 'data')}`);
rmSync(join(work, 'cache'), { recursive: true, force: true });

splitfit('cache-features', '--model', 'mobilenet_v2', '--boundary', 'out_relu', '--data', join(work, 'data', 'train'), '--cache', join(work, 'cache'));
const given = [...(values.epochs ? ['--epochs', values.epochs] : []), ...(values.lr ? ['--lr', values.lr] : [])];
splitfit('train-head', '--cache', join(work, 'cache'), '--out', join(work, 'model'), ...given, '--validation-split', '0.2', '--seed', '0');
splitfit('evaluate', '--model', join(work, 'model', 'model.json'), '--data', join(work, 'data', 'test'));
splitfit('predict', '--model', join(work, 'model', 'model.json'), join(work, 'data', 'test', counts.classes[0]!));
