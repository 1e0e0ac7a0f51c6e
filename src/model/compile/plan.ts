import type * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../../errors.js';
import { modelGraph } from '../graph.js';

/**
 * The inference plan of a frozen base: its functional graph turned into a list of plain ops in
 * topological order, with BatchNormalization folded into the preceding Conv2D/DepthwiseConv2D/Dense,
 * a following ReLU/ReLU6/activation layer folded into that op's fused activation, and ZeroPadding2D
 * folded into the next convolution's explicit padding. Layers it cannot express stay layers
 * (`fallback` steps) and run through `layer.apply(x, {training: false})`.
 *
 * The plan holds weights as plain arrays (folded in float64, stored as float32), so it can be run
 * op by op on any backend (compile/index.ts) or written out as one TensorFlow graph (compile/graph.ts).
 */

/** Activations a plan step can apply; the first five also fuse into tfjs `tf.fused.*` ops. */
export type PlanActivation = 'linear' | 'relu' | 'relu6' | 'elu' | 'sigmoid' | 'tanh' | 'softmax' | 'softplus' | 'selu';
export const FUSABLE_ACTIVATIONS: ReadonlySet<PlanActivation> = new Set(['linear', 'relu', 'relu6', 'elu', 'sigmoid']);
const ACTIVATIONS: ReadonlySet<string> = new Set(['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'tanh', 'softmax', 'softplus', 'selu']);

/** [[top, bottom], [left, right]] zero padding in pixels. */
export type Padding2D = [[number, number], [number, number]];

export interface PlanWeight {
  data: Float32Array;
  shape: number[];
}

export type PlanStep =
  | { op: 'input'; shape: number[] }
  | {
      op: 'conv2d' | 'depthwiseConv2d';
      kernel: PlanWeight;
      bias?: PlanWeight;
      strides: [number, number];
      dilations: [number, number];
      padding: 'same' | 'valid' | Padding2D;
      activation: PlanActivation;
    }
  | { op: 'dense'; kernel: PlanWeight; bias?: PlanWeight; activation: PlanActivation }
  /**
   * An unfolded inference-mode BatchNormalization: `x·scale + shift`, over the last axis, or over
   * another one when `broadcast` (the per-sample shape scale/shift take, e.g. `[C, 1, 1]`) is set.
   */
  | { op: 'scaleShift'; scale: Float64Array; shift: Float64Array; broadcast?: number[] }
  | { op: 'activation'; activation: PlanActivation }
  | { op: 'pad'; padding: Padding2D }
  | { op: 'add' | 'multiply' | 'subtract' | 'maximum' | 'minimum' | 'average' }
  | { op: 'concat'; axis: number }
  | { op: 'globalAvgPool' | 'globalMaxPool' }
  | { op: 'pool'; kind: 'max' | 'avg'; size: [number, number]; strides: [number, number]; padding: 'same' | 'valid' }
  /** Target shape without the batch dimension, fully known. */
  | { op: 'reshape'; shape: number[] }
  | { op: 'identity' }
  | { op: 'fallback'; layer: tf.layers.Layer };

export interface PlanNode {
  /** Key of the value this node produces: `layer:node:tensor` of the last layer folded into it. */
  key: string;
  inputs: string[];
  step: PlanStep;
  /** The source layers this node computes, in order (a folded conv + BN + ReLU lists three). */
  layers: string[];
}

export interface Plan {
  nodes: PlanNode[];
  input: string;
  output: string;
  /** Layers the plan could not express, run as layers. */
  fallbacks: { layer: string; className: string }[];
  /** What folding did, for reports. */
  folded: { batchNorm: number; activation: number; padding: number };
}

export interface PlanOptions {
  /** Fold BatchNormalization into the preceding conv/dense. @default true */
  foldBatchNorm?: boolean;
  /** Fold ReLU/activation layers into the preceding conv/dense. @default true */
  foldActivation?: boolean;
  /** Which ops take a folded ZeroPadding2D as explicit padding. @default ['conv2d', 'depthwiseConv2d'] */
  foldPadding?: ('conv2d' | 'depthwiseConv2d')[];
}

type Config = Record<string, unknown>;

/**
 * Test hooks: the conformance suite perturbs folding through these to prove that its checks
 * fail when folding is wrong. Never set outside tests.
 * @internal
 */
export const planTestHooks: {
  /** Called with every BN's inference-mode `scale`/`shift` before they are used; may modify them. */
  perturbBatchNorm?: (layer: string, scaleShift: { scale: Float64Array; shift: Float64Array }) => void;
} = {};

const pair = (v: unknown, what: string): [number, number] => {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === 'number')) return [v[0] as number, v[1] as number];
  throw new Error(`${what}: expected a number or a pair, got ${JSON.stringify(v)}`);
};

