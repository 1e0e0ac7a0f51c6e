import type * as tf from '@tensorflow/tfjs';
import { stat } from 'node:fs/promises';
import { openDataSource, openFiles } from '../data/sources.js';
import type { Sample } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { loadPredictor, predictSamples } from './predictor.js';
import { type ClassificationResult, type TaskResult, taskResult } from './result.js';

/**
 * One image's answer: its file and the task's result — `{file, label, probability, probabilities}`
 * (classify), `{file, labels, probabilities}` (multilabel), `{file, value, values}` (regress). The
 * browser module returns the result alone. The type parameter is the caller's knowledge of the
 * model's task (`predict<RegressionResult>(…)`); the runtime shape follows the model's splitfit.json.
 */
export type Prediction<R extends TaskResult = ClassificationResult> = { file: string } & R;

export interface PredictOptions {
  /** Images per forward pass. @default 32 */
  batchSize?: number;
  /** Stops between batches (`SPLITFIT_INTERRUPTED`). */
  signal?: AbortSignal;
}

/**
 * Answers for image files and folders (classes, label sets or values, as the model's task says) (every image below a folder, copies included: one answer per
 * file) with a stitched model: the one call behind `splitfit predict`.
 */
export async function predict<R extends TaskResult = ClassificationResult>(model: string | tf.LayersModel, inputs: readonly string[], options?: PredictOptions): Promise<{ predictions: Prediction<R>[] }>;
// Last, so that `ReturnType<typeof predict>` is the classification shape (as before tasks existed).
export async function predict(model: string | tf.LayersModel, inputs: readonly string[], options?: PredictOptions): Promise<{ predictions: Prediction[] }>;
export async function predict(model: string | tf.LayersModel, inputs: readonly string[], options: PredictOptions = {}): Promise<{ predictions: Prediction<TaskResult>[] }> {
  if (inputs.length === 0) throw new SplitfitError('SPLITFIT_USAGE', 'no image files given', { option: 'inputs' });
  const p = await loadPredictor(model);
  const samples = await expandInputs(inputs);
  const { probs, k } = await predictSamples(p, samples, options.batchSize ?? 32, options.signal);
  const labels = p.labels ?? Array.from({ length: k }, (_, i) => String(i));
  const spec = { task: p.task?.task ?? 'classify', labels, thresholds: p.task?.thresholds } as const;
  const predictions = samples.map((s, i): Prediction<TaskResult> => ({ file: s.source, ...taskResult(probs.subarray(i * k, (i + 1) * k), spec) }));
  return { predictions };
}

/** Files as given; folders contribute every image below them, copies included (one answer per file). */
async function expandInputs(paths: readonly string[]): Promise<Sample[]> {
  const out: Sample[] = [];
  for (const path of paths) {
    const isDir = await stat(path).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir) {
      out.push(...(await openFiles([path])).samples);
      continue;
    }
    const source = await openDataSource(path, { labels: 'none' });
    out.push(...[...source.samples, ...(source.duplicates ?? [])].sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0)));
  }
  return out;
}
