import * as tf from '@tensorflow/tfjs';
import { isSplitfitError, throwIfAborted } from '../errors.js';
import { epochSeed } from '../random.js';
import { memoryBatches } from './batches.js';
import type { FeatureSet } from './feature-set.js';
import { type FitOptions, type History, improves, metricsOfOutputs } from './fit.js';
import { perSampleTaskLoss } from './losses.js';
import { withSeededRandom } from './step.js';

/**
 * Trials in lockstep (issue #13): R copies of one small head, each with its own learning rate,
 * trained as one computation — weights stacked `[R, in, out]`, forward by batched `matMul`, the
 * loss the sum of each copy's own loss (so each copy's gradient is its own), Adam with a per-copy
 * learning rate. A head this small costs per-op overhead, not arithmetic, so R trials cost about
 * one. Each copy sees what the sequential trial (`job/head-trainer.runTrial` → `fitEpochs`) sees:
 * the same initial weights, the same batches in the same order, the same dropout masks, the same
 * validation metrics and early-stopping rule; its numbers agree to float rounding.
 *
 * Only what can be batched faithfully is: a chain of Dense layers (any activation), optional
 * Dropout between them, optionally a leading Flatten; Adam; a constant learning rate. Anything else
 * returns `undefined` and the caller runs the trials one by one.
 */

/** One layer of a head that trains in lockstep. */
type Stage =
  | { kind: 'flatten' }
  | { kind: 'dropout'; rate: number; seed: number | undefined }
  | { kind: 'dense'; kernel: tf.LayerVariable; bias: tf.LayerVariable | undefined; activation: (x: tf.Tensor) => tf.Tensor };

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
  fit: LockstepOptions;
  /** Return each copy's kept weights. @default false */
  keepWeights?: boolean;
}

/** Why `fitInLockstep` would not run these trials, or undefined when it would. */
export function lockstepUnsupported(head: tf.LayersModel, fit: Pick<FitOptions, 'optimizer' | 'lrSchedule'>): string | undefined {
  if (fit.optimizer !== 'adam') return `optimizer ${fit.optimizer} (only adam is batched)`;
  if (fit.lrSchedule !== undefined && fit.lrSchedule !== 'constant') return `lrSchedule ${fit.lrSchedule} (only constant is batched)`;
  return typeof stagesOf(head) === 'string' ? (stagesOf(head) as string) : undefined;
}

/**
 * The head as stages, or why it cannot be batched. Decided from the built model, not its spec: a
 * single-input chain whose layers are an input, an optional Flatten right after it, then Dense and
 * Dropout layers without regularizers, constraints or a noise shape.
 */