function weightOf(t: tf.Tensor): PlanWeight {
  // dataSync copies out of the backend; the model's variables are only read.
  return { data: Float32Array.from(t.dataSync() as Float32Array), shape: [...t.shape] };
}

function activationOf(name: unknown): PlanActivation | undefined {
  const a = name === undefined || name === null ? 'linear' : String(name);
  return ACTIVATIONS.has(a) ? (a as PlanActivation) : undefined;
}

/** Rank of the layer's (first) input tensor, batch included. */
function inputRank(layer: tf.layers.Layer): number | undefined {
  const nodes = (layer as unknown as { inboundNodes?: { inputTensors?: { shape: unknown[] }[] }[] }).inboundNodes;
  return nodes?.[0]?.inputTensors?.[0]?.shape.length;
}

/** Inference-mode BN as `x·scale + shift`, computed in float64 (folding rounds to float32 once). */
export function batchNormScaleShift(layer: tf.layers.Layer): { scale: Float64Array; shift: Float64Array } {
  const c = layer.getConfig() as Config;
  const weights = layer.getWeights();
  let i = 0;
  const gamma = c['scale'] === false ? undefined : weights[i++]!.dataSync();
  const beta = c['center'] === false ? undefined : weights[i++]!.dataSync();
  const mean = weights[i++]!.dataSync();
  const variance = weights[i++]!.dataSync();
  const eps = Number(c['epsilon'] ?? 1e-3);
  const scale = new Float64Array(mean.length);
  const shift = new Float64Array(mean.length);
  for (let k = 0; k < mean.length; k++) {
    const s = (gamma === undefined ? 1 : gamma[k]!) / Math.sqrt(variance[k]! + eps);
    scale[k] = s;
    shift[k] = (beta === undefined ? 0 : beta[k]!) - mean[k]! * s;
  }
  planTestHooks.perturbBatchNorm?.(layer.name, { scale, shift });
  return { scale, shift };
}

