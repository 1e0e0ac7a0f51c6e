// The real case of issue #12: the InceptionV3 that npm nsfwjs@4.4.0 ships (318 layers, 94 BN
// layers all `scale: false`, concat blocks mixed0…mixed10), bundled as `inception_v3`.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  batchNormLayers,
  buildHead,
  BUNDLED_MODELS,
  compareModes,
  compileBase,
  exportBase,
  loadModel,
  lockBatchNorm,
  movingStatsEqual,
  snapshotMovingStats,
  splitBase,
} from '../../src/index.js';
import { expectTensorsClose } from '../helpers/tensors.js';

describe('bundled inception_v3', () => {
  let model: tf.LayersModel;
  let x: tf.Tensor4D;
  beforeAll(async () => {
    model = await loadModel('inception_v3');
    x = tf.randomUniform([4, 299, 299, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  });
  afterAll(() => {
    model.dispose();
    x.dispose();
  });

  it('is listed with origin, licence, 299×299 input and mixed10 as its boundary', () => {
    const entry = BUNDLED_MODELS.find((m) => m.name === 'inception_v3')!;
    expect(entry).toMatchObject({ inputSize: [299, 299], boundary: 'mixed10', preprocess: 'unit' });
    expect(entry.origin).toMatch(/nsfwjs@4\.4\.0/);
    expect(entry.licence).toMatch(/MIT.*Apache-2\.0/);
    expect(model.layers.length).toBe(318);
    const bn = batchNormLayers(model);
    expect(bn.length).toBe(94);
    expect(bn.every((l) => (l.getConfig() as { scale?: boolean }).scale === false)).toBe(true);
  });

  it('compiled and exported (folded) bases match predict at mixed10 within 1e-4, all 94 BN folded into convs', () => {
    const { base } = splitBase(model, 'mixed10');
    const plain = base.predict(x) as tf.Tensor;
    const c = compileBase(base);
    try {
      expect(c.fallbacks).toEqual([]);
      expect(c.folded.batchNorm).toBe(94);
      const y = c.predict(x);
      expectTensorsClose(y, plain, 1e-4, { relative: true });
      y.dispose();
    } finally {
      c.dispose();
    }
    const exported = exportBase(base);
    expect(exported.folded).toEqual({ intoConv: 94, asAffine: 0 });
    const e = exported.model.predict(x) as tf.Tensor;
    const t = exported.model.apply(x, { training: true }) as tf.Tensor;
    expectTensorsClose(e, plain, 1e-4, { relative: true });
    expectTensorsClose(t, e, 0, { relative: true });
    tf.dispose([plain, e, t]);
    exported.model.dispose();
  });

  it('compareModes runs on the nsfwjs model (scale:false BN under training: true) and sees its BN gap in the loss', async () => {
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3], 'int32'), 5).toFloat();
    const before = snapshotMovingStats(model);
    const r = await compareModes(model, x, y, { batchSize: 2, dropout: false });
    expect(Number.isFinite(r.training.loss) && Number.isFinite(r.inference.loss)).toBe(true);
    expect(Math.abs(r.training.loss - r.inference.loss)).toBeGreaterThan(1e-5);
    expect(movingStatsEqual(snapshotMovingStats(model), before)).toBe(true);
    y.dispose();
  });

  it('original:mixed10 head on mixed9 features fits, with and without lockBatchNorm', async () => {
    const { base, featureShape } = splitBase(model, 'mixed9');
    expect(featureShape).toEqual([8, 8, 2048]);
    const features = base.predict(x) as tf.Tensor;
    const y = tf.oneHot(tf.tensor1d([0, 1, 0, 1], 'int32'), 2).toFloat();
    for (const lock of [false, true]) {
      const head = await buildHead(model, 'mixed9', featureShape, { spec: 'original:mixed10,gap,dense:N:softmax', numClasses: 2, seed: 1 });
      const bn = batchNormLayers(head);
      expect(bn.length).toBe(9);
      if (lock) {
        for (const l of bn) l.trainable = false;
        expect(lockBatchNorm(head).locked.length).toBe(9);
      }
      const before = snapshotMovingStats(head);
      head.compile({ optimizer: tf.train.adam(1e-4), loss: 'categoricalCrossentropy' });
      const h = await head.fit(features, y, { epochs: 1, batchSize: 2, verbose: 0 });
      expect(Number.isFinite(h.history['loss']![0] as number)).toBe(true);
      expect(movingStatsEqual(snapshotMovingStats(head), before)).toBe(lock);
      head.dispose();
    }
    tf.dispose([features, y]);
  });
});
