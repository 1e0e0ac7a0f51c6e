import * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';
import { asFunctional, type FunctionalJson, type LayerJson, layerOutputShape, modelGraph, type ModelGraph, resolveBoundary } from './graph.js';

/** Name of the input layer of every head: the features the base produces. */
export const FEATURES_INPUT = 'splitfit_features';

export interface Base {
  /** Inputs → boundary output. Frozen; always run in inference mode (`predict`). */
  base: tf.LayersModel;
  boundary: string;
  /** Shape of one sample's features (no batch dimension). */
  featureShape: number[];
  /** Input shape of one sample (no batch dimension), e.g. [224, 224, 3]. */
  inputShape: number[];
}

export interface Split extends Base {
  /** The source model's layers after the boundary, with their weights, trainable. */
  head: tf.LayersModel;
}

/**
 * Cuts `model` at `boundary` (a layer name or index, which must be a graph cut) and returns
 * the frozen base. The base shares the source's layers; it is only ever run in inference mode.
 */
export function splitBase(model: tf.LayersModel, boundary: string | number): Base {
  const functional = asFunctional(model);
  const graph = modelGraph(functional);
  const name = resolveBoundary(graph, boundary);
  if (functional.inputs.length !== 1) {
    throw new SplitfitError('SPLITFIT_BOUNDARY_NOT_A_CUT', `the model has ${functional.inputs.length} inputs; splitfit supports single-input models`);
  }
  const base = tf.model({ inputs: functional.inputs, outputs: functional.getLayer(name).output as tf.SymbolicTensor, name: 'splitfit_base' });
  base.trainable = false;
  const inputShape = (functional.inputs[0]!.shape as (number | null)[]).slice(1);
  if (inputShape.some((d) => d === null)) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `the model's input shape [${inputShape.join(', ')}] is not fixed; splitfit needs a fixed input size`);
  }
  return { base, boundary: name, featureShape: layerOutputShape(functional, name), inputShape: inputShape as number[] };
}

/** Cuts `model` at `boundary` into a frozen base and a head made of the remaining layers. */
export async function split(model: tf.LayersModel, boundary: string | number): Promise<Split> {
  const b = splitBase(model, boundary);
  const graph = modelGraph(asFunctional(model));
  const head = await remainderModel(model, graph, b.boundary, graph.outputs, b.featureShape);
  return { ...b, head };
}

function ancestorsOf(graph: ModelGraph, names: string[]): Set<string> {
  const seen = new Set(names);
  const stack = [...names];
  while (stack.length > 0) {
    for (const p of graph.parents.get(stack.pop()!) ?? []) {
      if (!seen.has(p)) {
        seen.add(p);
        stack.push(p);
      }
    }
  }
  return seen;
}

/**
 * A new model fed by the boundary's features, made of the source layers between the boundary
 * and `outputs` (exclusive of the boundary), with copies of their weights, all trainable.
 */
export async function remainderModel(
  source: tf.LayersModel,
  graph: ModelGraph,
  boundary: string,
  outputs: string[],
  featureShape: number[],
): Promise<tf.LayersModel> {
  const upstream = ancestorsOf(graph, [boundary]);
  const needed = ancestorsOf(graph, outputs);
  for (const o of outputs) {
    if (!needed.has(boundary) || upstream.has(o) || !ancestorsOf(graph, [o]).has(boundary)) {
      throw new SplitfitError('SPLITFIT_HEAD_SPEC', `layer "${o}" does not come after the boundary "${boundary}"`);
    }
  }
  const renameRef = (ref: LayerJson['inbound_nodes'][number][number]): LayerJson['inbound_nodes'][number][number] =>
    ref[0] === boundary ? [FEATURES_INPUT, 0, 0, ref[3] ?? {}] : ref;
  const layers: LayerJson[] = [
    {
      name: FEATURES_INPUT,
      class_name: 'InputLayer',
      config: { batch_input_shape: [null, ...featureShape], dtype: 'float32', sparse: false, name: FEATURES_INPUT },
      inbound_nodes: [],
    },
    ...graph.config.layers
      .filter((l) => needed.has(l.name) && !upstream.has(l.name))
      .map((l) => ({ ...l, config: { ...l.config, trainable: true }, inbound_nodes: l.inbound_nodes.map((node) => node.map(renameRef)) })),
  ];
  const outputRefs = graph.config.output_layers.filter((r) => outputs.includes(r[0]));
  const config: FunctionalJson = {
    name: 'splitfit_head',
    layers,
    input_layers: [[FEATURES_INPUT, 0, 0]],
    output_layers: outputRefs.length === outputs.length ? outputRefs : outputs.map((o) => [o, 0, 0]),
  };
  const head = await modelFromConfig(config);
  copyWeightsByName([source], head);
  return head;
}

export async function modelFromConfig(config: FunctionalJson): Promise<tf.LayersModel> {
  return tf.models.modelFromJSON({ modelTopology: { class_name: 'Model', config } } as unknown as tf.io.ModelJSON);
}

/** Gives every layer of `target` the weights of the same-named layer among `sources`. */
export function copyWeightsByName(sources: tf.LayersModel[], target: tf.LayersModel): void {
  const byName = new Map<string, tf.layers.Layer>();
  for (const s of sources) for (const l of asFunctional(s).layers) byName.set(l.name, l);
  for (const layer of target.layers) {
    const from = byName.get(layer.name);
    if (from && layer.weights.length > 0) layer.setWeights(from.getWeights());
  }
}