/** Translates one layer call into a step, or undefined when the plan cannot express it. */
function stepOf(layer: tf.layers.Layer, className: string, nInputs: number): PlanStep | undefined {
  const c = layer.getConfig() as Config;
  const channelsLast = c['dataFormat'] === undefined || c['dataFormat'] === null || c['dataFormat'] === 'channelsLast';
  switch (className) {
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      const activation = activationOf(c['activation']);
      const padding = c['padding'];
      if (!channelsLast || activation === undefined || (padding !== 'same' && padding !== 'valid')) return undefined;
      if (className === 'Conv2D' && Number(c['groups'] ?? 1) !== 1) return undefined;
      const [kernel, bias] = layer.getWeights();
      if (kernel === undefined || kernel.rank !== 4) return undefined;
      return {
        op: className === 'Conv2D' ? 'conv2d' : 'depthwiseConv2d',
        kernel: weightOf(kernel),
        ...(bias === undefined ? {} : { bias: weightOf(bias) }),
        strides: pair(c['strides'] ?? 1, `${layer.name} strides`),
        dilations: pair(c['dilationRate'] ?? 1, `${layer.name} dilationRate`),
        padding,
        activation,
      };
    }
    case 'Dense': {
      const activation = activationOf(c['activation']);
      if (activation === undefined || inputRank(layer) !== 2) return undefined;
      const [kernel, bias] = layer.getWeights();
      if (kernel === undefined) return undefined;
      return { op: 'dense', kernel: weightOf(kernel), ...(bias === undefined ? {} : { bias: weightOf(bias) }), activation };
    }
    case 'BatchNormalization': {
      const rank = inputRank(layer);
      const raw = Number(c['axis'] ?? -1);
      if (rank === undefined || !Number.isInteger(raw)) return undefined;
      const axis = raw < 0 ? raw + rank : raw;
      // Axis 0 is the batch: per-sample statistics are not an affine map the plan can hold.
      if (axis < 1 || axis >= rank) return undefined;
      const ss = batchNormScaleShift(layer);
      if (axis === rank - 1) return { op: 'scaleShift', ...ss };
      const broadcast = Array.from({ length: rank - 1 }, (_, i) => (i === axis - 1 ? ss.scale.length : 1));
      return { op: 'scaleShift', ...ss, broadcast };
    }
    case 'ReLU': {
      const max = c['maxValue'];
      if (max === undefined || max === null) return { op: 'activation', activation: 'relu' };
      return max === 6 ? { op: 'activation', activation: 'relu6' } : undefined;
    }
    case 'Activation': {
      const activation = activationOf(c['activation']);
      return activation === undefined ? undefined : { op: 'activation', activation };
    }
    case 'ZeroPadding2D': {
      if (!channelsLast) return undefined;
      const p = c['padding'] as [[number, number], [number, number]] | undefined;
      if (!Array.isArray(p) || p.length !== 2) return undefined;
      return { op: 'pad', padding: [pair(p[0], 'padding'), pair(p[1], 'padding')] };
    }
    case 'Add':
      return { op: 'add' };
    case 'Multiply':
      return { op: 'multiply' };
    case 'Subtract':
      return { op: 'subtract' };
    case 'Maximum':
      return { op: 'maximum' };
    case 'Minimum':
      return { op: 'minimum' };
    case 'Average':
      return { op: 'average' };
    case 'Concatenate':
      return { op: 'concat', axis: Number(c['axis'] ?? -1) };
    case 'GlobalAveragePooling2D':
      return channelsLast && !c['keepDims'] ? { op: 'globalAvgPool' } : undefined;
    case 'GlobalMaxPooling2D':
      return channelsLast && !c['keepDims'] ? { op: 'globalMaxPool' } : undefined;
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const padding = c['padding'];
      if (!channelsLast || (padding !== 'same' && padding !== 'valid')) return undefined;
      const size = pair(c['poolSize'] ?? 2, `${layer.name} poolSize`);
      return {
        op: 'pool',
        kind: className === 'MaxPooling2D' ? 'max' : 'avg',
        size,
        strides: c['strides'] === undefined || c['strides'] === null ? size : pair(c['strides'], `${layer.name} strides`),
        padding,
      };
    }
    case 'Flatten':
    case 'Reshape': {
      // The resolved output shape: a graph Reshape takes one -1 only, and that is the batch.
      const shape = (layer.outputShape as (number | null)[]).slice(1);
      if (className === 'Flatten' && !channelsLast && inputRank(layer) === 4) return undefined;
      return shape.every((d) => typeof d === 'number' && d > 0) ? { op: 'reshape', shape: shape as number[] } : undefined;
    }
    // Identity at inference: tfjs-layers runs these only when training.
    case 'Dropout':
    case 'SpatialDropout1D':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
    case 'GaussianDropout':
    case 'AlphaDropout':
      return nInputs === 1 ? { op: 'identity' } : undefined;
    default:
      return undefined;
  }
}

/** A SeparableConv2D as a depthwise step (strides, dilation, padding) and a pointwise 1×1 conv step (bias, activation). */
function separableSteps(layer: tf.layers.Layer): [PlanStep, PlanStep] | undefined {
  const c = layer.getConfig() as Config;
  const channelsLast = c['dataFormat'] === undefined || c['dataFormat'] === null || c['dataFormat'] === 'channelsLast';
  const activation = activationOf(c['activation']);
  const padding = c['padding'];
  if (!channelsLast || activation === undefined || (padding !== 'same' && padding !== 'valid')) return undefined;
  const [depthwise, pointwise, bias] = layer.getWeights();
  if (depthwise?.rank !== 4 || pointwise?.rank !== 4) return undefined;
  return [
    {
      op: 'depthwiseConv2d',
      kernel: weightOf(depthwise),
      strides: pair(c['strides'] ?? 1, `${layer.name} strides`),
      dilations: pair(c['dilationRate'] ?? 1, `${layer.name} dilationRate`),
      padding,
      activation: 'linear',
    },
    {
      op: 'conv2d',
      kernel: weightOf(pointwise),
      ...(bias === undefined ? {} : { bias: weightOf(bias) }),
      strides: [1, 1],
      dilations: [1, 1],
      padding: 'valid',
      activation,
    },
  ];
}

