// Mutation test of the conformance suite: every check must fail on a deliberately broken
// implementation (folding perturbed, folding skipped, locks or the BN compat call removed), and
// pass on the real one for the same family, so the suite cannot pass by accident.
import type * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it } from 'vitest';
import { planTestHooks } from '../../src/model/compile/plan.js';
import { batchNormLayers, unlockBatchNorm } from '../../src/index.js';
import { FAMILIES } from './families.js';
import { CHECKS, type CheckName, type Impl, REAL } from './suite.js';

const family = (name: string) => FAMILIES.find((f) => f.name === name)!;

/** Every folded BN scale off by 1 %: a wrong ε or a γ applied twice would do the same. */
function perturbFolding(): void {
  planTestHooks.perturbBatchNorm = (_layer, ss) => {
    for (let i = 0; i < ss.scale.length; i++) ss.scale[i]! *= 1.01;
  };
}

/** Drops the BN compat call from a model's layers: stock tfjs 4.22 behaviour again. */
function withoutCompat(model: tf.LayersModel): tf.LayersModel {
  for (const l of batchNormLayers(model)) delete (l as Partial<Pick<tf.layers.Layer, 'call'>>).call;
  return model;
}

interface Mutant {
  check: CheckName;
  family: string;
  what: string;
  impl: Impl;
  setup?: () => void;
  /** What the failure says: an assertion, or the upstream crash the compat call prevents. */
  fails: RegExp;
}

const ASSERTION = /expected/;

const MUTANTS: Mutant[] = [
  {
    check: 'cuts',
    family: 'residual',
    what: 'every single-call layer counted as a cut (merges ignored)',
    impl: { ...REAL, validCuts: (m) => m.layers.filter((l) => l.inboundNodes.length <= 1).map((l) => l.name) },
    fails: ASSERTION,
  },
  { check: 'cached-features', family: 'inception', what: 'folded BN scale perturbed', impl: REAL, setup: perturbFolding, fails: ASSERTION },
  { check: 'cached-features', family: 'densenet', what: 'unfolded (affine) BN scale perturbed', impl: REAL, setup: perturbFolding, fails: ASSERTION },
  { check: 'compiled', family: 'separable', what: 'folded BN scale perturbed', impl: REAL, setup: perturbFolding, fails: ASSERTION },
  {
    check: 'compare-modes',
    family: 'residual',
    what: 'stitch ignores foldBatchNorm (BN left in the export)',
    impl: { ...REAL, stitch: (b, h) => REAL.stitch(b, h, { foldBatchNorm: false }) },
    fails: ASSERTION,
  },
  {
    check: 'compare-modes',
    family: 'inception',
    what: 'the detector runs BN in inference mode in both passes (blind to the trap)',
    impl: {
      ...REAL,
      compareModes: async (m, x, y, o) => {
        REAL.lockBatchNorm(m);
        try {
          return await REAL.compareModes(m, x, y, o);
        } finally {
          unlockBatchNorm(m);
        }
      },
    },
    fails: ASSERTION,
  },
  {
    check: 'lock-batchnorm',
    family: 'squeeze-excite',
    what: 'lockBatchNorm reports locks but installs none',
    impl: { ...REAL, lockBatchNorm: (m) => ({ locked: batchNormLayers(m).map((l) => l.name) }) },
    fails: ASSERTION,
  },
  {
    check: 'original-head',
    family: 'inception',
    what: 'original: head without the BN compat call (scale: false BN under fit)',
    impl: { ...REAL, buildHead: async (...args) => withoutCompat(await REAL.buildHead(...args)) },
    fails: /reading '(read|dataId)'/,
  },
  { check: 'stitch', family: 'residual', what: 'folded BN scale perturbed', impl: REAL, setup: perturbFolding, fails: ASSERTION },
  {
    check: 'stitch',
    family: 'squeeze-excite',
    what: 'export keeps Dropout and BN (fold skipped)',
    impl: { ...REAL, stitch: (b, h) => REAL.stitch(b, h, { foldBatchNorm: false }) },
    fails: ASSERTION,
  },
];

afterEach(() => {
  planTestHooks.perturbBatchNorm = undefined;
});

describe('conformance suite mutation test', () => {
  for (const m of MUTANTS) {
    it(`${m.check} on ${m.family} fails when ${m.what}, and passes unbroken`, async () => {
      const f = family(m.family);
      await CHECKS[m.check](f, REAL);
      m.setup?.();
      await expect(CHECKS[m.check](f, m.impl)).rejects.toThrow(m.fails);
    });
  }
});
