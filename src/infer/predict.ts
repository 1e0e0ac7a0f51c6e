import type * as tf from '@tensorflow/tfjs';
import { stat } from 'node:fs/promises';
import { openDataSource, openFiles } from '../data/sources.js';
import type { Sample } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { loadPredictor, predictSamples } from './predictor.js';
import { classificationResult, type ClassificationResult } from './result.js';

/** One image's answer: its file and the task's result (the browser module's `classify()` returns the result alone). */
export interface Prediction extends ClassificationResult {
  file: string;
}

export interface PredictOptions {
  /** Images per forward pass. @default 32 */
  batchSize?: number;
  /** Stops between batches (`SPLITFIT_INTERRUPTED`). */
  signal?: AbortSignal;
}

/**
 * Classifies image files and folders (every image below a folder, copies included: one answer per
 * file) with a stitched model: the one call behind `splitfit predict`.
 */
export async function predict(model: string | tf.LayersModel, inputs: readonly string[], options: PredictOptions = {}): Promise<{ predictions: Prediction[] }> {
  if (inputs.length === 0) throw new SplitfitError('SPLITFIT_USAGE', 'no image files given', { option: 'inputs' });
  const p = await loadPredictor(model);
  const samples = await expandInputs(inputs);
  const { probs, k } = await predictSamples(p, samples, options.batchSize ?? 32, options.signal);
  const labels = p.labels ?? Array.from({ length: k }, (_, i) => String(i));
  const predictions = samples.map((s, i) => ({ file: s.source, ...classificationResult(probs.subarray(i * k, (i + 1) * k), labels) }));
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
