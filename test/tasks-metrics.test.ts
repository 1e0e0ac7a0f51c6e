import { describe, expect, it } from 'vitest';
import { rocAuc } from '../src/train/metrics.js';
import { averageRanks, multiLabelMetrics, pearson, regressionMetrics, spearman, tuneThresholds } from '../src/train/task-metrics.js';

// Every expected value below is worked out by hand in the comment beside it.

describe('regression metrics', () => {
  // y = [1, 2, 3, 4], p = [1.5, 2, 2, 5]: errors 0.5, 0, −1, 1.
  const y = [1, 2, 3, 4];
  const p = [1.5, 2, 2, 5];

  it('MAE, RMSE, R² by hand', () => {
    const m = regressionMetrics(p, y, ['angle']);
    expect(m.mae).toBeCloseTo(2.5 / 4, 12); // |e| = 0.5 + 0 + 1 + 1
    expect(m.mse).toBeCloseTo(2.25 / 4, 12); // e² = 0.25 + 0 + 1 + 1
    expect(m.rmse).toBeCloseTo(0.75, 12);
    expect(m.r2).toBeCloseTo(1 - 2.25 / 5, 12); // SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    expect(m.perTarget[0]!.name).toBe('angle');
  });

  it('Pearson by hand: Σdp·dy = 5.25, Σdp² = 7.6875, Σdy² = 5', () => {
    expect(pearson(p, y)).toBeCloseTo(5.25 / Math.sqrt(7.6875 * 5), 12);
    expect(regressionMetrics(p, y, ['t']).pearson).toBeCloseTo(0.8468017304727874, 12);
  });

  it('Spearman averages tied ranks: p ranks [1, 2.5, 2.5, 4] → 4.5 / √(4.5·5) = 3/√10', () => {
    expect(averageRanks(p)).toEqual([1, 2.5, 2.5, 4]);
    expect(averageRanks([7, 7, 7])).toEqual([2, 2, 2]);
    expect(spearman(p, y)).toBeCloseTo(3 / Math.sqrt(10), 12);
    // Monotone but not linear: Spearman 1, Pearson below 1.
    expect(spearman([1, 2, 3, 4], [1, 4, 9, 100])).toBe(1);
    expect(pearson([1, 2, 3, 4], [1, 4, 9, 100])!).toBeLessThan(0.9);
  });

  it('undefined correlations and R² for a constant side, never NaN', () => {
    const m = regressionMetrics([2, 2, 2], [1, 2, 3], ['t']);
    expect(m.spearman).toBeUndefined();
    expect(m.pearson).toBeUndefined();
    expect(m.r2).toBeCloseTo(1 - 2 / 2, 12); // the mean predictor: R² = 0
    const flat = regressionMetrics([1, 2, 3], [5, 5, 5], ['t']);
    expect(flat.r2).toBeUndefined();
    expect(flat.mae).toBeCloseTo(3, 12);
  });

  it('several targets: row-major [n × k], means over targets', () => {
    // target a: perfect; target b: errors 1, 1 → MAE 1.
    const m = regressionMetrics([1, 10, 2, 20], [1, 11, 2, 21], ['a', 'b']);
    expect(m.perTarget.map((t) => t.mae)).toEqual([0, 1]);
    expect(m.mae).toBe(0.5);
    expect(m.perTarget[1]!.spearman).toBe(1);
  });

  it('non-finite predictions are SPLITFIT_NUMERIC; wrong shapes a TypeError', () => {
    expect(() => regressionMetrics([Number.NaN, 1], [1, 2], ['t'])).toThrow(expect.objectContaining({ code: 'SPLITFIT_NUMERIC' }));
    expect(() => regressionMetrics([1, 2, 3], [1, 2], ['t'])).toThrow(TypeError);
  });
});

describe('AUC counts ties as half', () => {
  it('scores [0.1, 0.4, 0.4, 0.8], positives at 0.4 and 0.8: (1 + 0.5 + 1 + 1) / 4', () => {
    expect(rocAuc([0.1, 0.4, 0.4, 0.8], [false, true, false, true])).toBe(0.875);
    expect(rocAuc([0.5, 0.5, 0.5], [true, false, true])).toBe(0.5);
  });
});

