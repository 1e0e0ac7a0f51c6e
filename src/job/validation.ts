import type { FeatureCache } from '../cache/feature-cache.js';
import { openDataSource } from '../data/sources.js';
import { SplitfitError } from '../errors.js';
import { extractFeatures } from '../extract/extract.js';
import type { PreparedBase } from '../extract/prepare.js';
import type { RunMeta } from '../extract/run-meta.js';
import { epochSeed, rng, shuffled } from '../random.js';

/** A cached sample and its label index (0 for multilabel and regress, whose target is `y`, in the run's `labels` order). */
export interface LabeledId {
  id: string;
  label: number;
  y?: number[];
}

/**
 * A seeded hold-out of `fraction` of the samples (none for 0). Both parts must be non-empty:
 * a split that leaves nothing to train on is bad input, not a run.
 */
export function splitValidation(samples: readonly LabeledId[], fraction: number, seed: number): { train: LabeledId[]; validation: LabeledId[] } {
  if (fraction === 0) return { train: [...samples], validation: [] };
  const order = shuffled(samples, rng(epochSeed(seed, -1)));
  const nVal = Math.max(1, Math.round(order.length * fraction));
  if (nVal >= order.length) {
    throw new SplitfitError('SPLITFIT_USAGE', `\`validationSplit\` ${fraction} holds out ${nVal} of ${order.length} samples and leaves none to train on; use a smaller fraction`, {
      option: 'validationSplit',
    });
  }
  return { train: order.slice(0, order.length - nVal), validation: order.slice(order.length - nVal) };
}

/**
 * Extracts a separate validation data set with the job's base into the same cache. It is recorded as
 * a data set of its own, never as the cache's current training run.
 */
export async function extractValidationData(
  cache: FeatureCache,
  run: RunMeta,
  base: PreparedBase,
  spec: string,
  batchSize: number | undefined,
  signal: AbortSignal | undefined,
): Promise<LabeledId[]> {
  const task = run.task ?? 'classify';
  const source = await openDataSource(spec, task === 'classify' ? {} : { task, ...(task === 'multilabel' ? { knownLabels: run.labels } : {}) });
  const unknown = source.labels.filter((l) => !run.labels.includes(l));
  if (task === 'regress' && source.labels.join('\u0000') !== run.labels.join('\u0000')) {
    throw new SplitfitError('SPLITFIT_USAGE', `\`validationData\` ${spec} has the targets [${source.labels.join(', ')}], the training data [${run.labels.join(', ')}]; give the same target columns`, { option: 'validationData' });
  }
  if (unknown.length > 0 && task === 'classify') {
    throw new SplitfitError('SPLITFIT_USAGE', `\`validationData\` ${spec} has classes the training data lacks: ${unknown.join(', ')}`, { option: 'validationData' });
  }
  await extractFeatures({ model: base.source, prepared: base, data: source, cache, record: 'data', ...(batchSize ? { batchSize } : {}), ...(signal ? { signal } : {}) });
  if (task === 'multilabel') return source.samples.map((s) => ({ id: s.id, label: 0, y: run.labels.map((l) => (s.labelSet!.includes(l) ? 1 : 0)) }));
  if (task === 'regress') return source.samples.map((s) => ({ id: s.id, label: 0, y: [...s.values!] }));
  return source.samples.map((s) => ({ id: s.id, label: run.labels.indexOf(s.label!) }));
}

/**
 * Per-class loss weights: `balanced` (n / (k · count)), the user's list, or none. Weights that give
 * every training sample weight 0 would train nothing: that is bad input.
 */
export function classWeightsFor(spec: 'balanced' | readonly number[] | undefined, train: readonly LabeledId[], k: number): number[] | undefined {
  if (train.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', 'no training samples with cached features');
  if (spec === undefined) return undefined;
  let weights: number[];
  if (spec === 'balanced') {
    const counts = new Array<number>(k).fill(0);
    for (const s of train) counts[s.label]!++;
    weights = counts.map((c) => (c === 0 ? 0 : train.length / (k * c)));
  } else {
    if (spec.length !== k) {
      throw new SplitfitError('SPLITFIT_USAGE', `\`classWeights\` needs ${k} numbers (one per class), got [${spec.join(', ')}]`, { option: 'classWeights' });
    }
    weights = [...spec];
  }
  if (train.every((s) => weights[s.label] === 0)) {
    throw new SplitfitError('SPLITFIT_USAGE', `\`classWeights\` [${weights.join(', ')}] give every training sample weight 0: nothing would be trained`, { option: 'classWeights' });
  }
  return weights;
}
