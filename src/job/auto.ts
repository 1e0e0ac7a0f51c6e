import { SplitfitError } from '../errors.js';
import { firstView, subsetFeatureSet } from '../train/feature-set.js';
import type { FitOptions } from '../train/fit.js';
import type { OptimizerName } from '../train/step.js';
import { foldRows, stratifiedFolds } from './folds.js';
import { type HeadContext, type HeadPlan, runTrial, type TrainingSets } from './head-trainer.js';

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
  const trials: AutoTrial[] = [];
  for (const learningRate of rates) {
    const fit: FitOptions = {
      ...a.fit,
      optimizer: a.optimizer,
      learningRate,
      // A given `epochs` is what the final fit runs: score the trial there, not at an earlier best
      // (capped, so that `epochs: 100000` does not make every trial as long as the final fit).
      epochs: Math.min(a.epochs ?? AUTO.maxEpochs, AUTO.maxEpochs),
      ...(a.epochs === undefined ? { earlyStopping: { patience: AUTO.patience, monitor: 'loss' as const } } : {}),
    };
    let trial: AutoTrial;
    try {
      const runs = [];
      for (const split of splits) runs.push(await runTrial(a.ctx, a.plan, split.train, split.val, a.seed, fit));
      const mean = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / xs.length;
      const bests = runs.map((r) => r.bestEpoch).sort((x, y) => x - y);
      trial = { learningRate, epochs: bests[Math.floor(bests.length / 2)]!, valAcc: mean(runs.map((r) => r.valAcc)), valLoss: mean(runs.map((r) => r.valLoss)) };
    } catch (err) {
      if (!(err instanceof SplitfitError && err.code === 'SPLITFIT_NUMERIC')) throw err;
      trial = { learningRate, diverged: err.message };
    }
    trials.push(trial);
    a.onTrial?.(trial);
  }
  const best = trials.filter((t) => t.diverged === undefined).sort((x, y) => x.valLoss! - y.valLoss! || y.valAcc! - x.valAcc!)[0];
  if (!best) {
    throw new SplitfitError('SPLITFIT_NUMERIC', `every learning rate tried diverged (${rates.join(', ')}); give a smaller \`learningRate\``, { option: 'learningRate' });
  }
  return { learningRate: best.learningRate, epochs: a.epochs ?? best.epochs!, chosen, method: 'sweep', holdout: splits[0]!.val.ids.length, holdouts: splits.length, trials };
}
