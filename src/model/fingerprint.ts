import type * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { functionalJson } from './graph.js';

/** Bump when the meaning of cached features changes for the same inputs. */
export const FEATURE_FORMAT_VERSION = 1;

export interface FingerprintInput {
  boundary: string;
  /** [height, width] images are resized to. */
  inputSize: readonly [number, number];
  channels: number;
  /** Stable description of the preprocessing (see `describePreprocess`). */
  preprocess: string;
  dtype: 'float32' | 'float16';
}

/**
 * SHA-256 over everything that shapes the features: the base's topology (layer classes,
 * configs and wiring, not the model's name or trainable flags), its weight bytes, the
 * boundary, input size, preprocessing, feature dtype and the format version.
 */
export function fingerprint(base: tf.LayersModel, input: FingerprintInput): string {
  const hash = createHash('sha256');
  const json = functionalJson(base);
  const topology = json.layers.map((l) => {
    const { trainable: _t, name: _n, ...config } = l.config;
    return { name: l.name, className: l.class_name, config, inbound: l.inbound_nodes };
  });
  hash.update(
    JSON.stringify({
      v: FEATURE_FORMAT_VERSION,
      topology,
      inputs: json.input_layers,
      outputs: json.output_layers,
      boundary: input.boundary,
      inputSize: input.inputSize,
      channels: input.channels,
      preprocess: input.preprocess,
      dtype: input.dtype,
    }),
  );
  for (const layer of base.layers) {
    layer.getWeights().forEach((w, i) => {
      hash.update(`${layer.name}/${i}:${w.dtype}[${w.shape.join(',')}]`);
      const data = w.dataSync();
      hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
  }
  return hash.digest('hex');
}
