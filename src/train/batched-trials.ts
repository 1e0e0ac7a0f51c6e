import * as tf from '@tensorflow/tfjs';
import { isSplitfitError, throwIfAborted } from '../errors.js';
import { epochSeed } from '../random.js';
import { memoryBatches } from './batches.js';
import type { FeatureSet } from './feature-set.js';
import { type FitOptions, type History, improves, metricsOfOutputs } from './fit.js';
import { perSampleTaskLoss } from './losses.js';
import { softmaxBatchScores, softmaxDenseStages, softmaxTargets } from './softmax-dense.js';
import { withSeededRandom } from './step.js';
import { dropInput, keepMultiplier, type Stage, stagesOf } from './head-stages.js';

/**
 * Trials in lockstep (issue #13): R copies of one small head, each with its own learning rate (and,
 * for the search's configurations, its own weight decay, label smoothing and dropout rate), trained
 * as one computation — weights stacked on a copy axis, the shared input multiplying every
 * copy's first kernel in one matMul (later layers by batched matMul), the loss the sum of each
 * copy's own loss (so each copy's gradient is its own), Adam with a per-copy learning rate. A head
 * this small spends a step mostly on fixed per-op costs, so R copies in one step cost far less than
 * R steps (bench/auto-sweep.ts). Each copy sees what the sequential trial (`job/head-trainer.runTrial`
 * → `fitEpochs`) sees: the same initial weights, the same batches in the same order, the same dropout
 * masks, the same validation metrics and early-stopping rule; its numbers agree to float rounding.
 * With per-copy dropout rates before the first Dense layer, each copy's input differs, so that layer
 * runs one plain matMul per copy (rounding as the copy's own step would).
 *
 * Only what can be batched faithfully is: a chain of Dense layers (any activation), optional
 * Dropout between them, optionally a leading Flatten; Adam; a constant learning rate. Anything else
 * returns `undefined` and the caller runs the trials one by one.
 */

/** What `fitInLockstep` needs beyond the learning rates: a fit's options without its single learning rate or callbacks. */
export type LockstepOptions = Omit<FitOptions, 'learningRate' | 'onEpoch' | 'onGeneration'>;

/** One copy's outcome: its history and kept epoch, or why it diverged (the `SPLITFIT_NUMERIC` message `fitEpochs` gives). */
export type LockstepCopy =
  | {
      learningRate: number;
      history: History;
      /** The epoch whose weights were kept: the best monitored one with early stopping, else the last. */
      bestEpoch: number;
      valAcc: number;
      valLoss: number;
      /** The kept weights in the order of the head's `trainableWeights`, when asked for (`keepWeights`); the caller disposes them. */
      weights?: tf.Tensor[];
      diverged?: undefined;
    }
  | { learningRate: number; diverged: string };

export interface LockstepInput {
  /** A freshly built head: every copy starts from its weights (it is not changed). */
  head: tf.LayersModel;
  train: FeatureSet;
  /** The hold-out scored after every epoch. */
  val: FeatureSet;
  /** Outputs of the head (classes, labels or targets). */
  k: number;
  learningRates: readonly number[];
  /** Per copy, its weight decay and label smoothing (a search's configurations). @default `fit`'s, for every copy */
  weightDecays?: readonly number[];
  labelSmoothings?: readonly number[];
  /**
   * Per copy, the rate of the head's one Dropout layer (0: none — the copy trains as the same head
   * without that layer would, whose Dense initialisers are the same). Needs exactly one Dropout layer.
   * @default the layer's own rate
   */
  dropoutRates?: readonly number[];
  fit: LockstepOptions;
  /** Return each copy's kept weights. @default false */
  keepWeights?: boolean;
}

/** Why `fitInLockstep` would not run these trials, or undefined when it would. */
export function lockstepUnsupported(head: tf.LayersModel, fit: Pick<FitOptions, 'optimizer' | 'lrSchedule'>): string | undefined {
  if (fit.optimizer !== 'adam') return `optimizer ${fit.optimizer} (only adam is batched)`;
  if (fit.lrSchedule !== undefined && fit.lrSchedule !== 'constant') return `lrSchedule ${fit.lrSchedule} (only constant is batched)`;
  const stages = stagesOf(head);
  return typeof stages === 'string' ? stages : undefined;
}

