import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Plan, PlanActivation, PlanNode } from './plan.js';
import { ProtoWriter } from './protobuf.js';

/**
 * Runs a whole inference plan as *one* TensorFlow graph on the native backend (tfjs-node): the
 * plan is written as a frozen GraphDef (weights as constants) inside a SavedModel, loaded with
 * tfjs-node's own SavedModel session loader, and every batch is a single `Session.Run`. TensorFlow's
 * graph optimizer (grappler) then does what eager dispatch cannot: it fuses Conv2D/Depthwise +
 * BiasAdd + Relu6 into single oneDNN kernels and plans memory for the whole graph — the same
 * runtime path Python's `tf.function` takes.
 *
 * Only plans without fallback layers can be written (a fallback is a JS layer, not a TF op).
 */

const DT_FLOAT = 1;
const DT_INT32 = 3;
/** GraphDef producer version: TF 2.9 (libtensorflow 2.9.1, what tfjs-node 4.22 ships by default). */
const GRAPH_PRODUCER = 1087;

type Attr =
  | { type: number }
  | { s: string }
  | { i: number }
  | { f: number }
  | { b: boolean }
  | { ints: number[] }
  | { shape: number[] }
  | { tensor: { dtype: number; shape: number[]; content: Uint8Array } };

interface GraphNode {
  name: string;
  op: string;
  inputs: string[];
  attrs: Record<string, Attr>;
}

function writeShape(w: ProtoWriter, shape: readonly number[]): void {
  for (const d of shape) w.message(2, (dim) => dim.varint(1, d));
}

function writeAttr(w: ProtoWriter, a: Attr): void {
  if ('type' in a) w.varint(6, a.type);
  else if ('s' in a) w.string(2, a.s);
  else if ('i' in a) w.varint(3, a.i);
  else if ('f' in a) w.float(4, a.f);
  else if ('b' in a) w.varint(5, a.b);
  else if ('ints' in a) w.message(1, (list) => list.packedVarints(3, a.ints));
  else if ('shape' in a) w.message(7, (s) => writeShape(s, a.shape));
  else
    w.message(8, (t) => {
      t.varint(1, a.tensor.dtype);
      t.message(2, (s) => writeShape(s, a.tensor.shape));
      t.bytes(4, a.tensor.content);
    });
}

function writeNode(w: ProtoWriter, n: GraphNode): void {
  w.string(1, n.name).string(2, n.op);
  for (const i of n.inputs) w.string(3, i);
  for (const [k, v] of Object.entries(n.attrs)) w.mapEntry(5, k, (a) => writeAttr(a, v));
}

function tensorInfo(w: ProtoWriter, name: string, shape: readonly number[]): void {
  w.string(1, name).varint(2, DT_FLOAT).message(3, (s) => writeShape(s, shape));
}

