// The BatchNormalization example (examples/bn-gap) on the real bundled MobileNetV2 and real
// Fashion-MNIST images, shrunk to 2 × 16 images and 3 epochs so it stays fast.
import { beforeAll, describe, expect, it } from 'vitest';
import { type BnGapResult, runBnGap } from '../examples/bn-gap/bn-gap.js';

// Fashion-MNIST comes from Debian's dataset-fashion-mnist, which scripts/setup.sh installs.
describe('bn-gap example (mobilenet_v2, Fashion-MNIST, 2 × 16 images, 3 epochs)', () => {
  let r: BnGapResult;
  beforeAll(async () => {
    r = await runBnGap({ classes: ['sneaker', 'ankle-boot'], perClass: 16, epochs: 3, seed: 0, compareModes: false });
  });

  it('uses the real network: 52 BatchNormalization layers, 32 images', () => {
    expect(r.settings.bnLayers).toBe(52);
    expect(r.settings.samples).toBe(32);
  });

  it('naive fit overwrites the frozen BN moving statistics', () => {
    expect(r.naive!.movingStatsChanged).toBe(true);
    expect(r.naive!.bnLayersChanged).toBe(52);
  });

  it('splitfit leaves the BN statistics alone and predicts what training saw', () => {
    const s = r.splitfit!;
    expect(s.movingStatsChanged).toBe(false);
    expect(s.bnLayersChanged).toBe(0);
    // "Fit accuracy" of splitfit = the final head in training mode on the cached features
    // (history.acc is a running mean taken before each update, so it lags the final weights).
    expect(Math.abs(s.trainMode!.accuracy - s.inferenceAccuracy)).toBeLessThanOrEqual(0.01);
    expect(Math.abs(s.trainModeGap!)).toBeLessThanOrEqual(0.01);
    // Same features on both sides: the stitched model's loss on the images equals the head's on the cache.
    expect(Math.abs(s.trainMode!.loss - s.inferenceLoss)).toBeLessThan(1e-3);
  });

  it('lockBatchNorm keeps the BN statistics and trains like splitfit', () => {
    const l = r.locked!;
    expect(l.movingStatsChanged).toBe(false);
    expect(l.bnLayersChanged).toBe(0);
    // One batch per epoch, same initial head: locked fit sees the same features as splitfit.
    expect(Math.abs(l.fitLoss - r.splitfit!.fitLoss)).toBeLessThan(1e-3);
  });
});