/** Lets a signal handler (the CLI's SIGINT) run during in-memory training, as `fitEpochs` does once an epoch. */
const yieldToEventLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Adam's constants as `tf.train.adam(lr)` takes them (β1, β2; ε is the backend's). */
const BETA1 = 0.9;
const BETA2 = 0.999;

/**
 * Trains one copy of `head` per learning rate in lockstep and scores each on `val` after every
 * epoch, with `fit.earlyStopping` applied per copy (its best epoch's weights kept). A copy whose
 * loss turns NaN/Inf is recorded as diverged and leaves the computation at once while the others
 * go on; so does a copy that early stopping ends (its kept weights are taken out first), so the
 * work per step shrinks with the copies still training. Returns undefined, having trained nothing,
 * when the head or the options cannot be batched (see {@link lockstepUnsupported}). Throws what
 * `fitEpochs` throws for an abort or a bad batch.
 */
export async function fitInLockstep(input: LockstepInput): Promise<LockstepCopy[] | undefined> {
  const { head, train, val, k, fit } = input;
  const rates = [...input.learningRates];
  for (const [name, values] of [['weightDecays', input.weightDecays], ['labelSmoothings', input.labelSmoothings], ['dropoutRates', input.dropoutRates]] as const) {
    if (values !== undefined && values.length !== rates.length) throw new TypeError(`fitInLockstep: ${name} has ${values.length} values for ${rates.length} copies`);
  }
  const hyper: CopyHyper[] = rates.map((_, i) => ({
    weightDecay: input.weightDecays?.[i] ?? fit.weightDecay ?? 0,
    labelSmoothing: input.labelSmoothings?.[i] ?? fit.labelSmoothing ?? 0,
    ...(input.dropoutRates === undefined ? {} : { dropoutRate: input.dropoutRates[i]! }),
  }));
  if (lockstepUnsupported(head, fit) !== undefined || rates.length === 0) return undefined;
  const stages = stagesOf(head) as Stage[];
  if (input.dropoutRates !== undefined && stages.filter((st) => st.kind === 'dropout').length !== 1) return undefined;
  const template = stages.flatMap((s) => (s.kind === 'dense' ? [s.kernel, ...(s.bias ? [s.bias] : [])] : []));
  const seed = fit.seed ?? 0;
  const task = fit.task ?? 'classify';
  if (task !== 'classify' && train.targets === undefined) throw new TypeError(`fitInLockstep: a ${task} training set needs targets`);

  const sampleShape = head.inputs[0]!.shape.slice(1) as number[];
  const trainer = new LockstepAdam(template, rates, sampleShape);
  const xVal = tf.tensor(val.x, [val.ids.length, ...sampleShape]);
  const copies = rates.map((learningRate) => new CopyState(learningRate));
  const results: (LockstepCopy | undefined)[] = rates.map(() => undefined);
  /** The copy (index into `rates`) at each position of the computation. */
  let slots = rates.map((_, i) => i);
  /** Records the copies at `positions` (diverged, or done: their kept weights checked and taken) and drops them from the computation. */
  const finish = (positions: readonly number[]): void => {
    if (positions.length === 0) return;
    const kept = fit.earlyStopping ? trainer.best : trainer.weights;
    const finite = positions.some((p) => copies[slots[p]!]!.divergedMessage === undefined) ? trainer.finite(kept) : [];
    for (const p of positions) {
      const c = copies[slots[p]!]!;
      const bad = c.divergedMessage === undefined ? finite.findIndex((f) => !f[p]) : -1;
      if (c.divergedMessage !== undefined || bad >= 0) {
        const diverged = c.divergedMessage ?? `training diverged: weight ${template[bad]!.name} holds NaN or Infinity (learningRate ${c.learningRate}); nothing was written — use a smaller learningRate`;
        results[slots[p]!] = { learningRate: c.learningRate, diverged };
        continue;
      }
      const bestEpoch = fit.earlyStopping ? c.bestEpoch : c.history.loss.length;
      if (fit.earlyStopping) c.history.bestEpoch = bestEpoch;
      results[slots[p]!] = {
        learningRate: c.learningRate,
        history: c.history,
        bestEpoch,
        valAcc: c.history.valAcc![bestEpoch - 1]!,
        valLoss: c.history.valLoss![bestEpoch - 1]!,
        ...(input.keepWeights ? { weights: trainer.copyOf(kept, p) } : {}),
      };
    }
    const keep = slots.map((_, p) => !positions.includes(p));
    slots = slots.filter((_, p) => keep[p]);
    if (slots.length > 0) trainer.retain(keep);
  };
  let returned = false;
  try {
    const source = memoryBatches(train, fit.batchSize, seed);
    for (let epoch = 0; epoch < fit.epochs && slots.length > 0; epoch++) {
      throwIfAborted(fit.signal);
      const t0 = performance.now();
      const lossSum = new Float64Array(rates.length);
      const correct = new Float64Array(rates.length);
      let n = 0;
      const viewsRead: number[] = [];
      let step = 0;
      for await (const batch of source.batches(epoch)) {
        const stepSeed = (epochSeed(seed, epoch) ^ Math.imul(++step, 0x9e3779b1)) >>> 0;
        n += batch.labels.length;
        for (const v of batch.views) viewsRead[v] = (viewsRead[v] ?? 0) + 1;
        const r = withSeededRandom(stepSeed, () => trainer.step(stages, batch, k, fit, slots.map((i) => hyper[i]!)));
        const width = slots.length;
        const diverged: number[] = [];
        slots.forEach((i, p) => {
          const c = copies[i]!;
          if (!Number.isFinite(r[p]!)) {
            c.diverge(`training diverged in epoch ${epoch + 1}: the loss is ${r[p]} (learningRate ${c.learningRate}, optimizer ${fit.optimizer}); nothing was written — use a smaller learningRate`);
            diverged.push(p);
            return;
          }
          lossSum[i]! += r[p]! * batch.labels.length;
          correct[i]! += r[width + p]!;
        });
        // A diverged copy leaves at once: its NaN never meets another copy's numbers.
        finish(diverged);
        if (slots.length === 0) break;
        throwIfAborted(fit.signal);
      }
      await yieldToEventLoop();
      if (slots.length === 0) break;
      const out = trainer.predict(stages, xVal);
      const per = val.ids.length * k;
      const seconds = (performance.now() - t0) / 1000;
      const done: number[] = [];
      const improved = slots.map((i, p) => {
        const c = copies[i]!;
        let m;
        try {
          m = metricsOfOutputs(out.subarray(p * per, (p + 1) * per), val, k, fit);
        } catch (err) {
          if (!(isSplitfitError(err) && err.code === 'SPLITFIT_NUMERIC')) throw err;
          c.diverge(err.message);
          done.push(p);
          return false;
        }
        c.record({ loss: lossSum[i]! / n, acc: correct[i]! / n, valLoss: m.loss, valAcc: m.accuracy, valAuc: m.auc, seconds, viewsRead: Array.from(viewsRead, (v) => v ?? 0) });
        const better = fit.earlyStopping ? c.track(fit.earlyStopping) : false;
        if (!c.active) done.push(p);
        return better;
      });
      if (improved.some(Boolean)) trainer.keepBest(improved);
      finish(done);
    }
    finish(slots.map((_, p) => p));
    returned = true;
    return results.map((r) => r!);
  } finally {
    // Weights taken out for a result that is never returned (an abort, an error) are released here.
    if (!returned) for (const r of results) if (r?.diverged === undefined) tf.dispose(r?.weights ?? []);
    xVal.dispose();
    trainer.dispose();
  }
}

