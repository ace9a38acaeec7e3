"""Conformer convolution module with elastic channels and a channel-mask-aware norm after the
depthwise conv: LayerNorm over channels, or BatchNorm over valid frames (the Conformer paper's)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_todm.models.config import CONV_NORMS
from tf_todm.models.elastic import dropout, prefix_mask
from tf_todm.models.feed_forward import swish
from tf_todm.models.layer_norm import LayerNorm, layer_norm


def masked_layer_norm(x, gamma, beta, channel_mask=None, epsilon: float = 1e-5):
    """LayerNorm over the last axis restricted to channels where `channel_mask` [C] is 1.

    x [..., C]. Mean and variance use only the active channels (count = sum(mask)); inactive
    channels come out 0. With `channel_mask=None` it is the plain LayerNorm over all C.
    """
    if channel_mask is None:
        return layer_norm(x, gamma, beta, epsilon)  # d * d, not SQUARE: int16x8-safe
    count = tf.reduce_sum(channel_mask)
    mean = tf.reduce_sum(x * channel_mask, axis=-1, keepdims=True) / count
    centred = (x - mean) * channel_mask
    var = tf.reduce_sum(centred * centred, axis=-1, keepdims=True) / count
    return (centred * tf.math.rsqrt(var + epsilon) * gamma + beta) * channel_mask


def masked_moments(h, time_mask=None):
    """Per-channel mean and (biased) variance of h [B, T, C] over the frames where `time_mask`
    [B, T, 1] is 1 (all frames when None) -> (mean [C], variance [C], frame count [])."""
    if time_mask is None:
        time_mask = tf.ones_like(h[..., :1])
    count = tf.reduce_sum(time_mask)
    mean = tf.reduce_sum(h * time_mask, axis=[0, 1]) / count
    centred = (h - mean) * time_mask
    return mean, tf.reduce_sum(centred * centred, axis=[0, 1]) / count, count


def batch_norm(h, mean, variance, gamma, beta, epsilon: float = 1e-5):
    """(h - mean) * rsqrt(variance + eps) * gamma + beta, per channel (last axis of h)."""
    return (h - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


@keras.saving.register_keras_serializable(package="tf_todm")
class ConvModule(keras.layers.Layer):
    """LayerNorm -> pointwise D->2C -> GLU -> depthwise conv (k) -> norm(C) -> swish
    -> pointwise C->D -> dropout (residual branch).

    Args:
      model_dim: D. conv_dim: C (max). kernel_size: k. causal: pad k-1 frames on the left only
      (else (k-1)//2 left, k//2 right). dropout_rate: rate of the full model.
      norm: "layer" (LayerNorm over the active channels of each frame) or "batch" (BatchNorm:
        per-channel statistics over the valid frames of the batch while training, moving averages
        (`momentum`) at inference, which fold into one multiply-add per channel on device; only
        the active channels' moving statistics are updated, so a subnet never writes statistics
        of channels it does not have; see `tf_todm.models.batch_norm_calibration` for the per-subnet
        re-estimate).
    Call args: x [B, T, D]; time_mask f32 [B, T, 1] or None (padded frames are zeroed before the
      depthwise conv so they never reach valid frames); subnet None or dict with scalar
      `conv_dim`, `dropout_rate`.
    Returns: [B, T, D].

    Streaming state (causal only): cache [B, k-1, C] of the last GLU outputs.
    """

    def __init__(self, model_dim: int, conv_dim: int, kernel_size: int, causal: bool = False,
                 dropout_rate: float = 0.0, norm: str = "layer", momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        if norm not in CONV_NORMS:
            raise ValueError(f"ConvModule.norm={norm!r}: expected one of {CONV_NORMS}")
        self.norm_type = norm
        self.momentum = momentum
        self.moment_sink = None  # a MomentAccumulator while `batch_norm_calibration` collects moments
        self.model_dim = model_dim
        self.conv_dim = conv_dim
        self.kernel_size = kernel_size
        self.causal = causal
        self.dropout_rate = dropout_rate
        self.norm = LayerNorm(epsilon=1e-5, name="norm")
        self.pointwise_in = keras.layers.Dense(2 * conv_dim, name="pointwise_in")
        self.depthwise = keras.layers.DepthwiseConv1D(kernel_size, padding="valid", name="depthwise")
        self.pointwise_out = keras.layers.Dense(model_dim, name="pointwise_out")

    def build(self, input_shape=None):
        self.norm.build((None, None, self.model_dim))
        self.pointwise_in.build((None, None, self.model_dim))
        self.depthwise.build((None, None, self.conv_dim))
        self.conv_norm_gamma = self.add_weight(shape=(self.conv_dim,), initializer="ones", name="conv_norm_gamma")
        self.conv_norm_beta = self.add_weight(shape=(self.conv_dim,), initializer="zeros", name="conv_norm_beta")
        if self.norm_type == "batch":
            self.conv_norm_moving_mean = self._moving_statistic("conv_norm_moving_mean", "zeros")
            self.conv_norm_moving_variance = self._moving_statistic("conv_norm_moving_variance", "ones")
        self.pointwise_out.build((None, None, self.conv_dim))
        self.built = True

    def _moving_statistic(self, name: str, initializer: str):
        """A non-trainable [C] variable each tf.distribute replica updates locally (synchronization
        "on_read", so the update inside the encoder's per-block `tf.cond` needs no cross-replica
        merge) and that reads, e.g. when checkpointed, as the mean over replicas."""
        with keras.name_scope(self.name, caller=self):
            return keras.Variable(initializer=initializer, shape=(self.conv_dim,), dtype=self.variable_dtype,
                                  trainable=False, aggregation="mean", synchronization="on_read", name=name)

    def _glu(self, x, channel_mask):
        h = self.pointwise_in(self.norm(x))
        h = h[..., :self.conv_dim] * tf.sigmoid(h[..., self.conv_dim:])
        if channel_mask is not None:
            h *= channel_mask
        return h

    def _normalize(self, h, time_mask, channel_mask, training):
        if self.norm_type == "layer":
            return masked_layer_norm(h, self.conv_norm_gamma, self.conv_norm_beta, channel_mask)
        if training:
            mean, variance, count = masked_moments(h, time_mask)
            if self.moment_sink is not None:
                self.moment_sink.add(mean, variance, count)
            else:
                self._update_moving_statistics(mean, variance, channel_mask)
        else:
            mean, variance = self.conv_norm_moving_mean, self.conv_norm_moving_variance
        h = batch_norm(h, mean, variance, self.conv_norm_gamma, self.conv_norm_beta)
        return h if channel_mask is None else h * channel_mask

    def _update_moving_statistics(self, mean, variance, channel_mask):
        rate = 1.0 - self.momentum
        if channel_mask is not None:
            rate *= channel_mask
        self.conv_norm_moving_mean.assign_add(rate * (mean - self.conv_norm_moving_mean))
        self.conv_norm_moving_variance.assign_add(rate * (variance - self.conv_norm_moving_variance))

    def _after_depthwise(self, h, time_mask, channel_mask, rate, training):
        h = swish(self._normalize(h, time_mask, channel_mask, training))
        return dropout(self.pointwise_out(h), rate, training)

    def call(self, x, time_mask=None, subnet=None, training=False):
        channel_mask, rate = None, self.dropout_rate
        if subnet is not None:
            channel_mask = prefix_mask(subnet["conv_dim"], self.conv_dim)
            rate = subnet["dropout_rate"]
        h = self._glu(x, channel_mask)
        if time_mask is not None:
            h *= time_mask
        k = self.kernel_size
        pad = [k - 1, 0] if self.causal else [(k - 1) // 2, k // 2]
        h = self.depthwise(tf.pad(h, [[0, 0], pad, [0, 0]]))
        return self._after_depthwise(h, time_mask, channel_mask, rate, training)

    def init_state(self, batch_size: int):
        return tf.zeros([batch_size, self.kernel_size - 1, self.conv_dim])

    def stream_step(self, x, cache):
        """x [B, t, D] continuing the stream (causal only) -> ([B, t, D], new cache)."""
        if not self.causal:
            raise ValueError("ConvModule.stream_step: streaming needs causal=True")
        h = tf.concat([cache, self._glu(x, None)], axis=1)
        new_cache = h[:, tf.shape(h)[1] - (self.kernel_size - 1):]
        return self._after_depthwise(self.depthwise(h), None, None, 0.0, False), new_cache

    def get_config(self):
        config = super().get_config()
        config.update(model_dim=self.model_dim, conv_dim=self.conv_dim, kernel_size=self.kernel_size,
                      causal=self.causal, dropout_rate=self.dropout_rate, norm=self.norm_type,
                      momentum=self.momentum)
        return config
