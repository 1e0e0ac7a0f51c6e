import * as tf from '@tensorflow/tfjs';
import { type GraphSession, loadGraphSession } from './graph.js';
import { buildPlan, type Plan, type PlanActivation, type PlanNode, type PlanWeight } from './plan.js';

/**
 * An inference-only version of a frozen base: same features as `base.predict(x)` (within float32
 * rounding), computed faster. Weights are folded copies; the model itself is never changed.
 */
export interface CompiledBase {
  /** Inference-mode forward pass of a batch; the caller owns (and disposes) the result. */
  predict(x: tf.Tensor4D): tf.Tensor;
  /** Layers that could not be compiled and run as layers (`layer.apply(x, {training: false})`). */
  fallbacks: { layer: string; className: string }[];
  /**
   * How batches run: `graph` = one native TensorFlow session run per batch (tfjs-node only; the
   * whole plan as a frozen TF graph); `ops` = the plan's ops one by one through tfjs (any backend).
   */
  mode: 'graph' | 'ops';
  /** Why graph mode was not used although the backend is native (the graph failed to load or run). */
  graphError?: string;
  /** What was folded: BN into convs, activation layers into fused ops, ZeroPadding2D into conv padding. */
  folded: { batchNorm: number; activation: number; padding: number };
  /** Releases the folded weights (and the native session). Idempotent. */
  dispose(): void;
}

export interface CompileOptions {
  /**
   * Run the plan as one native TensorFlow graph when the active backend is `tensorflow` and no
   * layer needs a fallback; `false` always runs op by op. @default true
   */
  graph?: boolean;
}

/**
 * Compiles a frozen base for inference: walks its functional graph, folds every BatchNormalization
 * into the preceding Conv2D/DepthwiseConv2D/Dense (w' = w·γ/√(σ²+ε), b' = (b−μ)·γ/√(σ²+ε)+β, only
 * where the BN is that layer's sole consumer), folds a following ReLU/ReLU6/activation layer into
 * the op's fused activation and a preceding ZeroPadding2D into explicit conv padding, and runs
 * Add, pooling, concat, reshape… as plain ops. Layers it cannot translate run as layers and are
 * listed in `fallbacks`.
 *
 * On the native backend the plan runs as one TensorFlow graph (see compile/graph.ts): tfjs-node's
 * `tf.fused.*` kernels are *not* fused in TensorFlow — they issue conv, add and activation as three
 * eager ops — so the graph is where the fused kernels and the speed are.
 */
export function compileBase(base: tf.LayersModel, options: CompileOptions = {}): CompiledBase {
  const [, ...inputShape] = (base.inputs[0]?.shape ?? []) as (number | null)[];
  if (base.inputs.length !== 1 || base.outputs.length !== 1) {
    throw new TypeError(`compileBase needs a model with one input and one output, got ${base.inputs.length} and ${base.outputs.length}`);
  }
  const backend = tf.getBackend();
  // ZeroPadding2D folds into Conv2D only: tfjs's fused depthwise op has no explicit padding, and
  // TensorFlow 2.21's DepthwiseConv2dNative shape function aborts the process on EXPLICIT padding.
  const plan = buildPlan(base, { foldPadding: ['conv2d'] });
  let session: GraphSession | undefined;
  let graphError: string | undefined;
  if (options.graph !== false && backend === 'tensorflow' && plan.fallbacks.length === 0 && inputShape.every((d) => typeof d === 'number')) {
    try {
      session = loadGraphSession(plan, inputShape as number[]);
    } catch (err) {
      // E.g. a libtensorflow that lacks an op: the op-by-op path computes the same features.
      graphError = err instanceof Error ? err.message : String(err);
    }
  }
  // Built on first use: in graph mode only if the graph fails or the backend changes under it.
  let ops: OpRunner | undefined;
  let graphRan = false;
  let disposed = false;
  const compiled: CompiledBase = {
    predict(x) {
      if (disposed) throw new Error('this compiled base was disposed');
      // Checked here so that a wrong batch is a caller's error, not a reason to leave graph mode.
      if (x.rank !== 4 || inputShape.some((d, i) => d !== null && x.shape[i + 1] !== d)) {
        throw new TypeError(`compiled base: expected a batch [n, ${inputShape.join(', ')}], got [${x.shape.join(', ')}]`);
      }
      if (session !== undefined && tf.getBackend() === backend) {
        try {
          const y = session.run(x);
          graphRan = true;
          return y;
        } catch (err) {
          if (graphRan) throw err;
          // The graph never ran: treat a failing first run like a graph that did not load.
          graphError = err instanceof Error ? err.message : String(err);
          session.dispose();
          session = undefined;
          compiled.mode = 'ops';
          compiled.graphError = graphError;
        }
      }
      ops ??= new OpRunner(plan);
      return ops.run(x);
    },
    fallbacks: plan.fallbacks,
    mode: session === undefined ? 'ops' : 'graph',
    folded: plan.folded,
    ...(graphError === undefined ? {} : { graphError }),
    dispose() {
      if (disposed) return;
      disposed = true;
      session?.dispose();
      ops?.dispose();
    },
  };
  return compiled;
}