/** A copy's own weight decay, label smoothing and (with `dropoutRates`) dropout rate. */
interface CopyHyper {
  weightDecay: number;
  labelSmoothing: number;
  dropoutRate?: number;
}

/** One copy's records: its history as `fitEpochs` keeps it, whether it still trains, its best epoch. */
class CopyState {
  readonly history: History;
  active = true;
  divergedMessage: string | undefined;
  bestEpoch = 0;
  private best: { loss: number; acc: number } | undefined;
  private sinceBest = 0;

  constructor(readonly learningRate: number) {
    this.history = {
      loss: [],
      acc: [],
      seconds: [],
      viewsRead: [],
      generations: [{ generation: 0, startEpoch: 1, waitedSeconds: 0 }],
      learningRates: [],
      valLoss: [],
      valAcc: [],
      valAuc: [],
    };
  }

  diverge(message: string): void {
    this.active = false;
    this.divergedMessage = message;
  }

  record(log: { loss: number; acc: number; valLoss: number; valAcc: number; valAuc: number | undefined; seconds: number; viewsRead: number[] }): void {
    const h = this.history;
    h.loss.push(log.loss);
    h.acc.push(log.acc);
    h.seconds.push(log.seconds);
    h.viewsRead.push(log.viewsRead);
    h.learningRates.push(this.learningRate);
    h.valLoss!.push(log.valLoss);
    h.valAcc!.push(log.valAcc);
    if (log.valAuc !== undefined) h.valAuc!.push(log.valAuc);
  }

