import type * as tf from '@tensorflow/tfjs';
import type { Task } from '../data/types.js';
import { buildHead, parseHeadSpec } from '../model/head-spec.js';
import { copyWeightsByName } from '../model/split.js';
import { memoryBatches } from '../train/batches.js';
import { type FeatureSet, poolFeatureSet } from '../train/feature-set.js';
import { type FitOptions, fitEpochs, type History } from '../train/fit.js';

/**
 * How a head spec is trained: a head that starts with `gap` on a feature map trains its layers
 * after the `gap` on features pooled once (`pooled`), since pooling is linear and weightless;
 * the exported head keeps its `gap` layer. `flatten` and `original:` heads need the maps.
 */
export interface HeadPlan {
  spec: string;
  /** The spec trained on pooled features (the spec without its leading `gap`), when pooled. */
  pooledSpec?: string;
}

export function planHead(spec: string, featureShape: readonly number[], poolFeatures: boolean): HeadPlan {
  const ops = parseHeadSpec(spec);
  if (!poolFeatures || featureShape.length !== 3 || ops[0]?.kind !== 'gap' || ops.length < 2) return { spec };
  return { spec, pooledSpec: spec.split(',').slice(1).join(',') };
}

/** What building a head needs from the job: the source model, the boundary, the cached feature shape. */
export interface HeadContext {
  source: tf.LayersModel;
  boundary: string;
  featureShape: number[];
  numClasses: number;
  /** The run's task: the head's default spec and output layer. @default 'classify' */
  task?: Task;
}

/** The head to export and the model that is trained (the same model unless pooled). */
export interface TrainableHead {
  head: tf.LayersModel;
  trained: tf.LayersModel;
  /** Moves the trained weights into `head` (a no-op unless pooled). */
  finish(): void;
  dispose(): void;
}

/**
 * Builds the head of `plan` and, when pooled, its post-`gap` part on vectors: same layer names and
 * the same seeded initial weights (a `gap` layer draws no seed), so training either gives one head.
 */
export async function buildTrainable(ctx: HeadContext, plan: HeadPlan, seed: number): Promise<TrainableHead> {
  const task = ctx.task ?? 'classify';
  const head = await buildHead(ctx.source, ctx.boundary, ctx.featureShape, { spec: plan.spec, numClasses: ctx.numClasses, seed, task });
  if (plan.pooledSpec === undefined) return { head, trained: head, finish: () => undefined, dispose: () => head.dispose() };
  const trained = await buildHead(ctx.source, ctx.boundary, [ctx.featureShape[2]!], { spec: plan.pooledSpec, numClasses: ctx.numClasses, seed, task });
  return {
    head,
    trained,
    finish: () => copyWeightsByName([trained], head),
    dispose: () => {
      trained.dispose();
      head.dispose();
    },
  };
}

/** Training features in the two forms a plan may need, pooled lazily and once. */
export class TrainingSets {
  private pooledSet: FeatureSet | undefined;
  constructor(readonly maps: FeatureSet) {}
  for(plan: HeadPlan): FeatureSet {
    if (plan.pooledSpec === undefined) return this.maps;
    this.pooledSet ??= poolFeatureSet(this.maps);
    return this.pooledSet;
  }
}

export interface Trial {
  history: History;
  /** Best monitored epoch (1-based) when early stopping ran, else the last epoch. */
  bestEpoch: number;
  valAcc: number;
  valLoss: number;
}

/**
 * One trial of a plan on in-memory features: a fresh head (seeded), trained on `train`, scored on
 * `val` at the epoch kept (the best one with early stopping). Throws `SPLITFIT_NUMERIC` when it diverges.
 */
export async function runTrial(ctx: HeadContext, plan: HeadPlan, train: FeatureSet, val: FeatureSet, seed: number, fit: FitOptions): Promise<Trial> {
  const t = await buildTrainable(ctx, plan, seed);
  try {
    const history = await fitEpochs(t.trained, { source: memoryBatches(train, fit.batchSize, seed), valSet: val }, 0, undefined, ctx.numClasses, { ...fit, seed });
    const bestEpoch = history.bestEpoch ?? history.loss.length;
    return { history, bestEpoch, valAcc: history.valAcc![bestEpoch - 1]!, valLoss: history.valLoss![bestEpoch - 1]! };
  } finally {
    t.dispose();
  }
}
