"""The Keras 3 peers of bench/whole-job.ts, timed like its splitfit job: load 1,000 Fashion-MNIST
images (10 x 100, or the exact images whole-job.ts drew: --indices), resize 28->224 RGB in [0,1]
(tf.image.resize bilinear: for an upscale the same arithmetic as splitfit's pixel pipeline),
MobileNetV2 (alpha 1.0, include_top=False; random weights: offline, and speed does not depend on
them), then
- --mode route (default): Keras's own feature-extraction route: `predict` the base once, `fit` a
  GAP + Dense(10, softmax) head on the features for --epochs;
- --mode end-to-end: the frozen base + the same head as one model (base.trainable = False, which
  Keras 3 runs in inference mode), `fit` on the images for --epochs.

    /tmp/tfpy/bin/python bench/python/keras_route.py [--mode route|end-to-end] [--n-per-class 100]
                                                     [--epochs 10] [--indices file.json]
Prints one JSON object.
"""
import argparse, gzip, json, time
import numpy as np

p = argparse.ArgumentParser()
p.add_argument('--n-per-class', type=int, default=100)
p.add_argument('--epochs', type=int, default=10)
p.add_argument('--data', default='/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz')
p.add_argument('--mode', choices=['route', 'end-to-end'], default='route')
p.add_argument('--indices', help='JSON list of training image indices (else a seeded draw of --n-per-class per class)')
a = p.parse_args()

t0 = time.perf_counter()
import tensorflow as tf
import keras

def idx(path):
    with gzip.open(path) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)

images = idx(a.data)
labels = idx(a.data.replace('images-idx3', 'labels-idx1'))
if a.indices:
    with open(a.indices) as f:
        pick = np.array(json.load(f), dtype=np.int64)
else:
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(labels == c), a.n_per_class, replace=False) for c in range(10)])
x = tf.image.resize(images[pick][..., None].astype('float32') / 255.0, (224, 224))
x = tf.repeat(x, 3, axis=-1)
y = keras.utils.to_categorical(labels[pick], 10)
t_data = time.perf_counter()

base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))
t_model = time.perf_counter()
def head_layers():
    return [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation='softmax')]

if a.mode == 'route':
    features = base.predict(x, batch_size=32, verbose=0)
    t_extract = time.perf_counter()
    head = keras.Sequential([keras.Input(features.shape[1:]), *head_layers()])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss='categorical_crossentropy', metrics=['accuracy'])
    head.fit(features, y, epochs=a.epochs, batch_size=32, verbose=0)
else:
    base.trainable = False
    model = keras.Sequential([keras.Input((224, 224, 3)), base, *head_layers()])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='categorical_crossentropy', metrics=['accuracy'])
    t_extract = time.perf_counter()
    model.fit(x, y, epochs=a.epochs, batch_size=32, verbose=0)
t_train = time.perf_counter()
print(json.dumps({
    'mode': a.mode, 'tf': tf.__version__, 'keras': keras.__version__, 'n': int(len(pick)), 'epochs': a.epochs,
    'seconds': t_train - t0, 'importSeconds': t_data - t0, 'modelSeconds': t_model - t_data,
    'extractSeconds': t_extract - t_model, 'trainSeconds': t_train - t_extract,
    'wholeJobExcludingImport': t_train - t_data,
}))
