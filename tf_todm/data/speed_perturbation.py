"""Speed perturbation of training audio (Ko et al. 2015, "Audio augmentation for speech recognition").

Playing a waveform `factor` times faster shortens it by `1 / factor` and scales every frequency
(pitch and formants) by `factor`, which imitates a different vocal tract: the augmentation aimed at
voices the training set does not have. Here `factor` is drawn per utterance, uniformly in
`[1 - max_change, 1 + max_change]`, from a stateless seed of (pipeline seed, utterance index), so
an epoch's perturbation is reproducible and differs from epoch to epoch (the training pipeline
passes a new seed per epoch).

Resampling is linear interpolation. Without an anti-aliasing filter, speeding up folds energy above
`8 kHz / factor` back into the band; at `factor <= 1.2` that is the top ~1.3 kHz of a 16 kHz
signal, where speech carries little energy and the 80-bin log-mel front end has few bins.
"""

from __future__ import annotations

import tensorflow as tf

from tf_todm.data.seeded_draws import SPEED_STREAM, utterance_uniform


def speed_perturb(waveform: tf.Tensor, factor) -> tf.Tensor:
    """Plays `waveform` float32 `[N]` `factor` times faster: `[floor((N - 1) / factor) + 1]` samples,
    output sample m = the input linearly interpolated at position `m * factor`."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    factor = tf.cast(tf.convert_to_tensor(factor, dtype_hint=tf.float64), tf.float64)
    n = tf.shape(waveform)[0]
    out_len = tf.cast(tf.floor(tf.cast(n - 1, tf.float64) / factor), tf.int32) + 1
    positions = tf.cast(tf.range(out_len), tf.float64) * factor
    left = tf.minimum(tf.cast(tf.floor(positions), tf.int32), n - 1)
    right = tf.minimum(left + 1, n - 1)
    frac = tf.cast(positions - tf.cast(left, tf.float64), tf.float32)
    return tf.gather(waveform, left) * (1.0 - frac) + tf.gather(waveform, right) * frac


def random_speed_factor(seed: int, index, max_change: float) -> tf.Tensor:
    """The factor of utterance `index` (int64 scalar) under pipeline `seed`: float64 scalar uniform
    in `[1 - max_change, 1 + max_change]`, a pure function of (seed, index)."""
    if not 0.0 <= max_change < 0.5:
        raise ValueError(f"speed perturbation max_change must be in [0, 0.5), got {max_change}")
    u = utterance_uniform(seed, index, [], -1.0, 1.0, SPEED_STREAM, tf.float64)
    return 1.0 + max_change * u
