import * as tf from '@tensorflow/tfjs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildHead, isSplitfitError, loadModel, parseHeadSpec, saveModel, splitBase, stitch } from '../src/index.js';
import { randomizeBatchNorm, residualToyModel } from './helpers/models.js';
import { expectNoTensorLeak, expectTensorsClose } from './helpers/tensors.js';

/** Stitches, saves, reloads with the stock loader and asserts its predictions equal head(base(x)) within `tolerance`. */
async function expectParityAfterDiskRoundTrip(source: tf.LayersModel, boundary: string, spec: string, k: number, x: tf.Tensor, tolerance: number): Promise<void> {
  const { base, featureShape } = splitBase(source, boundary);
  const head = await buildHead(source, boundary, featureShape, { spec, numClasses: k, seed: 3 });
  const stitched = await stitch(base, head);
  const dir = await mkdtemp(join(tmpdir(), 'splitfit-stitch-'));
  await saveModel(stitched, dir);
  // Stock tfjs loader, through the file:// handler of the native backend when present.
  const reloaded = tf.getBackend() === 'tensorflow' ? await tf.loadLayersModel(`file://${join(dir, 'model.json')}`) : await loadModel(join(dir, 'model.json'));
  const direct = tf.tidy(() => head.predict(base.predict(x) as tf.Tensor) as tf.Tensor);
  const viaStitch = reloaded.predict(x) as tf.Tensor;
  try {
    expectTensorsClose(viaStitch, direct, tolerance);
  } finally {
    tf.dispose([direct, viaStitch]);
  }
}

describe('stitch', () => {
  it('toy model: stitched predict equals head(base(x)) within 1e-5 after save → load', async () => {
    const model = residualToyModel();
    randomizeBatchNorm(model);
    const x = tf.randomUniform([4, 16, 16, 3], 0, 1, 'float32', 11);
    await expectParityAfterDiskRoundTrip(model, 'block1_add', 'original:block2_add,gap,dense:16:relu,dense:N:softmax', 3, x, 1e-5);
    x.dispose();
  });

  it('mobilenet_v2 cut at out_relu: parity within 1e-5 after save → load', async () => {
    const mobilenet = await loadModel('mobilenet_v2');
    const x = tf.randomUniform([2, 224, 224, 3], 0, 1, 'float32', 12);
    await expectParityAfterDiskRoundTrip(mobilenet, 'out_relu', 'gap,dense:N:softmax', 4, x, 1e-5);
    x.dispose();
  });

  it('does not leak tensors across split, head, stitch and predict', async () => {
    const model = residualToyModel();
    const x = tf.randomUniform([2, 16, 16, 3]);
    // Warm up once: tfjs caches a few tensors on first use of some ops.
    const warm = await stitch(splitBase(model, 'block2_add').base, await buildHead(model, 'block2_add', [16, 16, 8], { numClasses: 3 }));
    tf.dispose(warm.predict(x) as tf.Tensor);
    warm.dispose();
    await expectNoTensorLeak(async () => {
      const { base, featureShape } = splitBase(model, 'block2_add');
      const head = await buildHead(model, 'block2_add', featureShape, { numClasses: 3 });
      const stitched = await stitch(base, head);
      tf.dispose(stitched.predict(x) as tf.Tensor);
      stitched.dispose();
      head.dispose();
    });
    x.dispose();
  });
});

describe('stitch with foldBatchNorm (no BN trap in the export)', () => {
  it('mobilenet_v2 at out_relu: no BN or Dropout left, training mode = inference mode, parity ≤ 1e-4 vs head(base(x)) after save → load', async () => {
    const mobilenet = await loadModel('mobilenet_v2');
    const x = tf.randomUniform([2, 224, 224, 3], 0, 1, 'float32', 13);
    const { base, featureShape } = splitBase(mobilenet, 'out_relu');
    const head = await buildHead(mobilenet, 'out_relu', featureShape, { numClasses: 4, seed: 3 });
    const stitched = await stitch(base, head, { foldBatchNorm: true, name: 'folded' });
    expect(stitched.name).toBe('folded');
    expect(stitched.layers.filter((l) => /BatchNormalization|Dropout/.test(l.getClassName()))).toEqual([]);
    expect(stitched.layers.every((l) => l.trainable === false || l.name.startsWith('head_'))).toBe(true);
    const dir = await mkdtemp(join(tmpdir(), 'splitfit-stitch-folded-'));
    await saveModel(stitched, dir);
    const reloaded = tf.getBackend() === 'tensorflow' ? await tf.loadLayersModel(`file://${join(dir, 'model.json')}`) : await loadModel(join(dir, 'model.json'));
    const direct = tf.tidy(() => head.predict(base.predict(x) as tf.Tensor) as tf.Tensor);
    const inference = reloaded.predict(x) as tf.Tensor;
    const training = reloaded.apply(x, { training: true }) as tf.Tensor;
    expectTensorsClose(inference, direct, 1e-4);
    expectTensorsClose(training, inference, 0);
    tf.dispose([direct, inference, training, x]);
    for (const m of [reloaded, stitched, head, mobilenet]) m.dispose();
  });

  it('keeps the original layers when foldBatchNorm is false, and rejects a non-boolean', async () => {
    const model = residualToyModel();
    const { base, featureShape } = splitBase(model, 'block1_add');
    const head = await buildHead(model, 'block1_add', featureShape, { numClasses: 3 });
    const kept = await stitch(base, head, { foldBatchNorm: false });
    expect(kept.layers.filter((l) => l.getClassName() === 'BatchNormalization').map((l) => l.name)).toEqual(['stem_bn', 'block1_bn']);
    await expect(stitch(base, head, { foldBatchNorm: 'yes' as unknown as boolean })).rejects.toThrow(/`foldBatchNorm` must be a boolean, received string/);
    kept.dispose();
  });
});

describe('head spec', () => {
  it('parses every element', () => {
    expect(parseHeadSpec('original:block_16_project,gap,dense:256:relu,dropout:0.5,bn,flatten,dense:N:softmax')).toEqual([
      { kind: 'original', upTo: 'block_16_project' },
      { kind: 'gap' },
      { kind: 'dense', units: 256, activation: 'relu' },
      { kind: 'dropout', rate: 0.5 },
      { kind: 'bn' },
      { kind: 'flatten' },
      { kind: 'dense', units: 'N', activation: 'softmax' },
    ]);
  });

  it.each(['', 'gap,,dense:N:softmax', 'dense:0:relu', 'dense:N:swishy', 'dropout:1.5', 'conv:3', 'gap,original:x', 'gap:2'])('rejects %j with SPLITFIT_HEAD_SPEC', (spec) => {
    try {
      parseHeadSpec(spec);
      expect.unreachable();
    } catch (err) {
      expect(isSplitfitError(err, 'SPLITFIT_HEAD_SPEC')).toBe(true);
    }
  });

  it('rejects a head whose width does not match the classes, or dense on a feature map', async () => {
    const model = residualToyModel();
    for (const spec of ['gap,dense:5:softmax', 'dense:N:softmax', 'original:nonexistent,gap,dense:N:softmax']) {
      await expect(buildHead(model, 'block2_add', [16, 16, 8], { spec, numClasses: 3 })).rejects.toMatchObject({ code: 'SPLITFIT_HEAD_SPEC' });
    }
  });
});
