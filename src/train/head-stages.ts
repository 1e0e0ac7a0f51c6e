import * as tf from '@tensorflow/tfjs';

/**
 * A small head read as a chain of stages (a leading Flatten, Dropout and Dense layers), decided from
 * the built model: what the lockstep trials (`batched-trials.ts`) and the closed-form step
 * (`softmax-dense.ts`) train without the tape. One reading for both, so they take the same heads and
 * draw the same dropout masks.
 */

/** One layer of a head that trains in lockstep or in closed form. */
export type Stage =
  | { kind: 'flatten' }
  | { kind: 'dropout'; rate: number; seed: number | undefined }
  | { kind: 'dense'; kernel: tf.LayerVariable; bias: tf.LayerVariable | undefined; activation: (x: tf.Tensor) => tf.Tensor; softmax: boolean };

/**
 * The head as stages, or why it is not such a chain. Decided from the built model, not its spec: a
 * single-input chain whose layers are an input, an optional Flatten right after it, then Dense and
 * Dropout layers without regularizers, constraints or a noise shape.
 */
export function stagesOf(head: tf.LayersModel): Stage[] | string {
  if (head.inputs.length !== 1 || head.outputs.length !== 1) return 'the head has more than one input or output';
  const [input, ...layers] = head.layers;
  if (input?.getClassName() !== 'InputLayer' || layers.length === 0) return 'the head does not start with its input';
  const stages: Stage[] = [];
  let previous = input;
  // Dense layers take vectors: the input is one, or a leading Flatten makes it one.
  let isVector = head.inputs[0]!.shape.length === 2;
  for (const layer of layers) {
    const inbound = layer.inboundNodes;
    if (inbound.length !== 1 || inbound[0]!.inboundLayers.length !== 1 || inbound[0]!.inboundLayers[0] !== previous) return `layer ${layer.name} is not a plain chain link`;
    if (layer.nonTrainableWeights.length > 0 || !layer.trainable) return `layer ${layer.name} has non-trainable weights`;
    const config = layer.getConfig();
    switch (layer.getClassName()) {
      case 'Flatten':
        if (stages.length > 0) return `layer ${layer.name}: Flatten is batched only right after the input`;
        stages.push({ kind: 'flatten' });
        isVector = true;
        break;
      case 'Dropout':
        if (config['noiseShape'] != null) return `layer ${layer.name} has a noise shape`;
        stages.push({ kind: 'dropout', rate: config['rate'] as number, seed: (config['seed'] as number | null | undefined) ?? undefined });
        break;
      case 'Dense': {
        const extras = ['kernelRegularizer', 'biasRegularizer', 'activityRegularizer', 'kernelConstraint', 'biasConstraint'].filter((key) => config[key] != null);
        if (extras.length > 0) return `layer ${layer.name} has ${extras.join(', ')}`;
        if (!isVector) return `layer ${layer.name}: a Dense layer on a feature map is not batched`;
        const [kernel, bias, ...rest] = layer.trainableWeights;
        const useBias = config['useBias'] !== false;
        if (kernel === undefined || rest.length > 0 || (bias === undefined) === useBias || kernel.shape.length !== 2) return `layer ${layer.name} has unexpected weights`;
        // tfjs keeps a Dense layer's activation private; applying that very object is what makes the
        // batched forward the layer's own function (softmax on the last axis, elementwise otherwise).
        const fn = (layer as unknown as { activation?: { apply(x: tf.Tensor): tf.Tensor } }).activation;
        stages.push({ kind: 'dense', kernel, bias, activation: fn ? (x) => fn.apply(x) : (x) => x, softmax: config['activation'] === 'softmax' });
        break;
      }
      default:
        return `layer ${layer.name} is a ${layer.getClassName()} (only Dense, Dropout and a leading Flatten are batched)`;
    }
    previous = layer;
  }
  if (head.outputLayers[0] !== previous) return 'the head’s output is not its last layer';
  if (!stages.some((s) => s.kind === 'dense')) return 'the head has no Dense layer';
  return stages;
}

/** tf.dropout's own arithmetic on uniform draws `u`: `floor(u + keep) / keep`, the kept inputs scaled up. */
export const keepMultiplier = (u: tf.Tensor, rate: number): tf.Tensor => tf.div(tf.floor(tf.add(u, 1 - rate)), 1 - rate);

/**
 * A Dropout stage on the input every copy shares ([n, units], before the first Dense layer), in
 * training mode: one tensor when the copies drop alike (the sequential step's own `tf.dropout` draws),
 * else one input per copy, each its own rate on the same draws (a rate of 0: the input untouched).
 */
export function dropInput(h: tf.Tensor, s: Extract<Stage, { kind: 'dropout' }>, dropoutRates: readonly number[] | undefined): tf.Tensor | tf.Tensor[] {
  if (dropoutRates === undefined || dropoutRates.every((r) => r === dropoutRates[0])) {
    const rate = dropoutRates?.[0] ?? s.rate;
    return rate > 0 && rate < 1 ? tf.dropout(h, rate, h.shape, s.seed) : h;
  }
  const u = tf.randomUniform(h.shape, 0, 1, 'float32', s.seed);
  return dropoutRates.map((rate) => (rate > 0 ? tf.mul(h, keepMultiplier(u, rate)) : h));
}