  /** The early-stopping rule on the epoch just recorded; true when it is the new best. Stops the copy when patience runs out. */
  track(rule: NonNullable<FitOptions['earlyStopping']>): boolean {
    const epoch = this.history.loss.length;
    const now = { loss: this.history.valLoss![epoch - 1]!, acc: this.history.valAcc![epoch - 1]! };
    if (improves(rule, now, this.best)) {
      this.best = now;
      this.bestEpoch = epoch;
      this.sinceBest = 0;
      return true;
    }
    this.sinceBest++;
    if (this.sinceBest >= rule.patience) this.active = false;
    return false;
  }
}

/**
 * R copies' weights stacked on a copy axis, trained by Adam with one learning rate per copy. The
 * update is tfjs's `AdamOptimizer.applyGradients`, op for op, with the scalar `-learningRate`
 * replaced by a per-copy tensor, so one copy steps exactly as `tf.train.adam(lr)` would.
 *
 * Layout: the first kernel is `[in, R, out]`, so that the input all copies share multiplies every
 * copy's kernel in one plain `[n, in] × [in, R·out]` matMul (each copy's columns then round as that
 * copy's own `[n, in] × [in, out]` would — a batched matMul rounds a copy by its position in the batch,
 * which a chaotic run amplifies into other early-stopping epochs); later kernels are `[R, in, out]`
 * (batched matMul), biases `[R, out]`. Activations run as `[n, R, units]`.
 */
class LockstepAdam {
  weights: tf.Variable[];
  best: tf.Variable[];
  private m: tf.Variable[];
  private v: tf.Variable[];
  private readonly accBeta1: tf.Variable;
  private readonly accBeta2: tf.Variable;
  private negLr: tf.Tensor[];
  private readonly epsilon = tf.backend().epsilon();
  /** Per weight, the axis its copies are stacked on. */
  private readonly copyAxis: number[];
  /** Per weight, whether it is a kernel (weight decay's `/kernel$/` rule). */
  private readonly isKernel: boolean[];
  /** How many copies are in the computation. */
  private R: number;

