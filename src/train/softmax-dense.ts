import type * as tf from '@tensorflow/tfjs';
import { type Stage, stagesOf } from './head-stages.js';

/**
 * The closed-form gradient of a softmax Dense head (issue #13 timing). For cross-entropy on
 * `softmax(x·W + b)` the gradient with respect to the logits is `w_i · (p − y)` per sample (`w_i` its
 * weight in the batch mean, `y` its possibly smoothed target, which sums to 1), so a step of the
 * default head (1280 → 10, batch 32, Adam) is 39 eager kernels instead of the tape's 99 through log,
 * clip and softmax: 0.95 ms instead of 2.1, dispatch-bound either way.
 * The one difference from the tape is where the tape's `clipByValue(p, 1e-7, 1 − 1e-7)` clips: its
 * gradient is zero there, so a sample predicted with p < 1e-7 on its own class stops being learned
 * from; the closed form is the unclipped gradient, the one Keras trains a softmax output with (it
 * computes the cross-entropy from the logits). The reported loss keeps the clip.
 *
 * Used by `step.trainStep` (one head) and `batched-trials` (R copies in lockstep); both build the
 * targets and read the loss with the functions below, so the two round alike.
 */

/** Cross-entropy's clip on probabilities, as in `trainStep` (the reported loss uses it). */
const EPS = 1e-7;

/** The stages of a head the closed form trains: one softmax Dense layer, last, after at most a Flatten and one Dropout layer. */
export interface SoftmaxDense {
  dense: Extract<Stage, { kind: 'dense' }>;
  dropout: Extract<Stage, { kind: 'dropout' }> | undefined;
}

/** {@link SoftmaxDense} of a head's stages, or undefined when the closed form does not apply (a hidden layer, another output, two Dropout layers…). */
export function softmaxDenseStages(stages: readonly Stage[]): SoftmaxDense | undefined {
  const dense = stages.filter((s) => s.kind === 'dense');
  const dropouts = stages.filter((s) => s.kind === 'dropout');
  const last = stages.at(-1);
  if (dense.length !== 1 || last?.kind !== 'dense' || !last.softmax || dropouts.length > 1) return undefined;
  return { dense: last, dropout: dropouts[0] };
}

const cache = new WeakMap<tf.LayersModel, SoftmaxDense | null>();

/**
 * The closed form's stages of a built head (`head-stages.stagesOf`, the reading the lockstep trials
 * use), decided once per head: an input, an optional Flatten, an optional Dropout layer, one trainable
 * softmax Dense layer without regularizer or constraint. A layer frozen since takes the tape.
 */
export function softmaxDenseOf(head: tf.LayersModel): SoftmaxDense | undefined {
  let found = cache.get(head);
  if (found === undefined) {
    const stages = stagesOf(head);
    found = (typeof stages === 'string' ? undefined : softmaxDenseStages(stages)) ?? null;
    cache.set(head, found);
  }
  // The structure is fixed once built; whether the layer trains is not (a frozen layer takes the tape).
  return found && head.trainableWeights.includes(found.dense.kernel) ? found : undefined;
}

/**
 * The weighted targets of a batch for R copies: `targets[i, r, j] = w_i · y_rij` ([n × R' × k],
 * R' = 1 when every copy smooths alike, else R) and `rowWeights[i] = w_i`, where `w_i` is
 * `classWeights[label] / n` (or `1 / n`) and `y_r` is the one-hot target smoothed by copy r's
 * `smoothings[r]` (`(1 − ε) · onehot + ε / k`).
 */
export function softmaxTargets(labels: readonly number[], k: number, smoothings: readonly number[], classWeights: readonly number[] | undefined): { targets: Float32Array; rowWeights: Float32Array; copies: number } {
  const n = labels.length;
  const copies = smoothings.every((s) => s === smoothings[0]) ? 1 : smoothings.length;
  const targets = new Float32Array(n * copies * k);
  const rowWeights = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const w = (classWeights ? classWeights[labels[i]!]! : 1) / n;
    rowWeights[i] = w;
    for (let r = 0; r < copies; r++) {
      const eps = smoothings[r]!;
      const row = (i * copies + r) * k;
      for (let j = 0; j < k; j++) targets[row + j] = w * ((j === labels[i] ? 1 - eps : 0) + eps / k);
    }
  }
  return { targets, rowWeights, copies };
}

/**
 * Per copy, the batch's cross-entropy (the weighted mean of `−Σ y log clip(p)`, as `trainStep`
 * reports it, before any penalty) and how many samples the outputs got right, from the outputs
 * `p` [n × R × k] (row-major) of the step.
 */
export function softmaxBatchScores(p: Float32Array, labels: readonly number[], k: number, smoothings: readonly number[], classWeights: readonly number[] | undefined): { losses: Float64Array; correct: Float64Array } {
  const n = labels.length;
  const R = smoothings.length;
  const losses = new Float64Array(R);
  const correct = new Float64Array(R);
  for (let i = 0; i < n; i++) {
    const label = labels[i]!;
    const w = (classWeights ? classWeights[label]! : 1) / n;
    for (let r = 0; r < R; r++) {
      const eps = smoothings[r]!;
      const row = (i * R + r) * k;
      let ce = 0;
      let argMax = 0;
      for (let j = 0; j < k; j++) {
        const pj = p[row + j]!;
        const y = (j === label ? 1 - eps : 0) + eps / k;
        if (y !== 0) ce -= y * Math.log(Math.min(Math.max(pj, EPS), 1 - EPS));
        // The first of equal maxima, as tf.argMax; NaN never wins (a diverged step shows in its loss).
        if (pj > p[row + argMax]!) argMax = j;
      }
      losses[r]! += w * ce;
      if (argMax === label) correct[r]!++;
    }
  }
  return { losses, correct };
}
