/**
 * The hand-written protobuf writer (compile/protobuf.ts + compile/graph.ts, ~40 field numbers typed
 * by hand) checked against an independent decoder: the google-protobuf classes tfjs-node generated
 * from TensorFlow's own .proto files (`@tensorflow/tfjs-node/dist/proto/api_pb.js`: SavedModel,
 * MetaGraphDef, GraphDef, NodeDef, AttrValue, TensorProto, TensorShapeProto, SignatureDef…).
 * A wrong field number or wire type shows up as a missing or different value, and, since the
 * decoder silently drops fields it does not know, as a re-encoding of a different length.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { beforeAll, describe, expect, it } from 'vitest';
import { type GraphNode, planToGraph, savedModelBytes } from '../src/model/compile/graph.js';
import { buildPlan, type Plan, type PlanOptions } from '../src/model/compile/plan.js';
import { randomizeBatchNorm, residualToyModel } from './helpers/models.js';

// Minimal typings of the generated classes this test calls (the package ships no .d.ts for them).
interface PbList {
  getIList(): number[];
}
interface PbShape {
  getDimList(): { getSize(): number }[];
}
interface PbTensor {
  getDtype(): number;
  getTensorShape(): PbShape | undefined;
  getTensorContent_asU8(): Uint8Array;
}
interface PbAttr {
  getValueCase(): number;
  getType(): number;
  getS_asU8(): Uint8Array;
  getI(): number;
  getF(): number;
  getB(): boolean;
  getList(): PbList;
  getShape(): PbShape;
  getTensor(): PbTensor;
}
interface PbMap<V> {
  getEntryList(): [string, unknown][];
  get(key: string): V | undefined;
  getLength(): number;
}
interface PbNode {
  getName(): string;
  getOp(): string;
  getInputList(): string[];
  getAttrMap(): PbMap<PbAttr>;
}
interface PbTensorInfo {
  getName(): string;
  getDtype(): number;
  getTensorShape(): PbShape | undefined;
}
interface PbSavedModel {
  getSavedModelSchemaVersion(): number;
  getMetaGraphsList(): {
    getMetaInfoDef(): { getTagsList(): string[] };
    getGraphDef(): { getNodeList(): PbNode[]; getVersions(): { getProducer(): number } };
    getSignatureDefMap(): PbMap<{ getInputsMap(): PbMap<PbTensorInfo>; getOutputsMap(): PbMap<PbTensorInfo>; getMethodName(): string }>;
  }[];
  serializeBinary(): Uint8Array;
}
interface ApiPb {
  SavedModel: { deserializeBinary(bytes: Uint8Array): PbSavedModel };
  AttrValue: { ValueCase: Record<'LIST' | 'S' | 'I' | 'F' | 'B' | 'TYPE' | 'SHAPE' | 'TENSOR', number> };
}

const pb = createRequire(import.meta.url)('@tensorflow/tfjs-node/dist/proto/api_pb.js') as ApiPb;
const DT_FLOAT = 1;
const DT_INT32 = 3;
const utf8 = new TextDecoder();

const dims = (s: PbShape | undefined): number[] => (s === undefined ? [] : s.getDimList().map((d) => d.getSize()));

/** A decoded AttrValue in the writer's own `Attr` form, chosen by which oneof case is set. */
function attrOf(a: PbAttr): GraphNode['attrs'][string] {
  const C = pb.AttrValue.ValueCase;
  switch (a.getValueCase()) {
    case C.TYPE:
      return { type: a.getType() };
    case C.S:
      return { s: utf8.decode(a.getS_asU8()) };
    case C.I:
      return { i: a.getI() };
    case C.F:
      return { f: a.getF() };
    case C.B:
      return { b: a.getB() };
    case C.LIST:
      return { ints: a.getList().getIList() };
    case C.SHAPE:
      return { shape: dims(a.getShape()) };
    case C.TENSOR: {
      const t = a.getTensor();
      return { tensor: { dtype: t.getDtype(), shape: dims(t.getTensorShape()), content: t.getTensorContent_asU8() } };
    }
    default:
      // No value the decoder recognised (e.g. written under a wrong field number): shows in the node diff.
      return { s: `<no value: case ${a.getValueCase()}>` };
  }
}

function decodeNodes(nodes: PbNode[]): GraphNode[] {
  return nodes.map((n) => ({
    name: n.getName(),
    op: n.getOp(),
    inputs: n.getInputList(),
    attrs: Object.fromEntries(n.getAttrMap().getEntryList().map(([k]) => [k, attrOf(n.getAttrMap().get(k)!)])),
  }));
}