  constructor(
    template: readonly tf.LayerVariable[],
    private rates: readonly number[],
    /** One sample's shape as the head's input takes it. */
    private readonly sampleShape: readonly number[],
  ) {
    const R = rates.length;
    this.R = R;
    this.isKernel = template.map((w) => /kernel$/.test(w.originalName));
    this.copyAxis = template.map((_, i) => (i === 0 ? 1 : 0));
    this.weights = template.map((w, i) =>
      tf.tidy(() => {
        const axis = this.copyAxis[i]!;
        const reps = new Array<number>(w.shape.length + 1).fill(1);
        reps[axis] = R;
        return tf.variable(tf.tile(tf.expandDims(w.read(), axis), reps));
      }),
    );
    // tf.variable keeps its initial tensor alive beside it: made in a tidy, that tensor is released.
    this.best = this.weights.map((w) => tf.tidy(() => tf.variable(w.clone(), false)));
    this.m = this.weights.map((w) => tf.tidy(() => tf.variable(tf.zerosLike(w), false)));
    this.v = this.weights.map((w) => tf.tidy(() => tf.variable(tf.zerosLike(w), false)));
    this.accBeta1 = tf.tidy(() => tf.variable(tf.scalar(BETA1), false));
    this.accBeta2 = tf.tidy(() => tf.variable(tf.scalar(BETA2), false));
    this.negLr = this.weights.map((_, i) => this.perCopy(i, rates.map((r) => -r), 'float32'));
  }

  /**
   * Keeps only the copies where `keep` is true (in order): their weights, Adam moments and best
   * snapshots, gathered along the copy axis. Adam's step count is shared, so it stays.
   */
  retain(keep: readonly boolean[]): void {
    const positions = keep.flatMap((k, p) => (k ? [p] : []));
    const gather = (vars: tf.Variable[], trainable: boolean): tf.Variable[] =>
      vars.map((w, i) => {
        const kept = tf.tidy(() => tf.variable(tf.gather(w, positions, this.copyAxis[i]), trainable));
        w.dispose();
        return kept;
      });
    this.weights = gather(this.weights, true);
    this.best = gather(this.best, false);
    this.m = gather(this.m, false);
    this.v = gather(this.v, false);
    this.rates = positions.map((p) => this.rates[p]!);
    this.R = positions.length;
    tf.dispose(this.negLr);
    this.negLr = this.weights.map((_, i) => this.perCopy(i, this.rates.map((r) => -r), 'float32'));
  }

  /** A tensor of one value per copy, shaped to broadcast against weight `i` (R on its copy axis, 1 elsewhere). */
  private perCopy(i: number, values: readonly number[] | readonly boolean[], dtype: 'float32' | 'bool'): tf.Tensor {
    const shape = new Array<number>(this.weights[i]!.rank).fill(1);
    shape[this.copyAxis[i]!] = this.R;
    return dtype === 'bool' ? tf.tensor(values as boolean[], shape, 'bool') : tf.tensor(values as number[], shape, 'float32');
  }

  /** The axes of weight `i` other than its copy axis (reducing over them gives one value per copy). */
  private otherAxes(i: number): number[] {
    return Array.from({ length: this.weights[i]!.rank }, (_, a) => a).filter((a) => a !== this.copyAxis[i]);
  }