const bytesOf = (a: Float32Array | Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

const TF_ACTIVATION: Record<PlanActivation, string | undefined> = {
  linear: undefined,
  relu: 'Relu',
  relu6: 'Relu6',
  elu: 'Elu',
  sigmoid: 'Sigmoid',
  tanh: 'Tanh',
  softmax: 'Softmax',
  softplus: 'Softplus',
  selu: 'Selu',
};

/** Translates the plan into GraphDef nodes; input placeholder `x`, output identity `y`. */
export function planToGraph(plan: Plan): GraphNode[] {
  const nodes: GraphNode[] = [];
  const T = { type: DT_FLOAT };
  const out = new Map<string, string>();
  let counter = 0;
  const fresh = (base: string): string => `n${counter++}_${base.replace(/[^A-Za-z0-9_.\-/]/g, '_')}`;
  const add = (name: string, op: string, inputs: string[], attrs: Record<string, Attr>): string => {
    nodes.push({ name, op, inputs, attrs });
    return name;
  };
  const constF = (base: string, data: Float32Array, shape: number[]): string =>
    add(fresh(base), 'Const', [], { dtype: T, value: { tensor: { dtype: DT_FLOAT, shape, content: bytesOf(data) } } });
  const constI = (base: string, data: number[], shape: number[]): string =>
    add(fresh(base), 'Const', [], { dtype: { type: DT_INT32 }, value: { tensor: { dtype: DT_INT32, shape, content: bytesOf(Int32Array.from(data)) } } });
  const activate = (base: string, x: string, a: PlanActivation): string => {
    const op = TF_ACTIVATION[a];
    return op === undefined ? x : add(fresh(`${base}/${op}`), op, [x], { T });
  };
  const chain = (base: string, op: string, xs: string[]): string => xs.slice(1).reduce((acc, x) => add(fresh(`${base}/${op}`), op, [acc, x], { T }), xs[0]!);

  for (const n of plan.nodes) {
    const base = n.layers.at(-1)!;
    const xs = n.inputs.map((k) => {
      const v = out.get(k);
      if (v === undefined) throw new Error(`compile-graph: value ${k} is used before it is computed`);
      return v;
    });
    const s = n.step;
    let y: string;
    switch (s.op) {
      case 'input':
        y = add('x', 'Placeholder', [], { dtype: T, shape: { shape: [-1, ...s.shape] } });
        break;
      case 'conv2d':
      case 'depthwiseConv2d': {
        const k = constF(`${base}/kernel`, s.kernel.data, s.kernel.shape);
        const explicit = Array.isArray(s.padding);
        const attrs: Record<string, Attr> = {
          T,
          strides: { ints: [1, s.strides[0], s.strides[1], 1] },
          padding: { s: explicit ? 'EXPLICIT' : s.padding === 'same' ? 'SAME' : 'VALID' },
          data_format: { s: 'NHWC' },
          dilations: { ints: [1, s.dilations[0], s.dilations[1], 1] },
        };
        if (Array.isArray(s.padding)) attrs['explicit_paddings'] = { ints: [0, 0, ...s.padding[0], ...s.padding[1], 0, 0] };
        if (s.op === 'conv2d') attrs['use_cudnn_on_gpu'] = { b: true };
        y = add(fresh(base), s.op === 'conv2d' ? 'Conv2D' : 'DepthwiseConv2dNative', [xs[0]!, k], attrs);
        if (s.bias) y = add(fresh(`${base}/BiasAdd`), 'BiasAdd', [y, constF(`${base}/bias`, s.bias.data, s.bias.shape)], { T, data_format: { s: 'NHWC' } });
        y = activate(base, y, s.activation);
        break;
      }
      case 'dense': {
        y = add(fresh(base), 'MatMul', [xs[0]!, constF(`${base}/kernel`, s.kernel.data, s.kernel.shape)], {
          T,
          transpose_a: { b: false },
          transpose_b: { b: false },
        });
        if (s.bias) y = add(fresh(`${base}/BiasAdd`), 'BiasAdd', [y, constF(`${base}/bias`, s.bias.data, s.bias.shape)], { T, data_format: { s: 'NHWC' } });
        y = activate(base, y, s.activation);
        break;
      }
      case 'scaleShift': {
        const shape = s.broadcast ?? [s.scale.length];
        const m = add(fresh(`${base}/mul`), 'Mul', [xs[0]!, constF(`${base}/scale`, Float32Array.from(s.scale), shape)], { T });
        y = add(fresh(`${base}/add`), 'AddV2', [m, constF(`${base}/shift`, Float32Array.from(s.shift), shape)], { T });
        break;
      }
      case 'activation':
        y = s.activation === 'linear' ? add(fresh(base), 'Identity', [xs[0]!], { T }) : activate(base, xs[0]!, s.activation);
        break;
      case 'pad':
        y = add(fresh(base), 'Pad', [xs[0]!, constI(`${base}/paddings`, [0, 0, ...s.padding[0], ...s.padding[1], 0, 0], [4, 2])], {
          T,
          Tpaddings: { type: DT_INT32 },
        });
        break;
      case 'add':
        y = chain(base, 'AddV2', xs);
        break;
      case 'multiply':
        y = chain(base, 'Mul', xs);
        break;
      case 'subtract':
        y = chain(base, 'Sub', xs);
        break;
      case 'maximum':
        y = chain(base, 'Maximum', xs);
        break;
      case 'minimum':
        y = chain(base, 'Minimum', xs);
        break;
      case 'average':
        y = add(fresh(`${base}/mean`), 'Mul', [chain(base, 'AddV2', xs), constF(`${base}/n`, Float32Array.of(1 / xs.length), [])], { T });
        break;
      case 'concat':
        y = add(fresh(base), 'ConcatV2', [...xs, constI(`${base}/axis`, [s.axis], [])], { N: { i: xs.length }, T, Tidx: { type: DT_INT32 } });
        break;
      case 'globalAvgPool':
      case 'globalMaxPool':
        y = add(fresh(base), s.op === 'globalAvgPool' ? 'Mean' : 'Max', [xs[0]!, constI(`${base}/axes`, [1, 2], [2])], {
          T,
          Tidx: { type: DT_INT32 },
          keep_dims: { b: false },
        });
        break;
      case 'pool':
        y = add(fresh(base), s.kind === 'max' ? 'MaxPool' : 'AvgPool', [xs[0]!], {
          T,
          ksize: { ints: [1, ...s.size, 1] },
          strides: { ints: [1, ...s.strides, 1] },
          padding: { s: s.padding === 'same' ? 'SAME' : 'VALID' },
          data_format: { s: 'NHWC' },
        });
        break;
      case 'reshape':
        y = add(fresh(base), 'Reshape', [xs[0]!, constI(`${base}/shape`, [-1, ...s.shape], [s.shape.length + 1])], { T, Tshape: { type: DT_INT32 } });
        break;
      case 'identity':
        y = add(fresh(base), 'Identity', [xs[0]!], { T });
        break;
      case 'fallback':
        throw new Error(`compile-graph: layer ${s.layer.name} (${s.layer.getClassName()}) has no TensorFlow op translation`);
    }
    out.set(n.key, y);
  }
  const result = out.get(plan.output);
  if (result === undefined) throw new Error(`compile-graph: the output ${plan.output} is never computed`);
  add('y', 'Identity', [result], { T });
  return nodes;
}

/** A SavedModel (tag `serve`, signature `serving_default`: `x` → `y`) holding the frozen graph. */
export function savedModelBytes(plan: Plan, inputShape: readonly number[]): Uint8Array {
  const nodes = planToGraph(plan);
  const w = new ProtoWriter();
  w.varint(1, 1); // saved_model_schema_version
  w.message(2, (mg) => {
    mg.message(1, (info) => info.string(4, 'serve'));
    mg.message(2, (g) => {
      for (const n of nodes) g.message(1, (nw) => writeNode(nw, n));
      g.message(4, (v) => v.varint(1, GRAPH_PRODUCER));
    });
    mg.mapEntry(5, 'serving_default', (sig) => {
      sig.mapEntry(1, 'x', (t) => tensorInfo(t, 'x:0', [-1, ...inputShape]));
      sig.mapEntry(2, 'y', (t) => tensorInfo(t, 'y:0', []));
      sig.string(3, 'tensorflow/serving/predict');
    });
  });
  return w.finish();
}

/** The parts of tfjs-node's backend used here (its SavedModel session API, synchronous). */
interface NodeBackend {
  loadSavedModelMetaGraph(path: string, tags: string): number;
  runSavedModel(id: number, inputs: tf.Tensor[], inputInfos: { name: string; tfDtype: string }[], outputNames: string[]): tf.Tensor[];
  deleteSavedModel(id: number): void;
}

function nativeBackend(): NodeBackend | undefined {
  if (tf.getBackend() !== 'tensorflow') return undefined;
  const b = tf.backend() as unknown as Partial<NodeBackend>;
  return typeof b.loadSavedModelMetaGraph === 'function' && typeof b.runSavedModel === 'function' ? (b as NodeBackend) : undefined;
}

export interface GraphSession {
  run(x: tf.Tensor): tf.Tensor;
  dispose(): void;
}

/**
 * Loads the plan as a TensorFlow session on the active tfjs-node backend, or returns undefined when
 * the backend is not native or the plan has fallbacks. The SavedModel is written to a temporary
 * folder that is removed as soon as the session holds the graph.
 */
export function loadGraphSession(plan: Plan, inputShape: readonly number[]): GraphSession | undefined {
  const backend = nativeBackend();
  if (backend === undefined || plan.fallbacks.length > 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'splitfit-graph-'));
  let id: number;
  try {
    writeFileSync(join(dir, 'saved_model.pb'), savedModelBytes(plan, inputShape));
    id = backend.loadSavedModelMetaGraph(dir, 'serve');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const inputs = [{ name: 'x:0', tfDtype: 'DT_FLOAT' }];
  let disposed = false;
  return {
    run(x) {
      if (disposed) throw new Error('the compiled base was disposed');
      return backend.runSavedModel(id, [x], inputs, ['y:0'])[0]!;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      backend.deleteSavedModel(id);
    },
  };
}

export type { GraphNode, PlanNode };