type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

/** A compiled node: its input keys, how many later nodes read its value, and the op. */
interface Runnable {
  key: string;
  inputs: string[];
  run: (xs: tf.Tensor[]) => tf.Tensor;
}

/** Runs a plan op by op through tfjs, holding the folded weights as tensors. */
class OpRunner {
  private readonly weights: tf.Tensor[] = [];
  private readonly steps: Runnable[];
  /** Key → number of steps that read it (the output counts as one extra reader). */
  private readonly readers = new Map<string, number>();

  constructor(private readonly plan: Plan) {
    this.steps = plan.nodes.filter((n) => n.step.op !== 'input').map((n) => ({ key: n.key, inputs: n.inputs, run: this.compile(n) }));
    for (const s of this.steps) for (const i of s.inputs) this.readers.set(i, (this.readers.get(i) ?? 0) + 1);
    this.readers.set(plan.output, (this.readers.get(plan.output) ?? 0) + 1);
  }

  /** `shape` reshapes a 1-D Float64Array weight (a BN's broadcast scale over a non-last axis). */
  private tensor(w: PlanWeight | Float64Array, shape?: number[]): tf.Tensor {
    // Kept: the runner may be built inside a caller's tf.tidy (the first batch of an extraction).
    const t = tf.keep(w instanceof Float64Array ? tf.tensor(Float32Array.from(w), shape ?? [w.length], 'float32') : tf.tensor(w.data, w.shape, 'float32'));
    this.weights.push(t);
    return t;
  }

  private compile(n: PlanNode): (xs: tf.Tensor[]) => tf.Tensor {
    const s = n.step;
    switch (s.op) {
      case 'input':
        throw new Error('unreachable');
      case 'conv2d': {
        const filter = this.tensor(s.kernel) as tf.Tensor4D;
        const bias = s.bias && this.tensor(s.bias);
        const pad = Array.isArray(s.padding) ? ([[0, 0], ...s.padding, [0, 0]] as Pad4) : s.padding;
        const activation = fusedActivation(s.activation);
        return ([x]) => {
          const y = tf.fused.conv2d({ x: x as tf.Tensor4D, filter, strides: s.strides, pad, dilations: s.dilations, ...(bias ? { bias } : {}), activation });
          return activation === s.activation ? y : applyActivation(y, s.activation);
        };
      }
      case 'depthwiseConv2d': {
        const filter = this.tensor(s.kernel) as tf.Tensor4D;
        const bias = s.bias && this.tensor(s.bias);
        const activation = fusedActivation(s.activation);
        const padding = s.padding;
        if (Array.isArray(padding)) {
          // tfjs's fused depthwise op has no explicit padding; the plain one does.
          const pad = [[0, 0], ...padding, [0, 0]] as Pad4;
          return ([x]) => {
            let y: tf.Tensor = tf.depthwiseConv2d(x as tf.Tensor4D, filter, s.strides, pad, 'NHWC', s.dilations);
            if (bias) y = tf.add(y, bias);
            return applyActivation(y, s.activation);
          };
        }
        return ([x]) => {
          const y = tf.fused.depthwiseConv2d({ x: x as tf.Tensor4D, filter, strides: s.strides, pad: padding, dilations: s.dilations, ...(bias ? { bias } : {}), activation });
          return activation === s.activation ? y : applyActivation(y, s.activation);
        };
      }
      case 'dense': {
        const b = this.tensor(s.kernel) as tf.Tensor2D;
        const bias = s.bias && this.tensor(s.bias);
        const activation = fusedActivation(s.activation);
        return ([x]) => {
          const y = tf.fused.matMul({ a: x as tf.Tensor2D, b, ...(bias ? { bias } : {}), activation });
          return activation === s.activation ? y : applyActivation(y, s.activation);
        };
      }
      case 'scaleShift': {
        const scale = this.tensor(s.scale, s.broadcast);
        const shift = this.tensor(s.shift, s.broadcast);
        return ([x]) => tf.tidy(() => tf.add(tf.mul(x!, scale), shift));
      }
      case 'activation':
        return ([x]) => (s.activation === 'linear' ? tf.clone(x!) : applyActivation(x!, s.activation, false));
      case 'pad':
        return ([x]) => tf.pad(x!, [[0, 0], ...s.padding, [0, 0]]);
      case 'add':
        return (xs) => tf.tidy(() => xs.slice(1).reduce((a, b) => tf.add(a, b), xs[0]!));
      case 'multiply':
        return (xs) => tf.tidy(() => xs.slice(1).reduce((a, b) => tf.mul(a, b), xs[0]!));
      case 'subtract':
        return ([a, b]) => tf.sub(a!, b!);
      case 'maximum':
        return (xs) => tf.tidy(() => xs.slice(1).reduce((a, b) => tf.maximum(a, b), xs[0]!));
      case 'minimum':
        return (xs) => tf.tidy(() => xs.slice(1).reduce((a, b) => tf.minimum(a, b), xs[0]!));
      case 'average':
        return (xs) => tf.tidy(() => tf.mul(1 / xs.length, xs.slice(1).reduce((a, b) => tf.add(a, b), xs[0]!)));
      case 'concat':
        return (xs) => tf.concat(xs, s.axis);
      case 'globalAvgPool':
        return ([x]) => tf.mean(x!, [1, 2]);
      case 'globalMaxPool':
        return ([x]) => tf.max(x!, [1, 2]);
      case 'pool':
        return ([x]) =>
          s.kind === 'max' ? tf.maxPool(x as tf.Tensor4D, s.size, s.strides, s.padding) : tf.avgPool(x as tf.Tensor4D, s.size, s.strides, s.padding);
      case 'reshape':
        return ([x]) => tf.reshape(x!, [x!.shape[0]!, ...s.shape]);
      case 'identity':
        return ([x]) => tf.clone(x!);
      case 'fallback': {
        const layer = s.layer;
        // May return several tensors (see run()).
        return (xs) => layer.apply(xs.length === 1 ? xs[0]! : xs, { training: false }) as tf.Tensor;
      }
    }
  }