  /**
   * Forward of every copy on the shared input `x` ([n, …]): [n, R, k], in training mode or not.
   * `dropoutRates` (one per copy, for the head's one Dropout layer) replace the layer's own rate; a
   * copy's 0 is no dropout at all, as its sequential head has no Dropout layer.
   */
  private forward(stages: readonly Stage[], x: tf.Tensor, training: boolean, dropoutRates?: readonly number[]): tf.Tensor {
    const R = this.R;
    const n = x.shape[0]!;
    let h = x;
    let shared = true;
    /** Per copy, its own input to the first Dense layer (a per-copy dropout before it), else undefined. */
    let inputs: tf.Tensor[] | undefined;
    let w = 0;
    for (const s of stages) {
      if (s.kind === 'flatten') h = tf.reshape(h, [n, -1]);
      else if (s.kind === 'dropout') {
        if (!training) continue;
        if (shared) {
          const dropped = dropInput(h, s, dropoutRates);
          if (Array.isArray(dropped)) inputs = dropped;
          else h = dropped;
          continue;
        }
        if (dropoutRates === undefined || dropoutRates.every((r) => r === dropoutRates[0])) {
          // The sequential step draws an [n, units] mask per dropout layer from the seeded Math.random;
          // noise shape [n, 1, units] draws the same values, shared by all copies.
          const rate = dropoutRates?.[0] ?? s.rate;
          if (rate > 0 && rate < 1) h = tf.dropout(h, rate, [n, 1, h.shape[2]!], s.seed);
          continue;
        }
        const u = tf.randomUniform([n, 1, h.shape[2]!], 0, 1, 'float32', s.seed);
        h = tf.mul(h, tf.stack(dropoutRates.map((rate) => (rate > 0 ? tf.reshape(keepMultiplier(u, rate), [n, h.shape[2]!]) : tf.onesLike(tf.reshape(u, [n, h.shape[2]!])))), 1));
      } else {
        const kernel = this.weights[w++]!;
        if (shared) {
          const [width, , units] = kernel.shape as [number, number, number];
          h =
            inputs === undefined
              ? tf.reshape(tf.matMul(h, tf.reshape(kernel, [width, R * units])), [n, R, units])
              : // Each copy's own input times its own kernel: one plain matMul per copy, rounding as its sequential step.
                tf.stack(inputs.map((xr, r) => tf.matMul(xr, tf.reshape(tf.slice(kernel, [0, r, 0], [width, 1, units]), [width, units]))), 1);
          shared = false;
        } else {
          h = tf.transpose(tf.matMul(tf.transpose(h, [1, 0, 2]), kernel), [1, 0, 2]);
        }
        if (s.bias) h = tf.add(h, this.weights[w++]!);
        h = s.activation(h);
      }
    }
    return h;
  }

  /** Inference-mode outputs of every copy on `x`, [R, n, k] row-major. */
  predict(stages: readonly Stage[], x: tf.Tensor): Float32Array {
    return tf.tidy(() => tf.transpose(this.forward(stages, x, false), [1, 0, 2]).dataSync() as Float32Array);
  }

