"""LayerNorm written with ops every TFLite quantized mode has kernels for.

Keras' `LayerNormalization` computes the variance with `moments` (TFLite SQUARED_DIFFERENCE) and
the output as `x * inv + (-mean * inv + beta)` (NEG). LiteRT has no int16 SQUARED_DIFFERENCE
kernel, so an int16x8 model built from it converts but fails at run time ("SquaredDifference only
supports FLOAT32 and INT32"). `LayerNorm` is the same layer (subclass, same `gamma`/`beta`
variables, names and shapes, so checkpoints and weight copies are unchanged) with

    d = x - mean(x);  y = d * rsqrt(mean(d * d) + eps) * gamma + beta

i.e. MEAN, SUB, MUL, ADD, RSQRT only. Centring before scaling also keeps the quantized
intermediates small (no large `x * inv` and `-mean * inv` terms that cancel).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def layer_norm(x, gamma, beta, epsilon: float = 1e-5):
    """LayerNorm over the last axis. x [..., D]; gamma, beta [D] -> [..., D]."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centred = x - mean
    variance = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
    return centred * tf.math.rsqrt(variance + epsilon) * gamma + beta


@keras.saving.register_keras_serializable(package="tf_todm")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis with the quantization-friendly graph
    of `layer_norm` (same constructor, variables and config; only `axis=-1`, center and scale)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.center or not self.scale or self.rms_scaling:
            raise ValueError(f"LayerNorm: only center=True, scale=True is supported, got center={self.center}, "
                             f"scale={self.scale}, rms_scaling={self.rms_scaling}")

    def build(self, input_shape):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if [a % len(input_shape) for a in axes] != [len(input_shape) - 1]:
            raise ValueError(f"LayerNorm: only the last axis is supported, got axis={self.axis} "
                             f"for input shape {tuple(input_shape)}")
        super().build(input_shape)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        out = layer_norm(x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32), self.epsilon)
        return tf.cast(out, self.compute_dtype)
