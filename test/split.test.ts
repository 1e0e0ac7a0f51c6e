import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { isCut, isSplitfitError, loadModel, modelGraph, split, splitBase, validCuts } from '../src/index.js';
import { randomizeBatchNorm, residualToyModel } from './helpers/models.js';
import { expectTensorsClose } from './helpers/tensors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isSplitfitError(err) ? err.code : 'not a SplitfitError';
  }
  return undefined;
}

describe('graph cuts on a residual toy model', () => {
  const model = residualToyModel();
  const graph = modelGraph(model);

  it('accepts block outputs and rejects layers inside a residual block', () => {
    for (const ok of ['stem_relu', 'block1_add', 'block2_add', 'pool']) expect(isCut(graph, ok), ok).toBe(true);
    for (const inner of ['block1_conv', 'block1_bn', 'block1_relu', 'block2_conv', 'block2_relu']) expect(isCut(graph, inner), inner).toBe(false);
  });

  it('names the nearest valid cuts when the boundary is inside a block', () => {
    try {
      splitBase(model, 'block2_bn');
      expect.unreachable();
    } catch (err) {
      expect(isSplitfitError(err, 'SPLITFIT_BOUNDARY_NOT_A_CUT')).toBe(true);
      expect((err as Error).message).toContain('"block1_add"');
      expect((err as Error).message).toContain('"block2_add"');
    }
  });

  it('rejects unknown layers with close matches, and accepts indices', () => {
    expect(codeOf(() => splitBase(model, 'block1_ad'))).toBe('SPLITFIT_LAYER_NOT_FOUND');
    try {
      splitBase(model, 'block1_ad');
    } catch (err) {
      expect((err as Error).message).toContain('did you mean "block1_add"');
    }
    expect(codeOf(() => splitBase(model, 999))).toBe('SPLITFIT_LAYER_NOT_FOUND');
    const byIndex = splitBase(model, model.layers.findIndex((l) => l.name === 'block1_add'));
    expect(byIndex.boundary).toBe('block1_add');
  });
});

describe('split on the real mobilenet_v2', () => {
  let mobilenet: tf.LayersModel;
  beforeAll(async () => {
    mobilenet = await loadModel('mobilenet_v2');
  });

  it('has the block_N_add structure: adds are cuts, their inner layers are not', () => {
    const graph = modelGraph(mobilenet);
    const cuts = new Set(validCuts(graph));
    const adds = graph.config.layers.map((l) => l.name).filter((n) => /^block_\d+_add$/.test(n));
    expect(adds).toHaveLength(10);
    for (const add of adds) {
      expect(cuts.has(add), add).toBe(true);
      const n = add.split('_')[1];
      for (const inner of ['expand', 'expand_BN', 'depthwise', 'project', 'project_BN']) expect(cuts.has(`block_${n}_${inner}`), `block_${n}_${inner}`).toBe(false);
    }
    expect(cuts.has('out_relu')).toBe(true);
    expect(graph.config.layers.filter((l) => l.class_name === 'BatchNormalization')).toHaveLength(52);
  });

  it('base output at out_relu equals the source model intermediate output in inference mode', () => {
    const { base, featureShape } = splitBase(mobilenet, 'out_relu');
    expect(featureShape).toEqual([7, 7, 1280]);
    const x = tf.randomUniform([2, 224, 224, 3], 0, 1, 'float32', 3);
    const probe = tf.model({ inputs: mobilenet.inputs, outputs: mobilenet.getLayer('out_relu').output as tf.SymbolicTensor });
    const a = base.predict(x) as tf.Tensor;
    const b = probe.predict(x) as tf.Tensor;
    expectTensorsClose(a, b, 0);
    tf.dispose([x, a, b]);
  });

  it('leaves the frozen base BN moving statistics bit-identical after repeated calls', () => {
    const { base } = splitBase(mobilenet, 'block_12_add');
    const bnWeights = (): Float32Array[] =>
      base.layers.filter((l) => l.getClassName() === 'BatchNormalization').flatMap((l) => l.getWeights().map((w) => w.dataSync().slice() as Float32Array));
    const before = bnWeights();
    for (let i = 0; i < 3; i++) tf.tidy(() => base.predict(tf.randomUniform([4, 224, 224, 3], 0, 1, 'float32', i)));
    const after = bnWeights();
    expect(after.length).toBe(before.length);
    after.forEach((w, i) => expect(Buffer.from(w.buffer).equals(Buffer.from(before[i]!.buffer))).toBe(true));
  });
});

describe('split into base and original head', () => {
  it('reproduces the source model: head(base(x)) = model(x)', async () => {
    const model = residualToyModel();
    randomizeBatchNorm(model);
    const { base, head, featureShape } = await split(model, 'block1_add');
    expect(featureShape).toEqual([16, 16, 8]);
    expect(head.layers.map((l) => l.name)).toContain('block2_add');
    expect(head.trainableWeights.length).toBeGreaterThan(0);
    const x = tf.randomUniform([3, 16, 16, 3], 0, 1, 'float32', 5);
    const y = model.predict(x) as tf.Tensor;
    const f = base.predict(x) as tf.Tensor;
    const z = head.predict(f) as tf.Tensor;
    expectTensorsClose(z, y, 1e-6);
    tf.dispose([x, y, f, z]);
  });
});
