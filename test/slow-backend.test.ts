/** A long call on the pure-JavaScript cpu backend says so: as an event when the caller listens, else on stderr. */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractFeatures, resolveBackend, trainHead } from '../src/index.js';
import { makeToyFixture, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
let before: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-slow-'));
  fx = await makeToyFixture(join(root, 'fx'), 3);
  before = tf.getBackend();
  await resolveBackend('cpu');
});
afterAll(async () => {
  await tf.setBackend(before);
});

describe('the cpu backend warning', () => {
  it('extractFeatures and trainHead emit one warning event each on cpu', async () => {
    const events: { type: string; message?: string }[] = [];
    await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache: join(root, 'c'), onProgress: (e) => events.push(e) });
    await trainHead({ cache: join(root, 'c'), out: join(root, 'o'), epochs: 1, learningRate: 0.01, onProgress: (e) => events.push(e) });
    const warnings = events.filter((e) => e.type === 'warning');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]!.message).toMatch(/pure-JavaScript cpu backend.*resolveBackend\('auto'\)/);
  });

  it('without a listener it is a process warning (a stderr line), and nothing at all on a cached rerun', async () => {
    const seen: string[] = [];
    const listener = (w: Error): void => void seen.push(w.name);
    process.on('warning', listener);
    try {
      await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache: join(root, 'c2') });
      await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache: join(root, 'c2') });
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', listener);
    }
    expect(seen).toEqual(['SplitfitWarning']);
  });
});
