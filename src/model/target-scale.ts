import * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';

/**
 * Target standardisation of a regression head: it trains on (y − μ)/σ, with μ and σ fitted on the
 * training targets, and the scale is then folded into its last Dense layer (kernel·σ, bias·σ + μ), so
 * the exported model — loaded with stock `tf.loadLayersModel` — predicts in the target's own units and
 * needs no splitfit code to undo anything.
 */
export interface TargetScale {
  /** Per target, in `labels` order. */
  mean: number[];
  /** Population standard deviation per target; 1 for a target that is constant on the training data (nothing to scale). */
  std: number[];
}

/** μ and σ of each of the k columns of row-major targets [n × k], in float64. */
export function fitTargetScale(targets: ArrayLike<number>, k: number): TargetScale {
  const n = targets.length / k;
  if (!Number.isInteger(n) || n === 0) throw new TypeError(`fitTargetScale: ${targets.length} values are not n × ${k} with n ≥ 1`);
  const mean = new Array<number>(k).fill(0);
  const sq = new Array<number>(k).fill(0);
  for (let i = 0; i < targets.length; i++) mean[i % k]! += targets[i]! / n;
  for (let i = 0; i < targets.length; i++) sq[i % k]! += (targets[i]! - mean[i % k]!) ** 2 / n;
  return { mean, std: sq.map((v) => (v > 0 ? Math.sqrt(v) : 1)) };
}

/** The targets in standardised units, (y − μ)/σ per column. */
export function standardize(targets: ArrayLike<number>, scale: TargetScale): number[] {
  const k = scale.mean.length;
  return Array.from(targets, (y, i) => (y - scale.mean[i % k]!) / scale.std[i % k]!);
}

/**
 * Folds `scale` into the last layer of `head`, in place: afterwards `head.predict` returns
 * `σ · (what it returned) + μ`. The last layer must be a Dense layer with a linear activation (a
 * nonlinearity after it would not commute with the scale); anything else is `SPLITFIT_HEAD_SPEC`.
 */
export function foldTargetScale(head: tf.LayersModel, scale: TargetScale): void {
  const last = head.layers.at(-1);
  const config = last?.getConfig() as { activation?: string; units?: number } | undefined;
  if (last?.getClassName() !== 'Dense' || config?.activation !== 'linear') {
    throw new SplitfitError(
      'SPLITFIT_HEAD_SPEC',
      `a regression head must end in a linear dense layer (dense:N:linear) to carry the target's scale, but its last layer ${last?.name ?? '(none)'} is ${last?.getClassName() ?? 'missing'}` +
        (config?.activation ? ` with activation ${config.activation}` : '') +
        '; end the head with dense:N:linear',
    );
  }
  const k = config.units!;
  if (scale.mean.length !== k || scale.std.length !== k) throw new TypeError(`foldTargetScale: a scale of ${scale.mean.length} targets for a head with ${k} outputs`);
  const [kernel, bias] = last.getWeights();
  if (kernel === undefined || bias === undefined) {
    throw new SplitfitError('SPLITFIT_HEAD_SPEC', `the regression head's last layer ${last.name} has no bias to carry the target mean; build it with dense:N:linear (bias on)`);
  }
  const folded = tf.tidy(() => {
    const std = tf.tensor1d(scale.std);
    return [tf.mul(kernel, std), tf.add(tf.mul(bias, std), tf.tensor1d(scale.mean))];
  });
  last.setWeights(folded);
  for (const t of folded) t.dispose();
}
