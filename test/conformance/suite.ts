/**
 * The architecture conformance suite: the same checks run against every family (families.ts),
 * like abstract-level's one suite run against every store. Each check takes the implementation
 * under test as `Impl`, so the mutation test can hand it a deliberately broken one and see the
 * check fail (a suite that cannot fail proves nothing).
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  batchNormLayers,
  buildHead,
  compareModes,
  compileBase,
  type DataSource,
  exportBase,
  extractFeatures,
  FeatureCache,
  lockBatchNorm,
  modelGraph,
  movingStatsEqual,
  type Sample,
  snapshotMovingStats,
  splitBase,
  stitch,
  validCuts,
} from '../../src/index.js';
import { rng } from '../../src/random.js';
import { expectTensorsClose, maxAbsDiff } from '../helpers/tensors.js';
import { CLASSES, type Family, SIZE } from './families.js';

/** The functions under test. */
export interface Impl {
  validCuts: (model: tf.LayersModel) => string[];
  compileBase: typeof compileBase;
  compareModes: typeof compareModes;
  lockBatchNorm: typeof lockBatchNorm;
  buildHead: typeof buildHead;
  stitch: typeof stitch;
  exportBase: typeof exportBase;
}

export const REAL: Impl = {
  validCuts: (model) => validCuts(modelGraph(model)),
  compileBase,
  compareModes,
  lockBatchNorm,
  buildHead,
  stitch,
  exportBase,
};

/** Relative parity bound: max |a − b| / max |b|. */
export const REL = 1e-4;
const N = 12;
const BATCH = 4;

/** Seeded uint8 images and one-hot labels; `x` is the `unit` preprocessing of the pixels. */
export function data(seed = 5): { pixels: Uint8Array[]; x: tf.Tensor4D; y: tf.Tensor2D; labels: number[] } {
  const r = rng(seed);
  const pixels = Array.from({ length: N }, () => Uint8Array.from({ length: SIZE * SIZE * 3 }, () => Math.floor(r() * 256)));
  const labels = pixels.map((_, i) => i % CLASSES);
  const flat = new Float32Array(N * SIZE * SIZE * 3);
  pixels.forEach((p, i) => p.forEach((v, j) => (flat[i * p.length + j] = v / 255)));
  return { pixels, labels, x: tf.tensor4d(flat, [N, SIZE, SIZE, 3]), y: tf.oneHot(labels, CLASSES).toFloat() as tf.Tensor2D };
}

/** Independent cut oracle: a layer is a cut when, with it removed, no input reaches an output. */
export function oracleCuts(model: tf.LayersModel): string[] {
  const cfg = (model.toJSON(null, false) as unknown as { config: { layers: { name: string; inbound_nodes: [string, ...unknown[]][][] }[]; input_layers: [string][]; output_layers: [string][] } }).config;
  const children = new Map<string, string[]>();
  for (const l of cfg.layers) for (const node of l.inbound_nodes) for (const [p] of node) children.set(p, [...(children.get(p) ?? []), l.name]);
  const inputs = cfg.input_layers.map((r) => r[0]);
  const outputs = new Set(cfg.output_layers.map((r) => r[0]));
  return cfg.layers
    .filter((l) => l.inbound_nodes.length <= 1)
    .map((l) => l.name)
    .filter((removed) => {
      const seen = new Set<string>();
      const stack = inputs.filter((i) => i !== removed);
      while (stack.length > 0) {
        const n = stack.pop()!;
        if (outputs.has(n)) return false;
        if (seen.has(n)) continue;
        seen.add(n);
        for (const c of children.get(n) ?? []) if (c !== removed) stack.push(c);
      }
      return true;
    });
}

function memorySource(pixels: Uint8Array[], labels: number[]): DataSource {
  const samples: Sample[] = pixels.map((raw, i) => ({
    id: `sample${String(i).padStart(3, '0')}`.padEnd(64, '0'),
    label: `c${labels[i]!}`,
    source: `memory#${i}`,
    load: async () => ({ raw, width: SIZE, height: SIZE, channels: 3 as const }),
  }));
  return { kind: 'files', root: '<memory>', labels: Array.from({ length: CLASSES }, (_, k) => `c${k}`), samples };
}

