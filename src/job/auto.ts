import { SplitfitError } from '../errors.js';
import { firstView, subsetFeatureSet } from '../train/feature-set.js';
import { fitInLockstep, type LockstepOptions } from '../train/batched-trials.js';
import type { FeatureSet } from '../train/feature-set.js';
import type { FitOptions } from '../train/fit.js';
import type { OptimizerName } from '../train/step.js';
import { foldRows, stratifiedFolds } from './folds.js';
import { buildTrainable, type HeadContext, type HeadPlan, runTrial, type TrainingSets } from './head-trainer.js';

/**
 * Automatic learning rate and length. Epochs on cached features are almost free, so instead of a
 * fixed 10 epochs at 1e-3, a short seeded sweep over learning rates runs on internal hold-outs of
 * the *training* data (stratified fifths, used in turn until they hold 200 samples together, at
 * most three; the user's validation data is never used), each trial with early stopping on the
 * hold-out loss and its best epoch restored. The learning rate with the lowest hold-out loss
 * averaged over the hold-outs, with the median of their best epochs, is then trained on all the
 * training data by the ordinary fit. One hold-out of a few dozen samples picked poorly (measured in
 * bench/heads.ts: InceptionV3 on the aside task chose lr 3e-2 for 7 epochs, 0.563 held out, where
 * three hold-outs chose lr 1e-2 for 28 epochs, 0.621); more hold-outs cost proportionally more
 * (cheap) epochs, so large data sets, whose one fifth is already a few hundred samples, use one.
 * Loss, not accuracy: on a hold-out of a few dozen samples accuracy moves in steps of several points
 * and picks overfitted lengths (measured in bench/heads.ts), the loss is smooth.
 * A hold-out's learning rates train in lockstep, as one computation (`train/batched-trials.ts`),
 * when the head and optimizer allow it (Dense/Dropout heads, Adam, constant rate); else one by one.
 */
export const AUTO = {
  /** Tried for Adam and RMSProp; ×10 for SGD and Adagrad, which take larger steps. */
  learningRates: [1e-3, 3e-3, 1e-2, 3e-2],
  maxEpochs: 100,
  patience: 10,
  /** Each hold-out is one of this many stratified folds … */
  holdoutFolds: 5,
  /** … and up to this many of them are used in turn, until they hold `minHeldOut` samples together. */
  maxHoldouts: 3,
  minHeldOut: 200,
  /** Fewer training samples than this leave no useful hold-out: the fixed fallback is used. */
  minSamples: 10,
  fallback: { learningRate: 1e-3, epochs: 10 },
} as const;

export interface AutoTrial {
  learningRate: number;
  /** The epochs the final fit would run: the median over the hold-outs of the epoch with the lowest loss. */
  epochs?: number;
  valAcc?: number;
  valLoss?: number;
  /** Why the trial was skipped: its `SPLITFIT_NUMERIC` message. */
  diverged?: string;
}

/** What train-head chose on its own, recorded in history.json, splitfit.json and `--json`. */
export interface AutoChoice {
  learningRate: number;
  epochs: number;
  /** Which of the two were chosen here; the others were given explicitly. */
  chosen: ('learningRate' | 'epochs')[];
  /** `sweep`: chosen on the hold-out; `fallback`: too few samples or features not in memory, fixed values used. */
  method: 'sweep' | 'fallback';
  /** Size of one hold-out (samples of the training data) the sweep scored on. */
  holdout: number;
  /** How many hold-outs each learning rate was scored on (0 for the fallback). */
  holdouts: number;
  trials: AutoTrial[];
  /** Present when the learning rates were trained in lockstep, all of a hold-out's at once (`train/batched-trials.ts`); absent when they ran one by one. */
  batched?: true;
}

export interface AutoInput {
  ctx: HeadContext;
  plan: HeadPlan;
  /** The training features in memory; undefined when they are streamed (the fallback is used). */
  sets: TrainingSets | undefined;
  learningRate: number | undefined;
  epochs: number | undefined;
  optimizer: OptimizerName;
  seed: number;
  /** Everything else of the final fit (batch size, loss options, schedule, signal). */
  fit: Omit<FitOptions, 'epochs' | 'learningRate' | 'optimizer' | 'earlyStopping' | 'onEpoch' | 'onGeneration'>;
  /** The learning rates swept. @default AUTO.learningRates (×10 for SGD and Adagrad) */
  learningRates?: readonly number[];
  onTrial?: (trial: AutoTrial) => void;
}

