import type * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';
import { installBatchNormCompat } from './bn-compat.js';
import { exportBase } from './fold.js';
import { type FunctionalJson, functionalJson, type LayerJson } from './graph.js';
import { copyWeightsByName, modelFromConfig } from './split.js';

export interface StitchOptions {
  /** Name of the stitched model. @default 'splitfit_model' */
  name?: string;
  /**
   * Export the frozen base folded (see `exportBase`): BatchNormalization folded into convs or
   * turned into per-channel affine maps, Dropout dropped, so the base's output is the same under
   * `training: true` and `false` and a further `fit` by the user cannot fall into the frozen-BN
   * trap. `false` keeps the base's original layers (BN and all), e.g. to fine-tune BN later.
   * @default false
   */
  foldBatchNorm?: boolean;
}

/**
 * Joins a base and a head into one flat LayersModel (no nested models), which stock
 * `tf.loadLayersModel` loads and whose `predict(x)` equals `head.predict(base.predict(x))`.
 * Base layers stay frozen (`trainable: false`); the head's are as trained. The third argument
 * may be the model's name (the older form) or a {@link StitchOptions}.
 */
export async function stitch(base: tf.LayersModel, head: tf.LayersModel, options: string | StitchOptions = {}): Promise<tf.LayersModel> {
  const opts = typeof options === 'string' ? { name: options } : options;
  if (opts === null || typeof opts !== 'object') throw new TypeError(`stitch options must be an object, received ${opts === null ? 'null' : typeof opts}.`);
  const name = opts.name ?? 'splitfit_model';
  if (opts.foldBatchNorm !== undefined && typeof opts.foldBatchNorm !== 'boolean') {
    throw new TypeError(`Option \`foldBatchNorm\` must be a boolean, received ${typeof opts.foldBatchNorm}.`);
  }
  if (opts.foldBatchNorm === true) {
    const exported = exportBase(base, { avoidNames: head.layers.map((l) => l.name) });
    try {
      return await join(exported.model, head, name);
    } finally {
      exported.model.dispose();
    }
  }
  return join(base, head, name);
}

async function join(base: tf.LayersModel, head: tf.LayersModel, name: string): Promise<tf.LayersModel> {
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
  // Unfolded scale:false / center:false BN (base or `original:` head) must survive a later fit.
  installBatchNormCompat(model);
  return model;
}