const floats = (u8: Uint8Array): Float32Array => new Float32Array(u8.slice().buffer);
const ints = (u8: Uint8Array): Int32Array => new Int32Array(u8.slice().buffer);

const apply = (layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor => layer.apply(x) as tf.SymbolicTensor;

/** Every op the graph writer emits: padding (folded or a Pad node), conv/depthwise with bias, BN, ReLU6, tanh, add/multiply/subtract/maximum/minimum/average, pools, concat, GAP, flatten, dense, softmax. */
function zooModel(): tf.LayersModel {
  const init = (k: number): ReturnType<typeof tf.initializers.glorotUniform> => tf.initializers.glorotUniform({ seed: 70 + k });
  const input = tf.input({ shape: [10, 10, 3], name: 'img' });
  let x = apply(tf.layers.zeroPadding2d({ padding: [[1, 0], [0, 2]], name: 'pad' }), input);
  x = apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, useBias: true, biasInitializer: 'glorotUniform', kernelInitializer: init(1), name: 'c1' }), x);
  x = apply(tf.layers.batchNormalization({ name: 'c1_bn' }), x);
  x = apply(tf.layers.reLU({ maxValue: 6, name: 'c1_relu6' }), x);
  const d = apply(tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, depthwiseInitializer: init(2), name: 'dw' }), x);
  const e = apply(tf.layers.conv2d({ filters: 8, kernelSize: 1, dilationRate: 1, kernelInitializer: init(3), activation: 'elu', name: 'c2' }), x);
  const merged = [
    apply(tf.layers.add({ name: 'add' }), [d, e]),
    apply(tf.layers.multiply({ name: 'mul' }), [d, e]),
    apply(tf.layers.maximum({ name: 'max' }), [d, e]),
    apply(tf.layers.minimum({ name: 'min' }), [d, e]),
    apply(tf.layers.average({ name: 'avg' }), [d, e]),
  ];
  x = apply(tf.layers.concatenate({ name: 'concat' }), merged);
  const p1 = apply(tf.layers.maxPooling2d({ poolSize: 2, name: 'maxpool' }), x);
  const p2 = apply(tf.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same', name: 'avgpool' }), x);
  const g = apply(tf.layers.globalMaxPooling2d({ name: 'gmp' }), p2);
  x = apply(tf.layers.flatten({ name: 'flat' }), p1);
  x = apply(tf.layers.dense({ units: 6, kernelInitializer: init(4), name: 'fc' }), x);
  x = apply(tf.layers.activation({ activation: 'tanh', name: 'fc_tanh' }), x);
  x = apply(tf.layers.concatenate({ name: 'merge' }), [x, g]);
  x = apply(tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(5), name: 'out' }), x);
  return tf.model({ inputs: input, outputs: x, name: 'zoo' });
}

interface Case {
  name: string;
  model: () => tf.LayersModel;
  inputShape: number[];
  options: PlanOptions;
}

const cases: Case[] = [
  { name: 'residual toy model', model: () => residualToyModel(), inputShape: [16, 16, 3], options: {} },
  { name: 'zoo model, padding folded into the conv', model: zooModel, inputShape: [10, 10, 3], options: {} },
  { name: 'zoo model, Pad node kept, nothing folded', model: zooModel, inputShape: [10, 10, 3], options: { foldBatchNorm: false, foldActivation: false, foldPadding: [] } },
];

