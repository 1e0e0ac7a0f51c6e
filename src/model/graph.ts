import * as tf from '@tensorflow/tfjs';
import { closestMatches, SplitfitError } from '../errors.js';

/** One layer of a functional model as Keras serialises it (`model.toJSON`). */
export interface LayerJson {
  name: string;
  class_name: string;
  config: Record<string, unknown>;
  /** Keras 2 form: one list per call of the layer, each `[layerName, nodeIndex, tensorIndex, kwargs]`. */
  inbound_nodes: [string, number, number, Record<string, unknown>?][][];
}

export interface FunctionalJson {
  name: string;
  layers: LayerJson[];
  input_layers: [string, number, number][];
  output_layers: [string, number, number][];
}

/** A functional model's layer graph, in topological order (the order Keras serialises it in). */
export interface ModelGraph {
  config: FunctionalJson;
  /** Layer name → position in `config.layers`. */
  index: Map<string, number>;
  /** Layer name → names of the layers feeding it. */
  parents: Map<string, string[]>;
  inputs: string[];
  outputs: string[];
}

/** Sequential models become functional ones over the same layers, so every model has one graph form. */
export function asFunctional(model: tf.LayersModel): tf.LayersModel {
  return model instanceof tf.Sequential ? tf.model({ inputs: model.inputs, outputs: model.outputs, name: model.name }) : model;
}

export function functionalJson(model: tf.LayersModel): FunctionalJson {
  const json = asFunctional(model).toJSON(undefined, false) as unknown as { config: FunctionalJson };
  return json.config;
}

export function modelGraph(model: tf.LayersModel): ModelGraph {
  const config = functionalJson(model);
  const index = new Map(config.layers.map((l, i) => [l.name, i]));
  const parents = new Map(config.layers.map((l) => [l.name, [...new Set(l.inbound_nodes.flat().map((ref) => ref[0]))]]));
  return {
    config,
    index,
    parents,
    inputs: config.input_layers.map((r) => r[0]),
    outputs: config.output_layers.map((r) => r[0]),
  };
}

function ancestors(graph: ModelGraph, name: string): Set<string> {
  const seen = new Set<string>([name]);
  const stack = [name];
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
 * A layer is a cut when every path from the inputs to the outputs passes through its output:
 * all inputs lie upstream of it, and no layer downstream reads any other upstream tensor
 * (which is what a residual skip or a second branch of a merge does).
 */
export function isCut(graph: ModelGraph, name: string): boolean {
  const layer = graph.config.layers[graph.index.get(name) ?? -1];
  if (!layer || layer.inbound_nodes.length > 1) return false; // shared layers have several outputs
  const upstream = ancestors(graph, name);
  if (!graph.inputs.every((i) => upstream.has(i))) return false;
  for (const other of graph.config.layers) {
    if (upstream.has(other.name)) continue;
    for (const p of graph.parents.get(other.name) ?? []) {
      if (p !== name && upstream.has(p)) return false;
    }
  }
  return true;
}

export function validCuts(graph: ModelGraph): string[] {
  return graph.config.layers.map((l) => l.name).filter((n) => isCut(graph, n));
}

/** Resolves a boundary given by name or index and checks that it is a cut. */
export function resolveBoundary(graph: ModelGraph, boundary: string | number): string {
  const names = graph.config.layers.map((l) => l.name);
  let name: string | undefined;
  if (typeof boundary === 'number' || /^-?\d+$/.test(boundary)) {
    const i = Number(boundary);
    name = names[i < 0 ? names.length + i : i];
    if (name === undefined) {
      throw new SplitfitError('SPLITFIT_LAYER_NOT_FOUND', `layer index ${i} is out of range; the model has ${names.length} layers (0–${names.length - 1})`);
    }
  } else if (graph.index.has(boundary)) {
    name = boundary;
  } else {
    const near = closestMatches(boundary, names);
    throw new SplitfitError(
      'SPLITFIT_LAYER_NOT_FOUND',
      `no layer named "${boundary}"${near.length ? `; did you mean ${near.map((n) => `"${n}"`).join(', ')}?` : ''} (\`splitfit inspect <model>\` lists layers)`,
    );
  }
  if (!isCut(graph, name)) {
    const near = nearestCuts(graph, name);
    throw new SplitfitError(
      'SPLITFIT_BOUNDARY_NOT_A_CUT',
      `layer "${name}" is not a graph cut: another path (a residual skip or merge branch) bypasses it; ` +
        `valid cuts near it: ${near.map((n) => `"${n}"`).join(', ') || 'none'}`,
    );
  }
  return name;
}

/** The closest valid cut before and after a layer, in topological order. */
export function nearestCuts(graph: ModelGraph, name: string): string[] {
  const at = graph.index.get(name) ?? 0;
  const cuts = validCuts(graph);
  const before = cuts.filter((c) => graph.index.get(c)! < at).at(-1);
  const after = cuts.find((c) => graph.index.get(c)! > at);
  return [before, after].filter((c): c is string => c !== undefined);
}

/** Output shape of a layer without the batch dimension. */
export function layerOutputShape(model: tf.LayersModel, name: string): number[] {
  const shape = model.getLayer(name).outputShape;
  const single = (Array.isArray(shape[0]) ? shape[0] : shape) as (number | null)[];
  return single.slice(1).map((d) => {
    if (d === null) throw new SplitfitError('SPLITFIT_BOUNDARY_NOT_A_CUT', `layer "${name}" has a dynamic dimension; features need a fixed shape`);
    return d;
  });
}
