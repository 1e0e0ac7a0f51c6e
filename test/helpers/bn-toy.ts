import * as tf from '@tensorflow/tfjs';

const init = (seed: number) => tf.initializers.glorotUniform({ seed });

/**
 * The frozen-BN toy of the mode detectors' tests: conv → BN (frozen, moving statistics set away from
 * the data's) → relu → GAP → dense `units` with `activation`, compiled with Adam 0.1 and `loss`. A
 * stock `fit` on it falls into the frozen-BN trap; the same model locked does not.
 */
export function frozenBnToy(size: number, units: number, activation: 'softmax' | 'sigmoid' | 'linear', loss: string, metrics: string[] = []): tf.Sequential {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [size, size, 3], filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(1), name: 'conv', trainable: false }),
      tf.layers.batchNormalization({ name: 'bn', trainable: false }),
      tf.layers.activation({ activation: 'relu', name: 'relu' }),
      tf.layers.globalAveragePooling2d({ name: 'gap' }),
      tf.layers.dense({ units, activation, kernelInitializer: init(2), name: 'out' }),
    ],
  });
  const bn = model.getLayer('bn');
  const [gamma, beta] = bn.getWeights();
  const stats = [tf.fill([4], 1), tf.fill([4], 0.1)];
  bn.setWeights([gamma!, beta!, ...stats]);
  tf.dispose(stats);
  model.compile({ optimizer: tf.train.adam(0.1), loss, metrics });
  return model;
}
