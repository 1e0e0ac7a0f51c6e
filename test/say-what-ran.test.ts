/** cache-features says what ran: preprocessing and where it came from, input size, batch size, how the base computed. */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { batchNormLayers, extractFeatures, loadModel, splitBase } from '../src/index.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { makeToyFixture, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-ran-'));
  fx = await makeToyFixture(join(root, 'fx'), 3);
});

describe('what ran', () => {
  it('reports the compiled base with its folded BN count, the default preset, the input and batch size', async () => {
    const r = await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache: join(root, 'c1'), batchSize: 4 });
    expect(r.base).toMatchObject({ preprocess: 'unit', presetSource: 'default', inputSize: [16, 16], batchSize: 4 });
    const expectedMode = tf.getBackend() === 'tensorflow' ? 'graph' : 'ops';
    expect(r.base.run).toMatchObject({ mode: expectedMode, fallbacks: [] });
    expect(r.base.run!.batchNormFolded).toBeGreaterThan(0);
    const again = await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache: join(root, 'c1'), preprocess: 'symmetric', compiled: false });
    expect(again.base).toMatchObject({ preprocess: 'symmetric', presetSource: 'given', run: { mode: 'predict', batchNormFolded: 0, reason: 'compiled: false' } });
  });

  it('counts every BN of the cut base as folded, and the CLI prints one line saying so', async () => {
    const r = await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache: join(root, 'c2') });
    const base = splitBase(await loadModel(fx.model), fx.boundary).base;
    expect(r.base.run!.batchNormFolded).toBe(batchNormLayers(base).length);
    const cli = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', join(root, 'c3'), ...backendArgs()]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`base: input 16x16, preprocess unit \\(default: no --preprocess given and not a bundled model\\), batch \\d+; compiled (graph|ops), ${r.base.run!.batchNormFolded} BN folded, 0 fallbacks`));
  });
});
