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

/**
 * Checks a model.json's `modelTopology` (raw JSON, before tfjs sees it) for the shapes that make
 * `tf.loadLayersModel` hang or silently misbuild: tfjs re-queues a layer call until its inbound
 * node exists, so a cycle, a missing inbound layer or a node index that never comes loops forever,
 * and a duplicate layer name overwrites the first layer. Nested models are checked too.
 * Throws SPLITFIT_MODEL_LOAD naming the field and the layer; `where` names the file.
 */
export function checkTopology(modelTopology: unknown, where: string): void {
  const top = asRecord(modelTopology, where, 'modelTopology');
  const cfg = top['model_config'] === undefined ? top : asRecord(top['model_config'], where, 'modelTopology.model_config');
  checkModelConfig(cfg, where, cfg === top ? 'modelTopology' : 'modelTopology.model_config', 0);
}

/** Layers a malformed file may list before we refuse it: far above any real model, far below a hang. */
export const MAX_LAYERS = 100_000;
/** Models nested inside models: real ones nest one or two deep; the bound keeps the check's recursion shallow. */
export const MAX_NESTING = 32;

function topologyError(where: string, field: string, what: string): SplitfitError {
  return new SplitfitError('SPLITFIT_MODEL_LOAD', `${where}: ${field} ${what}; re-export the model from Keras or tfjs (model.save)`);
}

function asRecord(v: unknown, where: string, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw topologyError(where, field, `is ${describeJson(v)}; expected an object`);
  return v as Record<string, unknown>;
}

function asArray(v: unknown, where: string, field: string): unknown[] {
  if (!Array.isArray(v)) throw topologyError(where, field, `is ${describeJson(v)}; expected an array`);
  return v;
}

