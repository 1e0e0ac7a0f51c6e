import * as tf from '@tensorflow/tfjs';
import { openDataSource } from '../data/sources.js';
import type { DataSource } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { loadImages, loadPredictor, type Predictor, predictSamples } from './predictor.js';
import { type CompareModesResult, compareModes } from '../train/compare-modes.js';
import { classificationMetrics, type Metrics } from '../train/metrics.js';

export interface EvaluateOptions {
  /** A stitched model (`model.json`, with `splitfit.json` beside it) or any tfjs LayersModel. */
  model: string | tf.LayersModel;
  data: string | DataSource;
  /** @default 32 */
  batchSize?: number;
  /** Also run the model in training mode on the same data (on a copy) and report the gap. */
  compareModes?: boolean;
  /** Preprocessing when the model has no splitfit.json. @default 'unit' */
  preprocess?: string;
  /** IDX only: names for numeric labels. */
  classNames?: readonly string[];
  /** Stops between batches (`SPLITFIT_INTERRUPTED`). */
  signal?: AbortSignal;
}

export interface EvaluateResult extends Metrics {
  n: number;
  labels: string[];
  modes?: CompareModesResult;
}

export async function evaluate(options: EvaluateOptions): Promise<EvaluateResult> {
  const predictor = await loadPredictor(options.model, options.preprocess === undefined ? {} : { preprocess: options.preprocess });
  const source = typeof options.data === 'string' ? await openDataSource(options.data, options.classNames ? { classNames: options.classNames } : {}) : options.data;
  const labels = predictor.labels ?? source.labels;
  const samples = source.samples.filter((s) => s.label !== undefined);
  if (samples.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `no labeled samples in ${source.root}`);
  const y = samples.map((s) => {
    const i = labels.indexOf(s.label!);
    if (i < 0) throw new SplitfitError('SPLITFIT_USAGE', `class "${s.label}" in ${source.root} is not one the model knows (${labels.join(', ')})`);
    return i;
  });
  // Checked before the forward pass: a mismatch is known without running the model.
  const outputs = predictor.model.outputs[0]!.shape.at(-1);
  if (outputs !== labels.length) {
    throw new SplitfitError('SPLITFIT_USAGE', `the model has ${String(outputs)} outputs but the data has ${labels.length} classes (${labels.join(', ')})`);
  }
  const { probs, k } = await predictSamples(predictor, samples, options.batchSize ?? 32, options.signal);
  const metrics = classificationMetrics(probs, y, k);
  const result: EvaluateResult = { n: samples.length, labels, ...metrics };
  if (options.compareModes) result.modes = await modesOn(predictor, samples, y, k, options.batchSize ?? 32);
  return result;
}

async function modesOn(p: Predictor, samples: DataSource['samples'], y: number[], k: number, batchSize: number): Promise<CompareModesResult> {
  const pixels = await loadImages(samples, p);
  const x = tf.tensor4d(pixels, [samples.length, p.inputSize[0], p.inputSize[1], p.channels]);
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(y, 'int32'), k).toFloat());
  try {
    // Frozen BN alone: a head's own dropout or `bn` is training behaviour the user chose, not the trap.
    return await compareModes(p.model, x, labels, { batchSize, dropout: false, trainableBatchNorm: false });
  } finally {
    x.dispose();
    labels.dispose();
  }
}
