"""Subprocess for test_scaled_adam: ScaledAdam under MirroredStrategy on 2 logical CPUs.

Logical devices must be configured before TensorFlow initialises, hence a separate process.
Prints one JSON line: max |weights(mirrored) - weights(single device)| after 10 custom-loop steps
(one of them with an infinite loss) and the skip counters; with `--fit` also the first/last loss
of a `model.fit` under the strategy.
"""
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tf_todm.optim import ScaledAdam  # noqa: E402

GLOBAL_BATCH, STEPS = 12, 10
rng = np.random.default_rng(0)
xs = rng.standard_normal((STEPS * GLOBAL_BATCH, 5)).astype(np.float32)
ys = rng.standard_normal((STEPS * GLOBAL_BATCH, 3)).astype(np.float32)
multipliers = [np.float32(np.inf) if s == 4 else np.float32(1.0) for s in range(STEPS)]


def make_model():
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="tanh"),
                             keras.layers.Dense(3)])


def make_optimizer():
    return ScaledAdam(learning_rate=0.05, size_update_period=3, clipping_update_period=4)


def loss_fn(model, x, y, m):
    per_example = tf.reduce_sum(tf.square(model(x) - y), axis=-1)
    return tf.reduce_sum(per_example) / GLOBAL_BATCH * m


single = make_model()
single_opt = make_optimizer()
initial = single.get_weights()


@tf.function
def single_step(x, y, m):
    with tf.GradientTape() as tape:
        loss = loss_fn(single, x, y, m)
    single_opt.apply(tape.gradient(loss, single.trainable_variables), single.trainable_variables)


strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = make_model()
    mirrored.set_weights(initial)
    mirrored_opt = make_optimizer()
    mirrored_opt.build(mirrored.trainable_variables)


@tf.function
def mirrored_step(batch, m):
    def replica_fn(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(mirrored, x, y, m)
        mirrored_opt.apply(tape.gradient(loss, mirrored.trainable_variables),
                           mirrored.trainable_variables)

    strategy.run(replica_fn, args=batch)


dataset = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(GLOBAL_BATCH)
dist_iter = iter(strategy.experimental_distribute_dataset(dataset))
for s in range(STEPS):
    lo, hi = s * GLOBAL_BATCH, (s + 1) * GLOBAL_BATCH
    single_step(xs[lo:hi], ys[lo:hi], tf.constant(multipliers[s]))
    mirrored_step(next(dist_iter), tf.constant(multipliers[s]))

diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), mirrored.get_weights()))
finite = all(np.isfinite(w).all() for w in mirrored.get_weights())

result = {
    "num_replicas": strategy.num_replicas_in_sync,
    "max_abs_diff": diff if finite else float("inf"),
    "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(initial, mirrored.get_weights())),
    "skipped": [int(single_opt.num_skipped_steps.numpy()), int(mirrored_opt.num_skipped_steps.numpy())],
}
if "--fit" in sys.argv:  # model.fit under the strategy (slow: traces Keras' train function)
    with strategy.scope():
        fitted = make_model()
        fitted.compile(optimizer=make_optimizer(), loss="mse")
    history = fitted.fit(xs, np.tanh(xs[:, :3]), batch_size=GLOBAL_BATCH, epochs=4, verbose=0)
    result["fit_loss_first"] = float(history.history["loss"][0])
    result["fit_loss_last"] = float(history.history["loss"][-1])
print(json.dumps(result))