/**
 * Builds the inference plan of `base` (a single-input functional model). Each layer call becomes
 * a node keyed `layer:node:0`; folds run afterwards over the consumer counts.
 */
export function buildPlan(base: tf.LayersModel, options: PlanOptions = {}): Plan {
  const graph = modelGraph(base);
  if (graph.config.input_layers.length !== 1 || graph.config.output_layers.length !== 1) {
    throw new TypeError(`compileBase needs a model with one input and one output, got ${graph.config.input_layers.length} and ${graph.config.output_layers.length}`);
  }
  const key = (ref: readonly [string, number, number, ...unknown[]]): string => `${ref[0]}:${ref[1]}:${ref[2]}`;
  const nodes: PlanNode[] = [];
  const fallbacks: Plan['fallbacks'] = [];
  const input = key(graph.config.input_layers[0]!);
  const output = key(graph.config.output_layers[0]!);
  for (const l of graph.config.layers) {
    const layer = base.getLayer(l.name);
    if (l.class_name === 'InputLayer') {
      nodes.push({ key: `${l.name}:0:0`, inputs: [], step: { op: 'input', shape: (layer.batchInputShape ?? []).slice(1).map(Number) }, layers: [l.name] });
      continue;
    }
    l.inbound_nodes.forEach((refs, n) => {
      const inputs = refs.map(key);
      const separable = l.class_name === 'SeparableConv2D' && l.inbound_nodes.length === 1 ? separableSteps(layer) : undefined;
      if (separable) {
        // Two nodes: the depthwise part, then the pointwise 1×1 conv that a following BN folds into.
        const mid = `${l.name}/depthwise:${n}:0`;
        nodes.push({ key: mid, inputs, step: separable[0], layers: [l.name] });
        nodes.push({ key: `${l.name}:${n}:0`, inputs: [mid], step: separable[1], layers: [l.name] });
        return;
      }
      // A layer called more than once (shared) is planned once per call; only single calls are folded.
      const step = l.inbound_nodes.length === 1 ? stepOf(layer, l.class_name, inputs.length) : undefined;
      if (step === undefined && !fallbacks.some((f) => f.layer === l.name)) fallbacks.push({ layer: l.name, className: l.class_name });
      nodes.push({ key: `${l.name}:${n}:0`, inputs, step: step ?? { op: 'fallback', layer }, layers: [l.name] });
    });
  }
  assertFinite(nodes);
  const plan: Plan = { nodes, input, output, fallbacks, folded: { batchNorm: 0, activation: 0, padding: 0 } };
  fold(plan, options);
  return plan;
}

/**
 * Refuses non-finite weights: the plain model propagates a NaN weight into NaN features (which
 * extraction reports), but a fused conv + ReLU can turn NaN into 0 — oneDNN's fused ReLU is
 * max(x, 0) — and hide it.
 */
function assertFinite(nodes: PlanNode[]): void {
  for (const n of nodes) {
    const s = n.step;
    const arrays: ArrayLike<number>[] =
      s.op === 'conv2d' || s.op === 'depthwiseConv2d' || s.op === 'dense'
        ? [s.kernel.data, ...(s.bias ? [s.bias.data] : [])]
        : s.op === 'scaleShift'
          ? [s.scale, s.shift]
          : [];
    for (const a of arrays) {
      for (let i = 0; i < a.length; i++) {
        if (!Number.isFinite(a[i]!)) {
          throw new SplitfitError(
            'SPLITFIT_NUMERIC',
            `layer "${n.layers[0]}" has non-finite weights (NaN or ±Infinity${s.op === 'scaleShift' ? ', or a negative moving variance' : ''}); ` +
              'the compiled base would not reproduce them faithfully — run the plain base (`compiled: false`)',
          );
        }
      }
    }
  }
}

