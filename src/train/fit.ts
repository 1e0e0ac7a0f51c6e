import * as tf from '@tensorflow/tfjs';
import { SplitfitError, throwIfAborted } from '../errors.js';
import { epochSeed } from '../random.js';
import type { BatchSource } from './batches.js';
import type { FeatureSet } from './feature-set.js';
import { perSampleTaskLoss } from './losses.js';
import { classificationMetrics, type Metrics } from './metrics.js';
import { multiLabelMetrics, regressionMetrics } from './task-metrics.js';
import { type LossOptions, makeOptimizer, type OptimizerName, setLearningRate, trainStep } from './step.js';

/** The fit loop over cached features: epochs, validation, early stopping, generation switches. */
export interface EpochLog {
  loss: number;
  acc: number;
  valLoss?: number;
  valAcc?: number;
  valAuc?: number;
  seconds: number;
  /** Generation of the features trained on in this epoch. */
  generation: number;
  /** How many samples were read from each view index in this epoch. */
  viewsRead: number[];
}

export interface History {
  loss: number[];
  acc: number[];
  valLoss?: number[];
  valAcc?: number[];
  valAuc?: number[];
  seconds: number[];
  viewsRead: number[][];
  /** Generations trained on: from which epoch (1-based), and how long training waited for its extraction. */
  generations: { generation: number; startEpoch: number; waitedSeconds: number; extractSeconds?: number }[];
  /** The learning rate of each epoch (constant unless a schedule is set). */
  learningRates: number[];
  /**
   * With early stopping: the epoch (1-based) whose weights were kept — the best monitored value. The
   * returned head holds that epoch's weights, not the last one's.
   */
  bestEpoch?: number;
}

export const LR_SCHEDULES = ['constant', 'cosine', 'plateau'] as const;
export type LrSchedule = (typeof LR_SCHEDULES)[number];

/** What early stopping watches: the loss (lower is better) or the accuracy (higher, ties broken by the lower loss). */
export type Monitor = 'loss' | 'accuracy';

export interface EarlyStopping {
  patience: number;
  /** An epoch counts as better only when it beats the best by more than this. @default 0 */
  minDelta?: number;
  /** Validation metrics when there is validation data, else the training ones. @default 'loss' */
  monitor?: Monitor;
}

/** Reduce-on-plateau: halve the learning rate after this many epochs without improvement of the monitored loss. */
export const PLATEAU = { patience: 3, factor: 0.5, minLearningRateFraction: 1e-3 } as const;

/** What an epoch reads: training batches and, optionally, in-memory validation features. */
export interface Feed {
  source: BatchSource;
  valSet: FeatureSet | undefined;
}

/** How the loop moves to a new generation of augmented views (see `job/refresh.ts`). */
export interface Refresher {
  every: number;
  /** Extracts generation `g` (called in the background while the previous one trains). */
  extract(generation: number): Promise<number>;
  /** Called once `g` is complete and before it is read; `g - 1` is no longer needed. */
  commit(generation: number): Promise<void>;
  feed(generation: number): Promise<Feed>;
}

export interface FitOptions extends LossOptions {
  epochs: number;
  batchSize: number;
  optimizer: OptimizerName;
  learningRate: number;
  /** `cosine`: `lr · ½(1 + cos(π·e/epochs))` at epoch e (0-based); `plateau`: see `PLATEAU`. @default 'constant' */
  lrSchedule?: LrSchedule | undefined;
  /** Stops after `patience` epochs without improvement and restores the best epoch's weights (`History.bestEpoch`). */
  earlyStopping?: EarlyStopping | undefined;
  /** Seeds the dropout masks of every step (see `withSeededRandom`). @default 0 */
  seed?: number | undefined;
  signal?: AbortSignal | undefined;
  onEpoch?: (epoch: number, log: EpochLog) => void;
  onGeneration?: (g: History['generations'][number]) => void;
}

/** Lets timers and I/O callbacks (a background extraction) run between training steps. */
const yieldToEventLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Trains `head` for up to `epochs` epochs on `firstFeed` (generation `firstGeneration`), moving to
 * the next generation every `refresher.every` epochs. A non-finite loss stops training with
 * `SPLITFIT_NUMERIC`: a diverged head is never returned as a result.
 */
