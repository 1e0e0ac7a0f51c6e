import type * as tf from '@tensorflow/tfjs';
import { asFunctional, isCut, modelGraph } from './graph.js';

export interface LayerInfo {
  name: string;
  className: string;
  outputShape: (number | null)[] | (number | null)[][];
  isCut: boolean;
  batchNorm: boolean;
  params: number;
}

export interface ModelInfo {
  name: string;
  inputShape: (number | null)[];
  layers: LayerInfo[];
  validCuts: string[];
  batchNormLayers: number;
  params: { total: number; trainable: number };
}

export function inspectModel(model: tf.LayersModel): ModelInfo {
  const functional = asFunctional(model);
  const graph = modelGraph(functional);
  const layers = graph.config.layers.map((l): LayerInfo => {
    const layer = functional.getLayer(l.name);
    return {
      name: l.name,
      className: l.class_name,
      outputShape: layer.outputShape as LayerInfo['outputShape'],
      isCut: isCut(graph, l.name),
      batchNorm: l.class_name === 'BatchNormalization',
      params: layer.countParams(),
    };
  });
  const trainable = functional.trainableWeights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0);
  return {
    name: model.name,
    inputShape: functional.inputs[0]?.shape ?? [],
    layers,
    validCuts: layers.filter((l) => l.isCut).map((l) => l.name),
    batchNormLayers: layers.filter((l) => l.batchNorm).length,
    params: { total: functional.countParams(), trainable },
  };
}