/** Features as the pipeline caches them (extractFeatures → LevelDB → decoded), in sample order. */
export async function cachedFeatures(model: tf.LayersModel, boundary: string, pixels: Uint8Array[], labels: number[]): Promise<tf.Tensor> {
  const dir = await mkdtemp(join(tmpdir(), 'splitfit-conformance-'));
  try {
    const source = memorySource(pixels, labels);
    const r = await extractFeatures({ model, boundary, data: source, cache: join(dir, 'cache'), batchSize: BATCH });
    const cache = await FeatureCache.open(join(dir, 'cache'));
    try {
      const rows: Float32Array[] = [];
      for (const s of source.samples) {
        const f = await cache.getFeatures(r.fingerprint, s.id);
        if (!f) throw new Error(`no cached features for ${s.id}`);
        rows.push(f.data);
      }
      return tf.tensor(Float32Array.from(rows.flatMap((row) => [...row])), [rows.length, ...r.featureShape]);
    } finally {
      await cache.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const lossOf = (probs: tf.Tensor, y: tf.Tensor): number => tf.tidy(() => tf.metrics.categoricalCrossentropy(y, probs).mean().dataSync()[0]!);
const bnCount = (m: tf.LayersModel): number => m.layers.filter((l) => l.getClassName() === 'BatchNormalization').length;

export type CheckName = 'cuts' | 'cached-features' | 'compiled' | 'compare-modes' | 'lock-batchnorm' | 'original-head' | 'stitch';

/** Every check: throws an assertion error when the implementation does not conform. */
export const CHECKS: Record<CheckName, (family: Family, impl: Impl) => Promise<void>> = {
  async cuts(family, impl) {
    const model = family.build();
    const oracle = oracleCuts(model);
    expect(impl.validCuts(model)).toEqual(oracle);
    // Non-trivial: the boundary is a cut, and some layers inside blocks are not.
    expect(oracle).toContain(family.boundary);
    expect(oracle.length).toBeLessThan(model.layers.length);
    model.dispose();
  },

  async 'cached-features'(family) {
    const model = family.build();
    const { pixels, labels, x } = data();
    const { base } = splitBase(model, family.boundary);
    const cached = await cachedFeatures(model, family.boundary, pixels, labels);
    const plain = base.predict(x) as tf.Tensor;
    expect(cached.shape).toEqual(plain.shape);
    expectTensorsClose(cached, plain, REL, { relative: true });
    tf.dispose([cached, plain, x]);
    model.dispose();
  },

  async compiled(family, impl) {
    const model = family.build();
    const { x } = data();
    const { base } = splitBase(model, family.boundary);
    const plain = base.predict(x) as tf.Tensor;
    for (const graph of [true, false]) {
      const c = impl.compileBase(base, { graph });
      try {
        expect(c.fallbacks.map((f) => f.layer)).toEqual(family.fallbacks);
        expect(c.folded.batchNorm).toBe(family.foldedIntoConv);
        const y = c.predict(x);
        expectTensorsClose(y, plain, REL, { relative: true });
        y.dispose();
      } finally {
        c.dispose();
      }
    }
    tf.dispose([plain, x]);
    model.dispose();
  },

  async 'compare-modes'(family, impl) {
    const model = family.build();
    for (const l of model.layers) l.trainable = false;
    const { x, y } = data();
    const before = snapshotMovingStats(model);
    const naive = await impl.compareModes(model, x, y, { batchSize: BATCH, dropout: false });
    // Inference = predict; training mode normalises with batch statistics, so it must differ.
    const probs = model.predict(x) as tf.Tensor;
    expect(Math.abs(naive.inference.loss - lossOf(probs, y))).toBeLessThanOrEqual(1e-4 * Math.max(1, naive.inference.loss));
    // Float noise between the two passes is ~1e-7; the frozen-BN trap is orders above it.
    expect(Math.abs(naive.training.loss - naive.inference.loss)).toBeGreaterThan(1e-5);
    expect(movingStatsEqual(snapshotMovingStats(model), before)).toBe(true);
    // A folded export has no trap: both modes give the same loss and accuracy.
    const { base, featureShape } = splitBase(model, family.boundary);
    const head = await impl.buildHead(model, family.boundary, featureShape, { numClasses: CLASSES, seed: 3 });
    const exported = await impl.stitch(base, head, { foldBatchNorm: true });
    const folded = await impl.compareModes(exported, x, y, { batchSize: BATCH });
    expect(Math.abs(folded.training.loss - folded.inference.loss)).toBeLessThanOrEqual(1e-6);
    expect(folded.accuracyGap).toBe(0);
    tf.dispose([probs, x, y]);
    for (const m of [exported, head, model]) m.dispose();
  },

  async 'lock-batchnorm'(family, impl) {
    const model = family.build();
    for (const l of model.layers) l.trainable = l.name === 'out';
    const { x, y } = data();
    const { locked } = impl.lockBatchNorm(model);
    expect(locked.sort()).toEqual(batchNormLayers(model).map((l) => l.name).sort());
    const before = snapshotMovingStats(model);
    // Training mode = inference mode for every locked layer (dropout aside: rate 0 in evaluation below).
    const inference = model.predict(x) as tf.Tensor;
    const outBefore = model.getLayer('out').getWeights().map((w) => w.clone());
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    const h = await model.fit(x, y, { epochs: 1, batchSize: BATCH, shuffle: false, verbose: 0 });
    expect(Number.isFinite(h.history['loss']![0] as number)).toBe(true);
    expect(movingStatsEqual(snapshotMovingStats(model), before)).toBe(true);
    const outAfter = model.getLayer('out').getWeights()[0]!;
    expect(maxAbsDiff(outAfter, outBefore[0]!)).toBeGreaterThan(0);
    // With the head reset, training-mode output equals predict wherever no dropout layer is active.
    model.getLayer('out').setWeights(outBefore);
    const hasNoise = model.layers.some((l) => /Dropout|Noise/.test(l.getClassName()));
    if (!hasNoise) {
      const training = model.apply(x, { training: true }) as tf.Tensor;
      expectTensorsClose(training, inference, 1e-5, { relative: true });
      training.dispose();
    }
    tf.dispose([inference, ...outBefore, x, y]);
    model.dispose();
  },

  async 'original-head'(family, impl) {
    const model = family.build();
    const { x, y } = data();
    const { base, featureShape } = splitBase(model, family.boundary);
    const features = base.predict(x) as tf.Tensor;
    const full = model.predict(x) as tf.Tensor;
    for (const lockBn of [false, true]) {
      const head = await impl.buildHead(model, family.boundary, featureShape, { spec: `original:${family.upTo}`, numClasses: CLASSES });
      expect(bnCount(head)).toBeGreaterThan(0);
      const p = head.predict(features) as tf.Tensor;
      expectTensorsClose(p, full, REL, { relative: true });
      p.dispose();
      if (lockBn) {
        // As train-head --lock-bn does: the source's BN layers frozen and locked.
        for (const l of batchNormLayers(head)) l.trainable = false;
        impl.lockBatchNorm(head);
      }
      const before = snapshotMovingStats(head);
      head.compile({ optimizer: tf.train.sgd(0.05), loss: 'categoricalCrossentropy' });
      const h = await head.fit(features, y, { epochs: 1, batchSize: BATCH, shuffle: false, verbose: 0 });
      expect(Number.isFinite(h.history['loss']![0] as number)).toBe(true);
      // Locked: statistics untouched; unlocked: a training step moves them (the training path ran).
      expect(movingStatsEqual(snapshotMovingStats(head), before)).toBe(lockBn);
      head.dispose();
    }
    tf.dispose([features, full, x, y]);
    model.dispose();
  },

  async stitch(family, impl) {
    const model = family.build();
    const { pixels, labels, x } = data();
    const { base, featureShape } = splitBase(model, family.boundary);
    const cached = await cachedFeatures(model, family.boundary, pixels, labels);
    const head = await impl.buildHead(model, family.boundary, featureShape, { numClasses: CLASSES, seed: 9 });
    const expected = head.predict(cached) as tf.Tensor;
    const exported = impl.exportBase(base);
    expect(exported.folded).toEqual({ intoConv: family.foldedIntoConv, asAffine: family.affine });
    expect(exported.copied).toEqual([]);
    const e = exported.model.predict(x) as tf.Tensor;
    const plain = base.predict(x) as tf.Tensor;
    expectTensorsClose(e, plain, REL, { relative: true });
    tf.dispose([e, plain]);
    exported.model.dispose();
    for (const foldBatchNorm of [true, false]) {
      const stitched = await impl.stitch(base, head, { foldBatchNorm });
      const p = stitched.predict(x) as tf.Tensor;
      expectTensorsClose(p, expected, REL, { relative: true });
      if (foldBatchNorm) {
        // No BN trap and no dropout left: training mode is inference mode.
        expect(bnCount(stitched)).toBe(0);
        expect(stitched.layers.filter((l) => /Dropout|Noise/.test(l.getClassName()))).toEqual([]);
        const t = stitched.apply(x, { training: true }) as tf.Tensor;
        expectTensorsClose(t, p, 1e-6, { relative: true });
        // Stock-loadable: a save/load round trip through tfjs's own IO gives the same predictions.
        let artifacts: tf.io.ModelArtifacts | undefined;
        await stitched.save(tf.io.withSaveHandler(async (a) => ((artifacts = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } })));
        const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
        const q = loaded.predict(x) as tf.Tensor;
        expectTensorsClose(q, p, 1e-6, { relative: true });
        tf.dispose([t, q]);
        loaded.dispose();
      } else {
        expect(bnCount(stitched)).toBe(bnCount(base));
      }
      p.dispose();
      stitched.dispose();
    }
    tf.dispose([cached, expected, x]);
    head.dispose();
    model.dispose();
  },
};
