"""Per-utterance random draws for training augmentation, pure functions of (pipeline seed, utterance
index, stream): reproducible inside `tf.data` maps (stateless), new each epoch (the pipeline seed
changes per epoch), and independent across augmentations (each uses its own stream)."""

from __future__ import annotations

import tensorflow as tf

SPEED_STREAM = 0
VTLP_STREAM = 7919


def utterance_uniform(seed: int, index, shape, minval: float, maxval: float, stream: int,
                      dtype=tf.float32) -> tf.Tensor:
    """`shape` draws uniform in [minval, maxval) for utterance `index` (int scalar) of pipeline
    `seed` on `stream`."""
    pair = tf.stack([tf.constant((seed + stream) % (2 ** 31 - 1), tf.int64), tf.cast(index, tf.int64)])
    return tf.random.stateless_uniform(shape, seed=pair, minval=minval, maxval=maxval, dtype=dtype)