function stagesOf(head: tf.LayersModel): Stage[] | string {
  if (head.inputs.length !== 1 || head.outputs.length !== 1) return 'the head has more than one input or output';
  const [input, ...layers] = head.layers;
  if (input?.getClassName() !== 'InputLayer' || layers.length === 0) return 'the head does not start with its input';
  const stages: Stage[] = [];
  let previous = input;
  for (const layer of layers) {
    const inbound = layer.inboundNodes;
    if (inbound.length !== 1 || inbound[0]!.inboundLayers.length !== 1 || inbound[0]!.inboundLayers[0] !== previous) return `layer ${layer.name} is not a plain chain link`;
    if (layer.nonTrainableWeights.length > 0 || !layer.trainable) return `layer ${layer.name} has non-trainable weights`;
    const config = layer.getConfig();
    switch (layer.getClassName()) {
      case 'Flatten':
        if (stages.length > 0) return `layer ${layer.name}: Flatten is batched only right after the input`;
        stages.push({ kind: 'flatten' });
        break;
      case 'Dropout':
        if (config['noiseShape'] != null) return `layer ${layer.name} has a noise shape`;
        stages.push({ kind: 'dropout', rate: config['rate'] as number, seed: (config['seed'] as number | null | undefined) ?? undefined });
        break;
      case 'Dense': {
        const extras = ['kernelRegularizer', 'biasRegularizer', 'activityRegularizer', 'kernelConstraint', 'biasConstraint'].filter((key) => config[key] != null);
        if (extras.length > 0) return `layer ${layer.name} has ${extras.join(', ')}`;
        const [kernel, bias, ...rest] = layer.trainableWeights;
        const useBias = config['useBias'] !== false;
        if (kernel === undefined || rest.length > 0 || (bias === undefined) === useBias || kernel.shape.length !== 2) return `layer ${layer.name} has unexpected weights`;
        // tfjs keeps a Dense layer's activation private; applying that very object is what makes the
        // batched forward the layer's own function (softmax on the last axis, elementwise otherwise).
        const fn = (layer as unknown as { activation?: { apply(x: tf.Tensor): tf.Tensor } }).activation;
        stages.push({ kind: 'dense', kernel, bias, activation: fn ? (x) => fn.apply(x) : (x) => x });
        break;
      }
      default:
        return `layer ${layer.name} is a ${layer.getClassName()} (only Dense, Dropout and a leading Flatten are batched)`;
    }
    previous = layer;
  }
  if (head.outputLayers[0] !== previous) return 'the head’s output is not its last layer';
  if (!stages.some((s) => s.kind === 'dense')) return 'the head has no Dense layer';
  return stages;
}

/** Lets a signal handler (the CLI's SIGINT) run during in-memory training, as `fitEpochs` does once an epoch. */
const yieldToEventLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Adam's constants as `tf.train.adam(lr)` takes them (β1, β2; ε is the backend's). */
const BETA1 = 0.9;
const BETA2 = 0.999;

/**
 * Trains one copy of `head` per learning rate in lockstep and scores each on `val` after every
 * epoch, with `fit.earlyStopping` applied per copy (its best epoch's weights kept). A copy whose
 * loss turns NaN/Inf is recorded as diverged and frozen while the others go on. Returns undefined,
 * having trained nothing, when the head or the options cannot be batched (see
 * {@link lockstepUnsupported}). Throws what `fitEpochs` throws for an abort or a bad batch.
 */