export async function fitEpochs(head: tf.LayersModel, firstFeed: Feed, firstGeneration: number, refresher: Refresher | undefined, k: number, o: FitOptions): Promise<History> {
  const optimizer = makeOptimizer(o.optimizer, o.learningRate);
  const history: History = {
    loss: [],
    acc: [],
    seconds: [],
    viewsRead: [],
    generations: [{ generation: firstGeneration, startEpoch: 1, waitedSeconds: 0 }],
    learningRates: [],
    ...(firstFeed.valSet ? { valLoss: [], valAcc: [], valAuc: [] } : {}),
  };
  let feed = firstFeed;
  let generation = firstGeneration;
  let next: Promise<number> | undefined;
  const tracker = o.earlyStopping ? new BestTracker(head, o.earlyStopping) : undefined;
  const plateau = o.lrSchedule === 'plateau' ? new BestTracker(undefined, { patience: PLATEAU.patience }) : undefined;
  let lr = o.learningRate;
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      throwIfAborted(o.signal);
      if (refresher && epoch > 0 && epoch % refresher.every === 0) {
        const t = performance.now();
        const extractSeconds = await next!;
        next = undefined;
        const waitedSeconds = (performance.now() - t) / 1000;
        generation++;
        await refresher.commit(generation);
        feed = await refresher.feed(generation);
        const g = { generation, startEpoch: epoch + 1, waitedSeconds, extractSeconds };
        history.generations.push(g);
        o.onGeneration?.(g);
      }
      if (refresher && epoch % refresher.every === 0 && epoch + refresher.every < o.epochs) {
        // Extract the next generation while this one trains; a failure surfaces when it is awaited.
        next = refresher.extract(generation + 1);
        next.catch(() => undefined);
      }
      if (o.lrSchedule === 'cosine') lr = o.learningRate * 0.5 * (1 + Math.cos((Math.PI * epoch) / o.epochs));
      setLearningRate(optimizer, lr);
      history.learningRates.push(lr);
      const log = await runEpoch(head, optimizer, feed, epoch, generation, k, o, next !== undefined);
      history.loss.push(log.loss);
      history.acc.push(log.acc);
      history.seconds.push(log.seconds);
      history.viewsRead.push(log.viewsRead);
      if (log.valLoss !== undefined) history.valLoss!.push(log.valLoss);
      if (log.valAcc !== undefined) history.valAcc!.push(log.valAcc);
      if (log.valAuc !== undefined) history.valAuc!.push(log.valAuc);
      o.onEpoch?.(epoch + 1, log);
      if (plateau && !plateau.update(epoch + 1, log) && plateau.sinceBest >= PLATEAU.patience) {
        lr = Math.max(lr * PLATEAU.factor, o.learningRate * PLATEAU.minLearningRateFraction);
        plateau.sinceBest = 0;
      }
      if (tracker && !tracker.update(epoch + 1, log) && tracker.sinceBest >= tracker.patience) break;
    }
    // Early stopping may leave an extraction running: let it finish so the cache closes cleanly.
    if (next) await next;
    if (tracker) history.bestEpoch = tracker.restore();
  } finally {
    if (next) await next.catch(() => undefined);
    tracker?.dispose();
    optimizer.dispose();
  }
  assertFiniteWeights(head, o.learningRate);
  return history;
}

async function runEpoch(
  head: tf.LayersModel,
  optimizer: tf.Optimizer,
  feed: Feed,
  epoch: number,
  generation: number,
  k: number,
  o: FitOptions,
  extracting: boolean,
): Promise<EpochLog> {
  const t0 = performance.now();
  let lossSum = 0;
  let correct = 0;
  let n = 0;
  const viewsRead: number[] = [];
  let step = 0;
  for await (const batch of feed.source.batches(epoch)) {
    const r = trainStep(head, optimizer, batch, k, o, (epochSeed(o.seed ?? 0, epoch) ^ Math.imul(++step, 0x9e3779b1)) >>> 0);
    if (!Number.isFinite(r.loss)) {
      throw new SplitfitError(
        'SPLITFIT_NUMERIC',
        `training diverged in epoch ${epoch + 1}: the loss is ${r.loss} (learningRate ${o.learningRate}, optimizer ${o.optimizer}); nothing was written — use a smaller learningRate`,
      );
    }
    lossSum += r.loss * batch.labels.length;
    correct += r.correct;
    n += batch.labels.length;
    for (const v of batch.views) viewsRead[v] = (viewsRead[v] ?? 0) + 1;
    if (extracting || feed.source.mode === 'stream') await yieldToEventLoop();
    throwIfAborted(o.signal);
  }
  // At least once an epoch, so a signal handler (the CLI's SIGINT) runs during in-memory training.
  await yieldToEventLoop();
  const log: EpochLog = { loss: lossSum / n, acc: correct / n, seconds: 0, generation, viewsRead: Array.from(viewsRead, (c) => c ?? 0) };
  if (feed.valSet) {
    const m = evaluateHead(head, feed.valSet, k, o.batchSize, o);
    log.valLoss = m.loss;
    log.valAcc = m.accuracy;
    if (m.auc !== undefined) log.valAuc = m.auc;
  }
  log.seconds = (performance.now() - t0) / 1000;
  return log;
}

