import type * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';
import { type FunctionalJson, functionalJson, type LayerJson } from './graph.js';
import { copyWeightsByName, modelFromConfig } from './split.js';

/**
 * Joins a base and a head into one flat LayersModel (no nested models), which stock
 * `tf.loadLayersModel` loads and whose `predict(x)` equals `head.predict(base.predict(x))`.
 * Base layers stay frozen (`trainable: false`); the head's are as trained.
 */
export async function stitch(base: tf.LayersModel, head: tf.LayersModel, name = 'splitfit_model'): Promise<tf.LayersModel> {
  const b = functionalJson(base);
  const h = functionalJson(head);
  if (b.output_layers.length !== 1 || h.input_layers.length !== 1) {
    throw new TypeError('stitch needs a single-output base and a single-input head');
  }
  const [boundaryRef] = b.output_layers as [[string, number, number]];
  const [[headInput]] = h.input_layers as [[string, number, number]];
  const baseNames = new Set(b.layers.map((l) => l.name));
  const clash = h.layers.find((l) => l.name !== headInput && baseNames.has(l.name));
  if (clash) {
    throw new SplitfitError('SPLITFIT_HEAD_SPEC', `head layer "${clash.name}" has the same name as a base layer; rename it`);
  }
  const rewire = (ref: LayerJson['inbound_nodes'][number][number]): LayerJson['inbound_nodes'][number][number] =>
    ref[0] === headInput ? [boundaryRef[0], boundaryRef[1], boundaryRef[2], ref[3] ?? {}] : ref;
  const config: FunctionalJson = {
    name,
    layers: [
      ...b.layers.map((l) => ({ ...l, config: { ...l.config, trainable: false } })),
      ...h.layers.filter((l) => l.name !== headInput).map((l) => ({ ...l, inbound_nodes: l.inbound_nodes.map((n) => n.map(rewire)) })),
    ],
    input_layers: b.input_layers,
    output_layers: h.output_layers.map((r) => (r[0] === headInput ? boundaryRef : r)),
  };
  const model = await modelFromConfig(config);
  copyWeightsByName([base, head], model);
  return model;
}