  /**
   * One step of every copy on a batch: the summed loss's gradients, then Adam. Returns the copies'
   * batch losses (loss plus penalty, as `trainStep` reports it) followed by their correct counts.
   */
  step(stages: readonly Stage[], batch: { x: Float32Array; labels: number[]; targets?: Float32Array }, k: number, fit: LockstepOptions, hyper: readonly CopyHyper[]): Float64Array {
    const n = batch.labels.length;
    const task = fit.task ?? 'classify';
    const { classWeights } = fit;
    // One value for all copies stays a scalar (the sequential step's very ops); differing values
    // become a tensor with one value per copy (a copy's 0 then adds exactly nothing).
    const same = (xs: readonly number[]): boolean => xs.every((x) => x === xs[0]);
    const smoothings = hyper.map((h) => h.labelSmoothing);
    const decays = hyper.map((h) => h.weightDecay);
    const closedForm = task === 'classify' ? softmaxDenseStages(stages) : undefined;
    if (closedForm) {
      const dropout = closedForm.dropout;
      const rates = hyper.every((c) => c.dropoutRate === undefined) ? undefined : hyper.map((c) => c.dropoutRate ?? 0);
      return this.closedFormStep(batch, k, fit, smoothings, decays, (x) => (dropout ? dropInput(x, dropout, rates) : x));
    }
    const scores = tf.tidy(() => {
      const x = tf.tensor(batch.x, [n, ...this.sampleShape]);
      const labels = tf.tensor1d(batch.labels, 'int32');
      let y: tf.Tensor;
      if (task !== 'classify') y = tf.tensor3d(batch.targets!, [n, 1, k]);
      else {
        const onehot = tf.reshape(tf.oneHot(labels, k).toFloat(), [n, 1, k]);
        if (same(smoothings)) {
          const ls = smoothings[0]!;
          y = ls > 0 ? tf.add(tf.mul(onehot, 1 - ls), ls / k) : onehot;
        } else {
          y = tf.add(tf.mul(onehot, tf.tensor3d(smoothings.map((ls) => 1 - ls), [1, this.R, 1])), tf.tensor3d(smoothings.map((ls) => ls / k), [1, this.R, 1]));
        }
      }
      let perCopy: tf.Tensor1D | undefined;
      let predicted: tf.Tensor | undefined;
      const { grads } = tf.variableGrads(() => {
        const p = this.forward(stages, x, true, hyper.every((c) => c.dropoutRate === undefined) ? undefined : hyper.map((c) => c.dropoutRate ?? 0));
        predicted = tf.keep(p);
        // Per sample and copy, then [R, n]: each copy's mean runs over its own row, as trainStep's does.
        const perSample =
          task === 'classify'
            ? tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1))
            : perSampleTaskLoss(p, y, { task, regressionLoss: fit.regressionLoss, positiveWeights: fit.positiveWeights });
        const rows = tf.transpose(perSample);
        let losses: tf.Tensor1D = classWeights && task === 'classify' ? tf.div(tf.sum(tf.mul(rows, tf.gather(tf.tensor1d([...classWeights]), labels)), -1), n) : tf.mean(rows, -1);
        const kernels = this.weights.flatMap((w, i) => (this.isKernel[i] ? [tf.sum(tf.square(w), this.otherAxes(i))] : []));
        if (kernels.length > 0 && decays.some((d) => d > 0)) {
          losses = tf.add(losses, tf.mul(same(decays) ? decays[0]! : tf.tensor1d(decays), tf.addN(kernels)));
        }
        perCopy = tf.keep(losses);
        return tf.sum(losses);
      }, this.weights);
      this.apply(this.weights.map((w) => grads[w.name]!));
      const p = predicted!;
      const correct =
        task === 'classify'
          ? tf.sum(tf.equal(tf.argMax(p, -1), tf.reshape(labels, [n, 1])).toFloat(), 0)
          : task === 'multilabel'
            ? tf.sum(tf.mean(tf.equal(tf.greaterEqual(p, 0.5), tf.equal(y, 1)).toFloat(), -1), 0)
            : tf.sum(tf.sub(1, tf.mean(tf.square(tf.sub(p, y)), -1)), 0);
      const out = tf.concat([perCopy!, correct]).dataSync() as Float32Array;
      p.dispose();
      perCopy!.dispose();
      return out;
    });
    return Float64Array.from(scores);
  }

  /**
   * {@link step} of a head that is one softmax Dense layer (after an optional Flatten and Dropout layer): the
   * closed-form gradient `trainStep` uses (`softmax-dense.ts`), every copy's logits from one matMul
   * and every copy's kernel gradient from one more.
   */
  private closedFormStep(
    batch: { x: Float32Array; labels: number[] },
    k: number,
    fit: LockstepOptions,
    smoothings: readonly number[],
    decays: readonly number[],
    /** The Dense layer's input in training mode: shared by every copy, or one per copy (per-copy dropout rates). */
    inputOf: (x: tf.Tensor2D) => tf.Tensor | tf.Tensor[],
  ): Float64Array {
    const n = batch.labels.length;
    const R = this.R;
    const { targets, rowWeights, copies } = softmaxTargets(batch.labels, k, smoothings, fit.classWeights);
    const decayed = decays.some((d) => d > 0);
    // The outputs leave the tidy as tensors: a typed array returned from it would be walked element by element.
    const [probabilities, penalties] = tf.tidy(() => {
      const [kernel, bias] = this.weights as [tf.Variable, tf.Variable | undefined];
      const width = kernel.shape[0]!;
      const x = inputOf(tf.tensor2d(batch.x, [n, width]));
      // Each copy's own input times its own kernel slice when the inputs differ (rounding as its sequential step).
      const kernelOf = (r: number): tf.Tensor => tf.reshape(tf.slice(kernel, [0, r, 0], [width, 1, k]), [width, k]);
      const z = Array.isArray(x) ? tf.stack(x.map((xr, r) => tf.matMul(xr, kernelOf(r))), 1) : tf.reshape(tf.matMul(x, tf.reshape(kernel, [width, R * k])), [n, R, k]);
      const p = tf.softmax(bias ? tf.add(z, bias) : z);
      const g = tf.sub(tf.mul(p, tf.tensor3d(rowWeights, [n, 1, 1])), tf.tensor3d(targets, [n, copies, k]));
      const penalty = decayed ? tf.sum(tf.square(kernel), [0, 2]) : undefined;
      const kernelGrad = Array.isArray(x)
        ? tf.stack(x.map((xr, r) => tf.matMul(xr, tf.reshape(tf.slice(g, [0, r, 0], [n, 1, k]), [n, k]), true, false)), 1)
        : tf.reshape(tf.matMul(x, tf.reshape(g, [n, R * k]), true, false), [width, R, k]);
      const twice = decays.every((d) => d === decays[0]) ? 2 * decays[0]! : tf.tensor3d(decays.map((d) => 2 * d), [1, R, 1]);
      this.apply([penalty ? tf.add(kernelGrad, tf.mul(kernel, twice)) : kernelGrad, ...(bias ? [tf.sum(g, 0)] : [])]);
      return [p, penalty ?? tf.zeros([R])];
    });
    const penalty = penalties.dataSync();
    const { losses, correct } = softmaxBatchScores(probabilities.dataSync() as Float32Array, batch.labels, k, smoothings, fit.classWeights);
    tf.dispose([probabilities, penalties]);
    const out = new Float64Array(2 * R);
    for (let r = 0; r < R; r++) {
      out[r] = losses[r]! + decays[r]! * penalty[r]!;
      out[R + r] = correct[r]!;
    }
    return out;
  }

  /** `AdamOptimizer.applyGradients`, op for op, with a per-copy step size. */
  private apply(gradients: readonly tf.Tensor[]): void {
    tf.tidy(() => {
      const oneMinusAccBeta1 = tf.sub(1, this.accBeta1);
      const oneMinusAccBeta2 = tf.sub(1, this.accBeta2);
      gradients.forEach((g, i) => {
        const value = this.weights[i]!;
        const newFirstMoment = tf.add(tf.mul(this.m[i]!, BETA1), tf.mul(g, 1 - BETA1));
        const newSecondMoment = tf.add(tf.mul(this.v[i]!, BETA2), tf.mul(tf.square(g), 1 - BETA2));
        const biasCorrectedFirstMoment = tf.div(newFirstMoment, oneMinusAccBeta1);
        const biasCorrectedSecondMoment = tf.div(newSecondMoment, oneMinusAccBeta2);
        this.m[i]!.assign(newFirstMoment);
        this.v[i]!.assign(newSecondMoment);
        value.assign(tf.add(tf.mul(tf.div(biasCorrectedFirstMoment, tf.add(tf.sqrt(biasCorrectedSecondMoment), this.epsilon)), this.negLr[i]!), value));
      });
      this.accBeta1.assign(tf.mul(this.accBeta1, BETA1));
      this.accBeta2.assign(tf.mul(this.accBeta2, BETA2));
    });
  }

  /** Copies the weights of the `improved` copies into `best` (the early-stopping snapshot). */
  keepBest(improved: readonly boolean[]): void {
    tf.tidy(() => this.weights.forEach((w, i) => this.best[i]!.assign(tf.where(this.perCopy(i, improved, 'bool'), w, this.best[i]!))));
  }

  /** Per weight, per copy: whether every value is finite. */
  finite(weights: readonly tf.Tensor[]): boolean[][] {
    return weights.map((w, i) => tf.tidy(() => Array.from(tf.all(tf.isFinite(w), this.otherAxes(i)).dataSync(), (f) => f === 1)));
  }

  /** Copy `c`'s slice of each of `weights`, in the head's own shapes. */
  copyOf(weights: readonly tf.Tensor[], c: number): tf.Tensor[] {
    return weights.map((w, i) => tf.tidy(() => tf.squeeze(tf.gather(w, [c], this.copyAxis[i]), [this.copyAxis[i]!])));
  }

  dispose(): void {
    tf.dispose([...this.weights, ...this.best, ...this.m, ...this.v, this.accBeta1, this.accBeta2, ...this.negLr]);
  }
}