/** Folds pad → conv, conv → BN and conv → activation where the intermediate value has one consumer. */
function fold(plan: Plan, options: PlanOptions): void {
  const foldPadding = new Set(options.foldPadding ?? ['conv2d', 'depthwiseConv2d']);
  const consumers = (): Map<string, PlanNode[]> => {
    const m = new Map<string, PlanNode[]>();
    for (const n of plan.nodes) for (const i of n.inputs) m.set(i, [...(m.get(i) ?? []), n]);
    return m;
  };
  // The one node reading `n`'s value, when it reads nothing else and `n` is not the output.
  const soleConsumer = (n: PlanNode, users: Map<string, PlanNode[]>): PlanNode | undefined => {
    const u = users.get(n.key);
    return n.key !== plan.output && u?.length === 1 && u[0]!.inputs.length === 1 ? u[0] : undefined;
  };
  const remove = (n: PlanNode): void => {
    plan.nodes.splice(plan.nodes.indexOf(n), 1);
  };

  // ZeroPadding2D → 'valid' conv: the padding becomes the conv's explicit padding (exactly equivalent).
  let users = consumers();
  for (const pad of [...plan.nodes]) {
    if (pad.step.op !== 'pad') continue;
    const conv = soleConsumer(pad, users);
    if (conv === undefined || (conv.step.op !== 'conv2d' && conv.step.op !== 'depthwiseConv2d') || !foldPadding.has(conv.step.op)) continue;
    if (conv.step.padding !== 'valid') continue;
    conv.step.padding = pad.step.padding;
    conv.inputs = pad.inputs;
    conv.layers = [...pad.layers, ...conv.layers];
    remove(pad);
    plan.folded.padding++;
  }

  users = consumers();
  for (const node of [...plan.nodes]) {
    const step = node.step;
    if (step.op !== 'conv2d' && step.op !== 'depthwiseConv2d' && step.op !== 'dense') continue;
    // conv → BN: w' = w·s, b' = b·s + t with s = γ/√(σ²+ε), t = β − μ·s (per output channel).
    let next = soleConsumer(node, users);
    if (options.foldBatchNorm !== false && next?.step.op === 'scaleShift' && next.step.broadcast === undefined && step.activation === 'linear') {
      const out = step.kernel.shape.at(-1)! * (step.op === 'depthwiseConv2d' ? step.kernel.shape.at(-2)! : 1);
      const { scale, shift } = next.step;
      if (scale.length === out) {
        foldScaleShift(step, scale, shift, out);
        node.key = next.key;
        node.layers = [...node.layers, ...next.layers];
        remove(next);
        plan.folded.batchNorm++;
        users = consumers();
        next = soleConsumer(node, users);
      }
    }
    // conv → ReLU/ReLU6/activation: becomes the fused activation.
    if (options.foldActivation !== false && next?.step.op === 'activation' && step.activation === 'linear' && FUSABLE_ACTIVATIONS.has(next.step.activation)) {
      step.activation = next.step.activation;
      node.key = next.key;
      node.layers = [...node.layers, ...next.layers];
      remove(next);
      plan.folded.activation++;
      users = consumers();
    }
  }
}

/** Scales the kernel's output channels and derives the bias, in float64. */
function foldScaleShift(step: { kernel: PlanWeight; bias?: PlanWeight }, scale: Float64Array, shift: Float64Array, out: number): void {
  const k = step.kernel.data;
  const kernel = new Float32Array(k.length);
  // The output channel is the fastest-varying index of every kernel layout here:
  // conv [kh, kw, in, out], depthwise [kh, kw, in, mult] (channel = in·mult + m), dense [in, out].
  for (let i = 0; i < k.length; i++) kernel[i] = k[i]! * scale[i % out]!;
  const bias = new Float32Array(out);
  for (let o = 0; o < out; o++) bias[o] = (step.bias === undefined ? 0 : step.bias.data[o]!) * scale[o]! + shift[o]!;
  step.kernel = { data: kernel, shape: step.kernel.shape };
  step.bias = { data: bias, shape: [out] };
}
