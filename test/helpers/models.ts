import * as tf from '@tensorflow/tfjs';

/** A tiny residual CNN: stem → two residual blocks (with BN) → GAP → softmax. */
export function residualToyModel(seed = 1): tf.LayersModel {
  const init = (k: number): ReturnType<typeof tf.initializers.glorotUniform> => tf.initializers.glorotUniform({ seed: seed * 100 + k });
  const input = tf.input({ shape: [16, 16, 3], name: 'image' });
  let x = tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', kernelInitializer: init(0), name: 'stem' }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'stem_bn' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.reLU({ name: 'stem_relu' }).apply(x) as tf.SymbolicTensor;
  for (const b of [1, 2]) {
    const skip = x;
    let y = tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', kernelInitializer: init(b), name: `block${b}_conv` }).apply(x) as tf.SymbolicTensor;
    y = tf.layers.batchNormalization({ name: `block${b}_bn` }).apply(y) as tf.SymbolicTensor;
    y = tf.layers.reLU({ name: `block${b}_relu` }).apply(y) as tf.SymbolicTensor;
    x = tf.layers.add({ name: `block${b}_add` }).apply([skip, y]) as tf.SymbolicTensor;
  }
  x = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(9), name: 'classifier' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'toy' });
}

/** Gives every BN layer non-trivial moving statistics, so inference differs from identity. */
export function randomizeBatchNorm(model: tf.LayersModel, seed = 7): void {
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const shapes = layer.getWeights().map((w) => w.shape);
    layer.setWeights(shapes.map((s, i) => (i === 3 ? tf.randomUniform(s, 0.5, 2, 'float32', seed + i) : tf.randomNormal(s, 0, 0.5, 'float32', seed + i))));
  }
}
