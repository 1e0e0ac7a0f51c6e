"""Peer measurement for bench/extraction.ts: MobileNetV2 (alpha 1.0, 224x224x3, no top) or
InceptionV3 (299x299x3, no top), random weights — throughput does not depend on the values — in
Python TensorFlow on the same machine.

    python bench/python/mobilenet_predict.py [--arch MobileNetV2|InceptionV3] [--size 224]
                                             [--batch 32] [--batches 8] [--warmup 2] [--json]

Times `model.predict(x, batch_size=B)` and a `tf.function(jit_compile=False)` call of the model in
inference mode on one batch of B images, and prints images/s for each (median of the timed batches).
With --json the last stdout line is one JSON object. Needs `tensorflow-cpu` and `keras`.
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402


def timed(fn, warmup, batches):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["MobileNetV2", "InceptionV3"], default="MobileNetV2")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    wall0 = time.perf_counter()

    arch = getattr(keras.applications, args.arch)
    model = arch(weights=None, include_top=False, input_shape=(args.size, args.size, 3))
    x = np.random.default_rng(0).random((args.batch, args.size, args.size, 3), dtype=np.float32)
    xt = tf.constant(x)

    fn = tf.function(lambda t: model(t, training=False))
    results = {}
    t = timed(lambda: model.predict(x, batch_size=args.batch, verbose=0), args.warmup, args.batches)
    results["predict"] = args.batch / statistics.median(t)
    t = timed(lambda: fn(xt).numpy(), args.warmup, args.batches)
    results["tf_function"] = args.batch / statistics.median(t)

    out = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "arch": args.arch,
        "size": args.size,
        "batch": args.batch,
        "batches": args.batches,
        "imagesPerSecond": results,
        # Whole-process CPU and wall time, so the caller can tell its own load from other jobs'.
        "cpuSeconds": time.process_time(),
        "wallSeconds": time.perf_counter() - wall0,
        "threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(), "inter": tf.config.threading.get_inter_op_parallelism_threads()},
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in results.items():
            print(f"{k:12s} {v:7.1f} img/s  (TF {tf.__version__}, batch {args.batch})")


if __name__ == "__main__":
    main()