  /** Runs the plan; intermediate values are disposed as soon as their last reader ran. */
  run(x: tf.Tensor): tf.Tensor {
    // tidy also collects whatever a fallback layer leaves behind, and everything on a throw.
    return tf.tidy(() => {
      const values = new Map<string, tf.Tensor>([[this.plan.input, x]]);
      const left = new Map(this.readers);
      for (const step of this.steps) {
        const y = step.run(step.inputs.map((k) => values.get(k)!));
        if (Array.isArray(y)) {
          // A multi-output fallback layer: output i is `layer:node:i`.
          const stem = step.key.slice(0, step.key.lastIndexOf(':'));
          (y as tf.Tensor[]).forEach((t, i) => values.set(`${stem}:${i}`, t));
        } else values.set(step.key, y);
        for (const k of step.inputs) {
          const n = left.get(k)! - 1;
          left.set(k, n);
          if (n === 0 && k !== this.plan.input) values.get(k)!.dispose();
        }
      }
      return values.get(this.plan.output)!;
    });
  }

  dispose(): void {
    for (const w of this.weights) w.dispose();
    this.weights.length = 0;
  }
}

type FusedActivation = 'linear' | 'relu' | 'relu6' | 'elu' | 'sigmoid';

/** The part of an activation tfjs's fused ops can apply; the rest runs afterwards. */
function fusedActivation(a: PlanActivation): FusedActivation {
  return a === 'relu' || a === 'relu6' || a === 'elu' || a === 'sigmoid' ? a : 'linear';
}

/**
 * Applies a non-fused activation. With `afterFused`, the fused op already applied the fusable ones
 * (and `y` is disposed here after use).
 */
function applyActivation(y: tf.Tensor, a: PlanActivation, afterFused = true): tf.Tensor {
  let out: tf.Tensor;
  switch (a) {
    case 'linear':
      return y;
    case 'relu':
      out = tf.relu(y);
      break;
    case 'relu6':
      out = tf.relu6(y);
      break;
    case 'elu':
      out = tf.elu(y);
      break;
    case 'sigmoid':
      out = tf.sigmoid(y);
      break;
    case 'tanh':
      out = tf.tanh(y);
      break;
    case 'softmax':
      out = tf.softmax(y);
      break;
    case 'softplus':
      out = tf.softplus(y);
      break;
    case 'selu':
      out = tf.selu(y);
      break;
  }
  if (afterFused) y.dispose();
  return out;
}