export async function fitInLockstep(input: LockstepInput): Promise<LockstepCopy[] | undefined> {
  const { head, train, val, k, fit } = input;
  const rates = [...input.learningRates];
  if (lockstepUnsupported(head, fit) !== undefined || rates.length === 0) return undefined;
  const stages = stagesOf(head) as Stage[];
  const R = rates.length;
  const template = stages.flatMap((s) => (s.kind === 'dense' ? [s.kernel, ...(s.bias ? [s.bias] : [])] : []));
  const seed = fit.seed ?? 0;
  const task = fit.task ?? 'classify';
  if (task !== 'classify' && train.targets === undefined) throw new TypeError(`fitInLockstep: a ${task} training set needs targets`);

  const sampleShape = head.inputs[0]!.shape.slice(1) as number[];
  const trainer = new LockstepAdam(template, rates, sampleShape);
  const xVal = tf.tensor(val.x, [val.ids.length, ...sampleShape]);
  const copies = rates.map((learningRate) => new CopyState(learningRate));
  try {
    const source = memoryBatches(train, fit.batchSize, seed);
    for (let epoch = 0; epoch < fit.epochs && copies.some((c) => c.active); epoch++) {
      throwIfAborted(fit.signal);
      const t0 = performance.now();
      const lossSum = new Float64Array(R);
      const correct = new Float64Array(R);
      let n = 0;
      const viewsRead: number[] = [];
      let step = 0;
      for await (const batch of source.batches(epoch)) {
        const stepSeed = (epochSeed(seed, epoch) ^ Math.imul(++step, 0x9e3779b1)) >>> 0;
        const r = withSeededRandom(stepSeed, () => trainer.step(stages, batch, k, fit));
        const size = batch.labels.length;
        copies.forEach((c, i) => {
          if (!c.active) return;
          if (!Number.isFinite(r[i]!)) {
            c.diverge(`training diverged in epoch ${epoch + 1}: the loss is ${r[i]} (learningRate ${c.learningRate}, optimizer ${fit.optimizer}); nothing was written — use a smaller learningRate`);
            return;
          }
          lossSum[i]! += r[i]! * size;
          correct[i]! += r[R + i]!;
        });
        trainer.setActive(copies.map((c) => c.active));
        n += size;
        for (const v of batch.views) viewsRead[v] = (viewsRead[v] ?? 0) + 1;
        throwIfAborted(fit.signal);
      }
      await yieldToEventLoop();
      const out = trainer.predict(stages, xVal);
      const per = val.ids.length * k;
      const improved = copies.map((c, i) => {
        if (!c.active) return false;
        let m;
        try {
          m = metricsOfOutputs(out.subarray(i * per, (i + 1) * per), val, k, fit);
        } catch (err) {
          if (!(isSplitfitError(err) && err.code === 'SPLITFIT_NUMERIC')) throw err;
          c.diverge(err.message);
          return false;
        }
        c.record({ loss: lossSum[i]! / n, acc: correct[i]! / n, valLoss: m.loss, valAcc: m.accuracy, valAuc: m.auc, seconds: 0, viewsRead: Array.from(viewsRead, (v) => v ?? 0) });
        return fit.earlyStopping ? c.track(fit.earlyStopping) : false;
      });
      const seconds = (performance.now() - t0) / 1000;
      for (const c of copies) if (c.history.seconds.length < c.history.loss.length) c.history.seconds.push(seconds);
      if (improved.some(Boolean)) trainer.keepBest(improved);
      trainer.setActive(copies.map((c) => c.active));
    }
    const kept = fit.earlyStopping ? trainer.best : trainer.weights;
    const finite = trainer.finite(kept);
    return copies.map((c, i): LockstepCopy => {
      if (c.divergedMessage !== undefined) return { learningRate: c.learningRate, diverged: c.divergedMessage };
      const bad = finite.findIndex((f) => !f[i]);
      if (bad >= 0) {
        return {
          learningRate: c.learningRate,
          diverged: `training diverged: weight ${template[bad]!.name} holds NaN or Infinity (learningRate ${c.learningRate}); nothing was written — use a smaller learningRate`,
        };
      }
      const bestEpoch = fit.earlyStopping ? c.bestEpoch : c.history.loss.length;
      if (fit.earlyStopping) c.history.bestEpoch = bestEpoch;
      return {
        learningRate: c.learningRate,
        history: c.history,
        bestEpoch,
        valAcc: c.history.valAcc![bestEpoch - 1]!,
        valLoss: c.history.valLoss![bestEpoch - 1]!,
        ...(input.keepWeights ? { weights: kept.map((w) => tf.tidy(() => tf.squeeze(tf.slice(w, i, 1), [0]))) } : {}),
      };
    });
  } finally {
    xVal.dispose();
    trainer.dispose();
  }
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
 * R copies' weights stacked on a leading axis, trained by Adam with one learning rate per copy.
 * The update is tfjs's `AdamOptimizer.applyGradients`, op for op, with the scalar `-learningRate`
 * replaced by a per-copy tensor, so one copy steps exactly as `tf.train.adam(lr)` would.
 */
class LockstepAdam {
  readonly weights: tf.Variable[];
  best: tf.Variable[];
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  private readonly accBeta1: tf.Variable;
  private readonly accBeta2: tf.Variable;
  private readonly negLr: tf.Tensor[];
  private readonly epsilon = tf.backend().epsilon();
  /** Per weight, a [R, 1, …] boolean mask of the copies still updated; undefined while all are. */
  private active: tf.Tensor[] | undefined;
  private activeKey = '';

  constructor(
    template: readonly tf.LayerVariable[],
    rates: readonly number[],
    /** One sample's shape as the head's input takes it. */
    private readonly sampleShape: readonly number[],
  ) {
    const R = rates.length;
    const broadcast = (rank: number): number[] => [R, ...new Array<number>(rank).fill(1)];
    this.weights = template.map((w) => tf.tidy(() => tf.variable(tf.tile(tf.expandDims(w.read(), 0), broadcast(w.shape.length)))));
    // tf.variable keeps its initial tensor alive beside it: made in a tidy, that tensor is released.
    this.best = this.weights.map((w) => tf.tidy(() => tf.variable(w.clone(), false)));
    this.m = this.weights.map((w) => tf.tidy(() => tf.variable(tf.zerosLike(w), false)));
    this.v = this.weights.map((w) => tf.tidy(() => tf.variable(tf.zerosLike(w), false)));
    this.accBeta1 = tf.tidy(() => tf.variable(tf.scalar(BETA1), false));
    this.accBeta2 = tf.tidy(() => tf.variable(tf.scalar(BETA2), false));
    this.negLr = template.map((w) => tf.tensor(rates.map((r) => -r), broadcast(w.shape.length)));
  }

  /** Forward of every copy on `x` ([n, …] shared by all, or [R, n, …]), in training mode or not. */
  private forward(stages: readonly Stage[], x: tf.Tensor, weights: readonly tf.Tensor[], training: boolean): tf.Tensor {
    let h = x;
    let w = 0;
    for (const s of stages) {
      if (s.kind === 'flatten') h = tf.reshape(h, [h.shape[0]!, -1]);
      else if (s.kind === 'dropout') {
        // The sequential step draws a [n, units] mask per dropout layer from the seeded Math.random;
        // noise shape [1, n, units] draws the same values once and shares them by all copies.
        if (training && s.rate > 0 && s.rate < 1) h = tf.dropout(h, s.rate, h.rank === 2 ? h.shape : [1, ...h.shape.slice(1)], s.seed);
      } else {
        const kernel = weights[w++]!;
        // A shared [n, in] input multiplies every copy's kernel: broadcast over the copies' axis.
        h = tf.matMul(h.rank === 2 ? tf.expandDims(h, 0) : h, kernel);
        if (s.bias) h = tf.add(h, tf.expandDims(weights[w++]!, 1));
        h = s.activation(h);
      }
    }
    return h;
  }

  /** Inference-mode outputs of every copy on `x`, [R, n, k] row-major. */
  predict(stages: readonly Stage[], x: tf.Tensor): Float32Array {
    return tf.tidy(() => this.forward(stages, x, this.weights, false).dataSync() as Float32Array);
  }

  /**
   * One step of every copy on a batch: the summed loss's gradients, then Adam. Returns the copies'
   * batch losses (loss plus penalty, as `trainStep` reports it) followed by their correct counts.
   */
  step(stages: readonly Stage[], batch: { x: Float32Array; labels: number[]; targets?: Float32Array }, k: number, fit: LockstepOptions): Float32Array {
    const n = batch.labels.length;
    const task = fit.task ?? 'classify';
    const { classWeights, weightDecay = 0, labelSmoothing = 0 } = fit;
    return tf.tidy(() => {
      const x = tf.tensor(batch.x, [n, ...this.sampleShape]);
      const labels = tf.tensor1d(batch.labels, 'int32');
      let y: tf.Tensor;
      if (task !== 'classify') y = tf.tensor2d(batch.targets!, [n, k]);
      else {
        const onehot = tf.oneHot(labels, k).toFloat();
        y = labelSmoothing > 0 ? tf.add(tf.mul(onehot, 1 - labelSmoothing), labelSmoothing / k) : onehot;
      }
      let perCopy: tf.Tensor1D | undefined;
      let predicted: tf.Tensor | undefined;
      const { grads } = tf.variableGrads(() => {
        const p = this.forward(stages, x, this.weights, true);
        predicted = tf.keep(p);
        let losses: tf.Tensor1D;
        if (task === 'classify') {
          const perSample = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1));
          losses = classWeights ? tf.div(tf.sum(tf.mul(perSample, tf.gather(tf.tensor1d([...classWeights]), labels)), -1), n) : tf.mean(perSample, -1);
        } else {
          losses = tf.mean(perSampleTaskLoss(p, y, { task, regressionLoss: fit.regressionLoss, positiveWeights: fit.positiveWeights }), -1);
        }
        const kernels = this.weights.filter((_, i) => this.isKernel[i]);
        if (weightDecay > 0 && kernels.length > 0) losses = tf.add(losses, tf.mul(weightDecay, tf.addN(kernels.map((w) => tf.sum(tf.square(w), [1, 2])))));
        perCopy = tf.keep(losses);
        return tf.sum(losses);
      }, this.weights);
      this.apply(this.weights.map((w) => grads[w.name]!));
      const p = predicted!;
      const correct =
        task === 'classify'
          ? tf.sum(tf.equal(tf.argMax(p, -1), labels).toFloat(), -1)
          : task === 'multilabel'
            ? tf.sum(tf.mean(tf.equal(tf.greaterEqual(p, 0.5), tf.equal(y, 1)).toFloat(), -1), -1)
            : tf.sum(tf.sub(1, tf.mean(tf.square(tf.sub(p, y)), -1)), -1);
      const out = tf.concat([perCopy!, correct]).dataSync() as Float32Array;
      p.dispose();
      perCopy!.dispose();
      return out;
    });
  }

  /** Which stacked weights are kernels (weight decay's `/kernel$/` rule): in stage order, a kernel then its bias. */
  private get isKernel(): boolean[] {
    return this.weights.map((w) => w.rank === 3);
  }

  /** `AdamOptimizer.applyGradients`, op for op, with a per-copy step size and frozen copies left as they are. */
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
        const newValue = tf.add(tf.mul(tf.div(biasCorrectedFirstMoment, tf.add(tf.sqrt(biasCorrectedSecondMoment), this.epsilon)), this.negLr[i]!), value);
        // A stopped or diverged copy keeps its weights: its NaN (or its overfitting) stays its own.
        value.assign(this.active ? tf.where(this.active[i]!, newValue, value) : newValue);
      });
      this.accBeta1.assign(tf.mul(this.accBeta1, BETA1));
      this.accBeta2.assign(tf.mul(this.accBeta2, BETA2));
    });
  }

  /** Freezes the copies that are not `active` (from the next step on). */
  setActive(active: readonly boolean[]): void {
    const key = active.map((a) => (a ? 1 : 0)).join('');
    if (key === this.activeKey) return;
    this.activeKey = key;
    for (const t of this.active ?? []) t.dispose();
    this.active = active.every(Boolean) ? undefined : this.weights.map((w) => tf.tensor(active, [active.length, ...new Array<number>(w.rank - 1).fill(1)], 'bool'));
  }

  /** Copies the weights of the `improved` copies into `best` (the early-stopping snapshot). */
  keepBest(improved: readonly boolean[]): void {
    tf.tidy(() => {
      this.weights.forEach((w, i) => {
        const mask = tf.tensor(improved, [improved.length, ...new Array<number>(w.rank - 1).fill(1)], 'bool');
        this.best[i]!.assign(tf.where(mask, w, this.best[i]!));
      });
    });
  }

  /** Per weight, per copy: whether every value is finite. */
  finite(weights: readonly tf.Tensor[]): boolean[][] {
    return weights.map((w) => tf.tidy(() => Array.from(tf.all(tf.reshape(tf.isFinite(w), [w.shape[0]!, -1]), 1).dataSync(), (f) => f === 1)));
  }

  dispose(): void {
    tf.dispose([...this.weights, ...this.best, ...this.m, ...this.v, this.accBeta1, this.accBeta2, ...this.negLr, ...(this.active ?? [])]);
  }
}
