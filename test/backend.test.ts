import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, probeBackend, resolveBackend, saveModel } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { residualToyModel } from './helpers/models.js';

const initial = tf.getBackend();
afterAll(async () => {
  await tf.setBackend(initial);
});

describe('backends', () => {
  it('rejects an unknown backend with the valid choices', async () => {
    await expect(resolveBackend('gpu' as 'cpu')).rejects.toMatchObject({ code: 'SPLITFIT_USAGE', message: expect.stringContaining('auto, tensorflow, wasm, cpu') as string });
  });

  it('probing a backend registers it without switching the active one', async () => {
    const before = tf.getBackend();
    const wasm = await probeBackend('wasm');
    expect(wasm.ok).toBe(true);
    expect(tf.getBackend()).toBe(before);
  });

  it('loads a model from disk and predicts the same on every available backend', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'splitfit-backends-'));
    await saveModel(residualToyModel(), dir);
    const x = Array.from({ length: 2 * 16 * 16 * 3 }, (_, i) => ((i * 7919) % 1000) / 1000);
    const outputs: Record<string, Float32Array> = {};
    for (const name of ['cpu', 'wasm', 'tensorflow'] as const) {
      if (!(await probeBackend(name)).ok) continue;
      expect(await resolveBackend(name)).toBe(name);
      const model = await loadModel(join(dir, 'model.json'));
      outputs[name] = tf.tidy(() => (model.predict(tf.tensor4d(x, [2, 16, 16, 3])) as tf.Tensor).dataSync() as Float32Array);
      model.dispose();
    }
    expect(Object.keys(outputs)).toContain('cpu');
    for (const [name, out] of Object.entries(outputs)) {
      const diff = Math.max(...out.map((v, i) => Math.abs(v - outputs['cpu']![i]!)));
      expect(diff, name).toBeLessThan(1e-4);
    }
  });

  it('`splitfit doctor --json` reports the native backend state', async () => {
    const r = await runCli(['doctor', '--json']);
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ available: expect.arrayContaining(['wasm', 'cpu']) as string[] });
    const native = r.json['native'] as { ok: boolean; tfVersion?: string; reason?: string };
    if (process.env['SPLITFIT_TEST_BACKEND'] === 'tensorflow') expect(native).toMatchObject({ ok: true, tfVersion: expect.stringMatching(/^2\.\d+/) as string });
    else expect(typeof native.ok).toBe('boolean');
  });
});