describe('multi-label metrics', () => {
  // Labels [a, b]; three samples.
  const probs = [0.9, 0.2, 0.6, 0.7, 0.3, 0.4];
  const y = [1, 0, 0, 1, 1, 0];

  it('per label at 0.5 by hand', () => {
    const m = multiLabelMetrics(probs, y, ['a', 'b']);
    // a: y [1,0,1], predicted [1,1,0] → tp 1, fp 1, fn 1, tn 0.
    expect(m.perLabel[0]).toEqual({ label: 'a', threshold: 0.5, support: 2, accuracy: 1 / 3, negativeRate: 1 / 3, precision: 0.5, recall: 0.5, f1: 0.5, auc: 0.5 });
    // b: y [0,1,0], predicted [0,1,0] → all right; AUC 1.
    expect(m.perLabel[1]).toEqual({ label: 'b', threshold: 0.5, support: 1, accuracy: 1, negativeRate: 2 / 3, precision: 1, recall: 1, f1: 1, auc: 1 });
  });

  it('macro/micro AUC and F1, subset accuracy, Hamming loss, BCE by hand', () => {
    const m = multiLabelMetrics(probs, y, ['a', 'b']);
    expect(m.macroAuc).toBe(0.75);
    expect(m.microAuc).toBeCloseTo(7 / 9, 12); // positives .9 .7 .3 vs negatives .2 .6 .4: 3 + 3 + 1 of 9 pairs
    expect(m.macroF1).toBe(0.75);
    expect(m.microF1).toBeCloseTo(4 / 6, 12); // tp 2, fp 1, fn 1
    expect(m.subsetAccuracy).toBeCloseTo(1 / 3, 12); // only sample 1 entirely right
    expect(m.hammingLoss).toBeCloseTo(2 / 6, 12);
    expect(m.loss).toBeCloseTo(-(Math.log(0.9) + Math.log(0.8) + Math.log(0.4) + Math.log(0.7) + Math.log(0.3) + Math.log(0.6)) / 6, 12);
  });

  it('thresholds are applied as stated: predicted when p ≥ threshold', () => {
    const m = multiLabelMetrics(probs, y, ['a', 'b'], [0.3, 0.7]);
    // a at 0.3: predicted [1,1,1] → tp 2, fp 1 → F1 0.8; b at 0.7: p = 0.7 counts as predicted → still right.
    expect(m.perLabel.map((l) => [l.threshold, l.f1])).toEqual([
      [0.3, 0.8],
      [0.7, 1],
    ]);
    expect(multiLabelMetrics(probs, y, ['a', 'b'], [0.3, 0.71]).perLabel[1]!.f1).toBe(0);
  });

  it('tuneThresholds picks each label’s best-F1 threshold; a label with one class in the data keeps 0.5', () => {
    // a: t=.3 → F1 .8, t=.6 → .5, t=.9 → 2/3; b: t=.2 → .5, t=.4 → 2/3, t=.7 → 1.
    expect(tuneThresholds(probs, y, 2)).toEqual([0.3, 0.7]);
    expect(tuneThresholds([0.2, 0.9], [1, 1], 1)).toEqual([0.5]);
  });

  it('absent AUCs (a label in every sample) leave the macro mean over the others', () => {
    const m = multiLabelMetrics([0.9, 0.8, 0.7, 0.1], [1, 1, 1, 0], ['always', 'some']);
    expect(m.perLabel[0]!.auc).toBeUndefined();
    expect(m.macroAuc).toBe(1);
  });

  it('targets other than 0/1 are a TypeError; NaN probabilities SPLITFIT_NUMERIC', () => {
    expect(() => multiLabelMetrics([0.5], [2], ['a'])).toThrow(TypeError);
    expect(() => multiLabelMetrics([Number.NaN], [1], ['a'])).toThrow(expect.objectContaining({ code: 'SPLITFIT_NUMERIC' }));
  });
});