export async function chooseAutomatically(a: AutoInput): Promise<AutoChoice> {
  const chosen = [...(a.learningRate === undefined ? ['learningRate' as const] : []), ...(a.epochs === undefined ? ['epochs' as const] : [])];
  const n = a.sets?.maps.ids.length ?? 0;
  if (a.sets === undefined || n < AUTO.minSamples) {
    return { learningRate: a.learningRate ?? AUTO.fallback.learningRate, epochs: a.epochs ?? AUTO.fallback.epochs, chosen, method: 'fallback', holdout: 0, holdouts: 0, trials: [] };
  }
  const all = a.sets.for(a.plan);
  const folds = stratifiedFolds(all.labels, AUTO.holdoutFolds, a.seed);
  const holdouts = Math.min(AUTO.maxHoldouts, Math.max(1, Math.ceil(AUTO.minHeldOut / (n / AUTO.holdoutFolds))));
  const splits = Array.from({ length: holdouts }, (_, f) => {
    const { train, val } = foldRows(folds, f);
    return { train: subsetFeatureSet(all, train), val: firstView(subsetFeatureSet(all, val)) };
  });
  const scale = a.optimizer === 'sgd' || a.optimizer === 'adagrad' ? 10 : 1;
  const rates = a.learningRate !== undefined ? [a.learningRate] : (a.learningRates ?? AUTO.learningRates.map((r) => r * scale));
  const fit: LockstepOptions = {
    ...a.fit,
    optimizer: a.optimizer,
    // A given `epochs` is what the final fit runs: score the trial there, not at an earlier best
    // (capped, so that `epochs: 100000` does not make every trial as long as the final fit).
    epochs: Math.min(a.epochs ?? AUTO.maxEpochs, AUTO.maxEpochs),
    ...(a.epochs === undefined ? { earlyStopping: { patience: AUTO.patience, monitor: 'loss' as const } } : {}),
  };
  const batched = rates.length > 1 ? await sweepInLockstep(a, splits, rates, fit) : undefined;
  const trials: AutoTrial[] = batched ?? [];
  if (batched) for (const trial of batched) a.onTrial?.(trial);
  else {
    for (const learningRate of rates) {
      let trial: AutoTrial;
      try {
        const runs = [];
        for (const split of splits) runs.push(await runTrial(a.ctx, a.plan, split.train, split.val, a.seed, { ...fit, learningRate }));
        trial = trialOf(learningRate, runs);
      } catch (err) {
        if (!(err instanceof SplitfitError && err.code === 'SPLITFIT_NUMERIC')) throw err;
        trial = { learningRate, diverged: err.message };
      }
      trials.push(trial);
      a.onTrial?.(trial);
    }
  }
  const best = trials.filter((t) => t.diverged === undefined).sort((x, y) => x.valLoss! - y.valLoss! || y.valAcc! - x.valAcc!)[0];
  if (!best) {
    throw new SplitfitError('SPLITFIT_NUMERIC', `every learning rate tried diverged (${rates.join(', ')}); give a smaller \`learningRate\``, { option: 'learningRate' });
  }
  return {
    learningRate: best.learningRate,
    epochs: a.epochs ?? best.epochs!,
    chosen,
    method: 'sweep',
    holdout: splits[0]!.val.ids.length,
    holdouts: splits.length,
    trials,
    ...(batched ? { batched: true as const } : {}),
  };
}

/** A learning rate's score over the hold-outs: mean hold-out loss and accuracy, median best epoch. */
function trialOf(learningRate: number, runs: readonly { bestEpoch: number; valAcc: number; valLoss: number }[]): AutoTrial {
  const mean = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / xs.length;
  const bests = runs.map((r) => r.bestEpoch).sort((x, y) => x - y);
  return { learningRate, epochs: bests[Math.floor(bests.length / 2)]!, valAcc: mean(runs.map((r) => r.valAcc)), valLoss: mean(runs.map((r) => r.valLoss)) };
}

/**
 * The sweep with each hold-out's learning rates trained in lockstep: the trials the sequential loop
 * gives (to float rounding), in one computation per hold-out. A rate that diverges on a hold-out is
 * not run on the later ones, as the sequential loop stops at its first divergence. Undefined, having
 * trained nothing, when the head or the options cannot be batched (then the trials run one by one).
 */
async function sweepInLockstep(a: AutoInput, splits: readonly { train: FeatureSet; val: FeatureSet }[], rates: readonly number[], fit: LockstepOptions): Promise<AutoTrial[] | undefined> {
  const runs = rates.map((): { bestEpoch: number; valAcc: number; valLoss: number }[] => []);
  const diverged = new Map<number, string>();
  for (const split of splits) {
    const alive = rates.flatMap((_, i) => (diverged.has(i) ? [] : [i]));
    if (alive.length === 0) break;
    const t = await buildTrainable(a.ctx, a.plan, a.seed);
    let copies;
    try {
      copies = await fitInLockstep({ head: t.trained, train: split.train, val: split.val, k: a.ctx.numClasses, learningRates: alive.map((i) => rates[i]!), fit: { ...fit, seed: a.seed } });
    } finally {
      t.dispose();
    }
    // Whether a head batches does not depend on the hold-out: only the first one can say no.
    if (copies === undefined) return undefined;
    copies.forEach((c, j) => {
      if (c.diverged !== undefined) diverged.set(alive[j]!, c.diverged);
      else runs[alive[j]!]!.push(c);
    });
  }
  return rates.map((learningRate, i) => (diverged.has(i) ? { learningRate, diverged: diverged.get(i)! } : trialOf(learningRate, runs[i]!)));
}