describe.each(cases)('savedModelBytes decoded by tfjs-node\'s generated TensorFlow classes: $name', ({ model: make, inputShape, options }) => {
  let plan: Plan;
  let bytes: Uint8Array;
  let saved: PbSavedModel;
  let meta: ReturnType<PbSavedModel['getMetaGraphsList']>[number] | undefined;
  let more: unknown[];
  let nodes: GraphNode[];
  let byName: Map<string, GraphNode>;
  // Decoding happens in the hook, so a decoder error fails these tests instead of the file's collection.
  beforeAll(() => {
    const model = make();
    randomizeBatchNorm(model, 5);
    plan = buildPlan(model, options);
    bytes = savedModelBytes(plan, inputShape);
    saved = pb.SavedModel.deserializeBinary(bytes);
    [meta, ...more] = saved.getMetaGraphsList();
    nodes = decodeNodes(meta!.getGraphDef().getNodeList());
    byName = new Map(nodes.map((n) => [n.name, n]));
    model.dispose();
  });

  it('the decoder understood every byte: re-encoding gives the same length, and one meta graph tagged serve', () => {
    expect(saved.getSavedModelSchemaVersion()).toBe(1);
    expect(more).toEqual([]);
    expect(meta!.getMetaInfoDef().getTagsList()).toEqual(['serve']);
    expect(meta!.getGraphDef().getVersions().getProducer()).toBe(1087);
    // Unknown fields are dropped on decode, so a mistyped field number makes the re-encoding shorter.
    expect(saved.serializeBinary().length).toBe(bytes.length);
  });

  it('the serving_default signature maps x:0 [-1, …input] → y:0, both DT_FLOAT', () => {
    const sigs = meta!.getSignatureDefMap();
    expect(sigs.getEntryList().map(([k]) => k)).toEqual(['serving_default']);
    const sig = sigs.get('serving_default')!;
    expect(sig.getMethodName()).toBe('tensorflow/serving/predict');
    const x = sig.getInputsMap().get('x')!;
    const y = sig.getOutputsMap().get('y')!;
    expect([sig.getInputsMap().getLength(), sig.getOutputsMap().getLength()]).toEqual([1, 1]);
    expect([x.getName(), x.getDtype(), dims(x.getTensorShape())]).toEqual(['x:0', DT_FLOAT, [-1, ...inputShape]]);
    expect([y.getName(), y.getDtype()]).toEqual(['y:0', DT_FLOAT]);
  });

  it('every node decodes to exactly what the writer was given: names, ops, inputs, attrs, tensor bytes', () => {
    const expected = planToGraph(plan);
    expect(nodes.map((n) => n.name)).toEqual(expected.map((n) => n.name));
    for (const [i, n] of nodes.entries()) {
      const want = expected[i]!;
      expect({ ...n, attrs: Object.keys(n.attrs).sort() }, n.name).toEqual({ ...want, attrs: Object.keys(want.attrs).sort() });
      for (const [k, v] of Object.entries(want.attrs)) {
        if ('tensor' in v) {
          const got = n.attrs[k] as typeof v;
          expect([got.tensor.dtype, got.tensor.shape], `${n.name}.${k}`).toEqual([v.tensor.dtype, v.tensor.shape]);
          expect(Buffer.from(got.tensor.content).equals(Buffer.from(v.tensor.content)), `${n.name}.${k} content`).toBe(true);
        } else {
          expect(n.attrs[k], `${n.name}.${k}`).toEqual(v);
        }
      }
    }
  });

  it('the decoded graph computes what the plan says: weights, strides, padding, activations, wiring', () => {
    // A closed graph in topological order: every input names an earlier node.
    const seen = new Set<string>();
    for (const n of nodes) {
      for (const i of n.inputs) expect(seen.has(i), `${n.name} reads ${i} before it exists`).toBe(true);
      seen.add(n.name);
    }
    const constOf = (name: string): { dtype: number; shape: number[]; content: Uint8Array } => {
      const c = byName.get(name)!;
      expect(c.op).toBe('Const');
      const v = c.attrs['value'] as { tensor: { dtype: number; shape: number[]; content: Uint8Array } };
      expect(c.attrs['dtype']).toEqual({ type: v.tensor.dtype });
      return v.tensor;
    };
    const expectWeight = (constName: string, w: { data: Float32Array; shape: number[] }): void => {
      const t = constOf(constName);
      expect([t.dtype, t.shape]).toEqual([DT_FLOAT, w.shape]);
      expect(floats(t.content)).toEqual(w.data);
    };
    const x = byName.get('x')!;
    expect(x.op).toBe('Placeholder');
    expect(x.attrs).toEqual({ dtype: { type: DT_FLOAT }, shape: { shape: [-1, ...inputShape] } });
    expect(byName.get('y')!.op).toBe('Identity');

    const counts: Record<string, number> = {};
    for (const n of nodes) counts[n.op] = (counts[n.op] ?? 0) + 1;
    const want: Record<string, number> = {};
    const bump = (op: string, k = 1): void => void (want[op] = (want[op] ?? 0) + k);
    for (const p of plan.nodes) {
      const s = p.step;
      const main = nodes.find((n) => n.op !== 'Const' && n.name.replace(/^n\d+_/, '') === p.layers.at(-1));
      switch (s.op) {
        case 'conv2d':
        case 'depthwiseConv2d': {
          bump(s.op === 'conv2d' ? 'Conv2D' : 'DepthwiseConv2dNative');
          expect(main!.op).toBe(s.op === 'conv2d' ? 'Conv2D' : 'DepthwiseConv2dNative');
          expectWeight(main!.inputs[1]!, s.kernel);
          expect(main!.attrs['strides']).toEqual({ ints: [1, ...s.strides, 1] });
          expect(main!.attrs['dilations']).toEqual({ ints: [1, ...s.dilations, 1] });
          if (Array.isArray(s.padding)) {
            expect(main!.attrs['padding']).toEqual({ s: 'EXPLICIT' });
            expect(main!.attrs['explicit_paddings']).toEqual({ ints: [0, 0, ...s.padding[0], ...s.padding[1], 0, 0] });
          } else {
            expect(main!.attrs['padding']).toEqual({ s: s.padding.toUpperCase() });
          }
          if (s.bias) {
            const biasAdd = nodes.find((n) => n.op === 'BiasAdd' && n.inputs[0] === main!.name)!;
            expectWeight(biasAdd.inputs[1]!, s.bias);
            bump('BiasAdd');
          }
          if (s.activation !== 'linear') bump({ relu: 'Relu', relu6: 'Relu6', elu: 'Elu', sigmoid: 'Sigmoid' }[s.activation as 'relu']);
          break;
        }
        case 'dense': {
          bump('MatMul');
          expect(main!.op).toBe('MatMul');
          expectWeight(main!.inputs[1]!, s.kernel);
          expect([main!.attrs['transpose_a'], main!.attrs['transpose_b']]).toEqual([{ b: false }, { b: false }]);
          if (s.bias) bump('BiasAdd');
          if (s.activation !== 'linear') bump(s.activation === 'softmax' ? 'Softmax' : s.activation === 'tanh' ? 'Tanh' : s.activation === 'relu' ? 'Relu' : '?');
          break;
        }
        case 'scaleShift': {
          bump('Mul');
          bump('AddV2');
          const mul = nodes.find((n) => n.op === 'Mul' && n.name.endsWith(`_${p.layers.at(-1)!}/mul`))!;
          expect(floats(constOf(mul.inputs[1]!).content)).toEqual(Float32Array.from(s.scale));
          break;
        }
        case 'pad': {
          bump('Pad');
          expect(main!.op).toBe('Pad');
          const t = constOf(main!.inputs[1]!);
          expect([t.dtype, t.shape]).toEqual([DT_INT32, [4, 2]]);
          expect(Array.from(ints(t.content))).toEqual([0, 0, ...s.padding[0], ...s.padding[1], 0, 0]);
          expect(main!.attrs['Tpaddings']).toEqual({ type: DT_INT32 });
          break;
        }
        case 'pool':
          bump(s.kind === 'max' ? 'MaxPool' : 'AvgPool');
          expect(main!.attrs).toMatchObject({ ksize: { ints: [1, ...s.size, 1] }, strides: { ints: [1, ...s.strides, 1] }, padding: { s: s.padding.toUpperCase() } });
          break;
        case 'concat': {
          bump('ConcatV2');
          expect(main!.attrs['N']).toEqual({ i: p.inputs.length });
          expect(Array.from(ints(constOf(main!.inputs.at(-1)!).content))).toEqual([s.axis]);
          break;
        }
        case 'globalAvgPool':
        case 'globalMaxPool':
          bump(s.op === 'globalAvgPool' ? 'Mean' : 'Max');
          expect(main!.attrs['keep_dims']).toEqual({ b: false });
          expect(Array.from(ints(constOf(main!.inputs[1]!).content))).toEqual([1, 2]);
          break;
        case 'reshape':
          bump('Reshape');
          expect(Array.from(ints(constOf(main!.inputs[1]!).content))).toEqual([-1, ...s.shape]);
          break;
        case 'add':
          bump('AddV2', p.inputs.length - 1);
          break;
        case 'multiply':
          bump('Mul', p.inputs.length - 1);
          break;
        case 'maximum':
          bump('Maximum', p.inputs.length - 1);
          break;
        case 'minimum':
          bump('Minimum', p.inputs.length - 1);
          break;
        case 'average': {
          bump('AddV2', p.inputs.length - 1);
          bump('Mul');
          const mean = nodes.find((n) => n.name.endsWith(`_${p.layers.at(-1)!}/mean`))!;
          expect(Array.from(floats(constOf(mean.inputs[1]!).content))).toEqual([Math.fround(1 / p.inputs.length)]);
          break;
        }
        case 'activation':
          bump(s.activation === 'linear' ? 'Identity' : { relu: 'Relu', relu6: 'Relu6', tanh: 'Tanh', softmax: 'Softmax' }[s.activation as 'relu']);
          break;
        case 'input':
          bump('Placeholder');
          break;
        default:
          bump(s.op);
      }
    }
    bump('Identity'); // y
    const { Const: _consts, ...ops } = counts;
    expect(ops).toEqual(want);
  });
});