/**
 * Whether an epoch's monitored values beat the best so far (the early-stopping rule, also used by
 * `batched-trials.ts`): lower loss by more than `minDelta`, or with `monitor: 'accuracy'` higher
 * accuracy by more than `minDelta`, ties broken by the lower loss.
 */
export function improves(rule: EarlyStopping, now: { loss: number; acc: number }, best: { loss: number; acc: number } | undefined): boolean {
  const d = rule.minDelta ?? 0;
  if (best === undefined) return true;
  return rule.monitor === 'accuracy' ? now.acc > best.acc + d || (now.acc === best.acc && now.loss < best.loss) : now.loss < best.loss - d;
}

/**
 * The best epoch so far of a monitored metric and, when given a head, a copy of its weights then
 * (trainable and not: BN statistics are part of what the epoch produced).
 */
class BestTracker {
  readonly patience: number;
  sinceBest = 0;
  private best: { epoch: number; loss: number; acc: number } | undefined;
  private snapshot: tf.Tensor[] | undefined;

  constructor(
    private readonly head: tf.LayersModel | undefined,
    private readonly rule: EarlyStopping,
  ) {
    this.patience = rule.patience;
  }

  /** Records an epoch; true when it is the new best. */
  update(epoch: number, log: EpochLog): boolean {
    const now = { epoch, loss: log.valLoss ?? log.loss, acc: log.valAcc ?? log.acc };
    if (!improves(this.rule, now, this.best)) {
      this.sinceBest++;
      return false;
    }
    this.best = now;
    this.sinceBest = 0;
    if (this.head) {
      this.dispose();
      this.snapshot = this.head.weights.map((w) => w.read().clone());
    }
    return true;
  }

  /** Puts the best epoch's weights back into the head; returns that epoch (0 if none ran). */
  restore(): number {
    if (this.head && this.snapshot) this.head.weights.forEach((w, i) => w.write(this.snapshot![i]!));
    return this.best?.epoch ?? 0;
  }

  dispose(): void {
    for (const t of this.snapshot ?? []) t.dispose();
    this.snapshot = undefined;
  }
}

/** A head whose weights hold NaN or ±Infinity predicts garbage: refuse it before it is written. */
function assertFiniteWeights(head: tf.LayersModel, learningRate: number): void {
  for (const w of head.trainableWeights) {
    const finite = tf.tidy(() => tf.all(tf.isFinite(w.read())).dataSync()[0] === 1);
    if (!finite) {
      throw new SplitfitError('SPLITFIT_NUMERIC', `training diverged: weight ${w.name} holds NaN or Infinity (learningRate ${learningRate}); nothing was written — use a smaller learningRate`);
    }
  }
}

/**
 * Inference-mode metrics of a head on in-memory features. Classify: cross-entropy, accuracy, AUC.
 * Multilabel: the training loss, per-label accuracy at 0.5 (1 − Hamming loss) and macro AUC.
 * Regress: the training loss (standardised units) and, as `accuracy`, R² (mean over targets; R² is
 * the same in standardised and in the target's units). Higher `accuracy` is better in every task.
 */
export function evaluateHead(head: tf.LayersModel, set: FeatureSet, k: number, batchSize = 256, loss: LossOptions = {}): Metrics {
  const n = set.ids.length;
  const out = tf.tidy(() => {
    const x = tf.tensor(set.x, [n, ...set.featureShape]);
    return (head.predict(x, { batchSize }) as tf.Tensor).dataSync() as Float32Array;
  });
  return metricsOfOutputs(out, set, k, loss);
}

/** {@link evaluateHead}'s metrics of a head's inference-mode outputs `out` ([n × k], row-major) on `set`. */
export function metricsOfOutputs(out: Float32Array, set: FeatureSet, k: number, loss: LossOptions = {}): Metrics {
  const n = set.ids.length;
  const task = loss.task ?? 'classify';
  if (task === 'classify') return classificationMetrics(out, set.labels, k);
  const targets = targetsOfSet(set);
  const lossValue = tf.tidy(() => tf.mean(perSampleTaskLoss(tf.tensor2d(out, [n, k]), tf.tensor2d(targets, [n, k]), { task, regressionLoss: loss.regressionLoss, positiveWeights: loss.positiveWeights })).dataSync()[0]!);
  if (task === 'multilabel') {
    const m = multiLabelMetrics(out, targets, Array.from({ length: k }, (_, j) => String(j)));
    return { loss: lossValue, accuracy: 1 - m.hammingLoss, ...(m.macroAuc === undefined ? {} : { auc: m.macroAuc }) };
  }
  const m = regressionMetrics(out, targets, Array.from({ length: k }, (_, j) => String(j)));
  return { loss: lossValue, accuracy: m.r2 ?? 0 };
}

function targetsOfSet(set: FeatureSet): Float32Array {
  if (set.targets === undefined) throw new TypeError('evaluateHead: a multilabel or regress feature set needs targets');
  return set.targets;
}