/** A short description of a JSON value for messages: `null`, `a number (3)`, `an array`. */
export function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return `a number (${v})`;
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)})`;
  return `${typeof v === 'object' ? 'an' : 'a'} ${typeof v}`;
}

function checkModelConfig(model: Record<string, unknown>, where: string, field: string, depth: number): void {
  if (depth > MAX_NESTING) throw topologyError(where, field, `nests models more than ${MAX_NESTING} deep`);
  if (typeof model['class_name'] !== 'string') throw topologyError(where, `${field}.class_name`, `is ${describeJson(model['class_name'])}; expected a string`);
  const className = model['class_name'];
  const config = model['config'];
  // Sequential models are stored either as {layers: [...]} or, in old files, as the bare array.
  const layersField = Array.isArray(config) ? `${field}.config` : `${field}.config.layers`;
  const layers = Array.isArray(config) ? config : asArray(asRecord(config, where, `${field}.config`)['layers'], where, layersField);
  if (layers.length > MAX_LAYERS) throw topologyError(where, layersField, `lists ${layers.length} layers; at most ${MAX_LAYERS} are supported`);
  const names = new Map<string, number>();
  const parsed = layers.map((raw, i) => {
    const f = `${layersField}[${i}]`;
    const layer = asRecord(raw, where, f);
    // Functional layers are looked up by their top-level name; Sequential ones may be unnamed (tfjs names them).
    const sequential = className === 'Sequential';
    const named = sequential ? asRecord(layer['config'] ?? {}, where, `${f}.config`)['name'] : layer['name'];
    if (!(sequential && named === undefined) && (typeof named !== 'string' || named === '')) {
      throw topologyError(where, sequential ? `${f}.config.name` : `${f}.name`, `is ${describeJson(named)}; expected a layer name`);
    }
    const name = typeof named === 'string' ? named : `#${i}`;
    if (typeof layer['class_name'] !== 'string') throw topologyError(where, `${f}.class_name`, `(layer "${name}") is ${describeJson(layer['class_name'])}; expected a string`);
    const first = names.get(name);
    if (first !== undefined) {
      throw topologyError(where, sequential ? `${f}.config.name` : `${f}.name`, `is "${name}", the name of ${layersField}[${first}] too; layer names must be unique`);
    }
    names.set(name, i);
    if (isModelClass(layer['class_name']) && typeof layer['config'] === 'object' && layer['config'] !== null) checkModelConfig(layer, where, f, depth + 1);
    return { name, className: layer['class_name'], raw: layer, field: f };
  });
  if (className === 'Sequential') return;

  // Functional: every inbound reference names an existing node, and the node graph is acyclic.
  const nodeCount = new Map<string, number>();
  const inbound = new Map<string, unknown[]>();
  // An InputLayer or a nested model makes node 0 when tfjs constructs it; each listed call adds the next node.
  const firstCall = (className: string): number => (className === 'InputLayer' || isModelClass(className) ? 1 : 0);
  for (const l of parsed) {
    const nodes = asArray(l.raw['inbound_nodes'] ?? [], where, `${l.field}.inbound_nodes`);
    inbound.set(l.name, nodes);
    nodeCount.set(l.name, firstCall(l.className) + nodes.length);
  }
  const checkRef = (ref: unknown, f: string, owner: string | undefined): string => {
    const r = asArray(ref, where, f);
    const [layer, node, tensor] = r;
    const of = owner === undefined ? '' : `(an input of layer "${owner}") `;
    if (typeof layer !== 'string') throw topologyError(where, `${f}[0]`, `${of}is ${describeJson(layer)}; expected a layer name`);
    if (!names.has(layer)) {
      const near = closestMatches(layer, [...names.keys()]);
      throw topologyError(where, `${f}[0]`, `${of}names layer "${layer}", which is not in the model${near.length ? ` (did you mean ${near.map((n) => `"${n}"`).join(', ')}?)` : ''}`);
    }
    const count = nodeCount.get(layer)!;
    if (!Number.isInteger(node) || (node as number) < 0 || (node as number) >= count) {
      throw topologyError(where, `${f}[1]`, `${of}is node ${JSON.stringify(node)} of layer "${layer}", which has ${count} node${count === 1 ? '' : 's'}`);
    }
    if (!Number.isInteger(tensor) || (tensor as number) < 0) throw topologyError(where, `${f}[2]`, `${of}is ${describeJson(tensor)}; expected a tensor index ≥ 0`);
    return `${layer}#${node as number}`;
  };
  // Node id `layer#k` → the node ids it reads.
  const deps = new Map<string, string[]>();
  for (const l of parsed) {
    inbound.get(l.name)!.forEach((node, k) => {
      const f = `${l.field}.inbound_nodes[${k}]`;
      deps.set(`${l.name}#${firstCall(l.className) + k}`, asArray(node, where, f).map((ref, j) => checkRef(ref, `${f}[${j}]`, l.name)));
    });
  }
  for (const key of ['input_layers', 'output_layers'] as const) {
    const f = `${field}.config.${key}`;
    const refs = asArray((config as Record<string, unknown>)[key], where, f);
    if (refs.length === 0) throw topologyError(where, f, 'is empty; a functional model needs at least one');
    refs.forEach((ref, j) => checkRef(ref, `${f}[${j}]`, undefined));
  }
  const cycle = findCycle(deps);
  if (cycle !== undefined) {
    const path = cycle.map((id) => `"${id.slice(0, id.lastIndexOf('#'))}"`).join(' → ');
    throw topologyError(where, `${field}.config.layers`, `has a cycle in inbound_nodes: ${path}; a layer cannot (indirectly) read its own output`);
  }
}

function isModelClass(className: string): boolean {
  return className === 'Functional' || className === 'Model' || className === 'Sequential';
}

/** A cycle in a dependency map as a node path that ends where it starts, or undefined. Iterative, so a deep chain cannot overflow the stack. */
function findCycle(deps: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  for (const start of deps.keys()) {
    if (state.has(start)) continue;
    const stack: { id: string; next: number }[] = [{ id: start, next: 0 }];
    state.set(start, 'open');
    while (stack.length > 0) {
      const top = stack.at(-1)!;
      const children = deps.get(top.id) ?? [];
      if (top.next >= children.length) {
        state.set(top.id, 'done');
        stack.pop();
        continue;
      }
      const child = children[top.next++]!;
      const s = state.get(child);
      if (s === 'open') {
        const from = stack.findIndex((e) => e.id === child);
        // deps point from a node to what it reads, so the path runs against the data flow; show it forwards.
        return [...stack.slice(from).map((e) => e.id), child].reverse();
      }
      if (s === undefined) {
        state.set(child, 'open');
        stack.push({ id: child, next: 0 });
      }
    }
  }
  return undefined;
}
