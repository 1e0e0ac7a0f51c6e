import type * as tf from '@tensorflow/tfjs';

/**
 * Per-image working set the batch may take, in bytes. On the 2-core machine of docs/BENCHMARKS.md
 * (32 MiB L3) the compiled MobileNetV2 runs fastest per image at batch 1–8 and ~10–15 % slower
 * from 16 up, once a batch's largest activations (4.8 MB per image at 112×112×96) leave the cache;
 * `predict` is flat from 4 up. 24 MiB keeps the largest activation of a batch cache-sized.
 */
export const BATCH_WORKING_SET_BYTES = 24 * 2 ** 20;
/** Larger batches gain nothing measurable and hold more decoded images in memory. */
export const MAX_AUTO_BATCH = 64;

/** Bytes of the largest layer output of one sample (float32). */
export function largestActivationBytes(base: tf.LayersModel): number {
  let largest = 0;
  for (const layer of base.layers) {
    const shapes = (Array.isArray(layer.outputShape[0]) ? layer.outputShape : [layer.outputShape]) as (number | null)[][];
    for (const s of shapes) largest = Math.max(largest, 4 * s.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1));
  }
  return largest;
}

/**
 * The extraction batch size: the largest power of two whose largest activations fit
 * {@link BATCH_WORKING_SET_BYTES}, within 1…{@link MAX_AUTO_BATCH}. MobileNetV2 at 224×224 → 4;
 * small models → 64. Memory stays bounded too: at most 24 MiB per activation, and the batch of
 * decoded inputs.
 */
export function suggestBatchSize(base: tf.LayersModel): number {
  const perImage = Math.max(1, largestActivationBytes(base));
  let batch = 1;
  while (batch * 2 <= MAX_AUTO_BATCH && batch * 2 * perImage <= BATCH_WORKING_SET_BYTES) batch *= 2;
  return batch;
}
