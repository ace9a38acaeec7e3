"""Multi-head self-attention with rotary positions, elastic heads and chunked-causal masks."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tf_todm.models.elastic import dropout, prefix_mask
from tf_todm.models.layer_norm import LayerNorm

NEG_INF = -30.0
"""Additive bias of a masked attention score. Bounded on purpose: exp(-30) ~ 1e-13 is zero weight
for practical purposes, while a huge constant (-1e9) would blow up the int8 range of the score
tensor in full-int8 TFLite models (every real score quantizes to 0)."""


def attention_mask(lengths, max_length, chunk_size: Optional[int] = None,
                   left_context: Optional[int] = None) -> tf.Tensor:
    """Boolean [B, T', T'] (query, key): key is a valid frame and, with `chunk_size`, lies in the
    query's chunk or an earlier one, at most `left_context` frames before the chunk start.

    Pure function of its arguments; `chunk_size=None` means full attention over valid keys.
    """
    keys = tf.range(max_length)
    valid = keys[tf.newaxis, :] < tf.cast(lengths, tf.int32)[:, tf.newaxis]  # (B, T')
    mask = tf.broadcast_to(valid[:, tf.newaxis, :], [tf.shape(valid)[0], max_length, max_length])
    if chunk_size is not None:
        mask = tf.logical_and(mask, chunk_mask(max_length, chunk_size, left_context)[tf.newaxis])
    return mask


def chunk_mask(length, chunk_size: int, left_context: Optional[int] = None) -> tf.Tensor:
    """Boolean [T', T']: query i sees key j iff chunk(j) <= chunk(i) and
    j >= chunk(i) * chunk_size - left_context."""
    pos = tf.range(length)
    query_chunk = (pos // chunk_size)[:, tf.newaxis]
    allowed = (pos // chunk_size)[tf.newaxis, :] <= query_chunk
    if left_context is not None:
        allowed = tf.logical_and(allowed, pos[tf.newaxis, :] >= query_chunk * chunk_size - left_context)
    return allowed


def rotary_tables(positions, head_dim: int, base: float = 10000.0):
    """(cos, sin) of shape [T, head_dim // 2] for integer `positions` [T].

    Frequency i is base^(-2i / head_dim). cos is computed as sin(x + pi/2) so only the SIN op is
    needed on device.
    """
    inv_freq = tf.constant(1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim), tf.float32)
    angles = tf.cast(positions, tf.float32)[:, tf.newaxis] * inv_freq[tf.newaxis, :]
    return tf.sin(angles + np.float32(np.pi / 2)), tf.sin(angles)


def apply_rotary(x, cos, sin):
    """Rotates pairs (x[..., i], x[..., i + d/2]) of x [B, T, H, d] by the angles of (cos, sin) [T, d/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos = cos[tf.newaxis, :, tf.newaxis, :]
    sin = sin[tf.newaxis, :, tf.newaxis, :]
    return tf.concat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


@keras.saving.register_keras_serializable(package="tf_todm")
class RotarySelfAttention(keras.layers.Layer):
    """Pre-norm MHSA module of a Conformer block (returns the residual branch, not x + branch).

    Args:
      model_dim: D. num_heads: H (max heads). head_dim: d. dropout_rate: output dropout.
      rotary_base: rotary frequency base.

    Call args:
      x: [B, T, D]. attention_mask: bool [B, T, T] (query, key) or None. subnet: None or dict with scalar
      `num_heads` (active heads are a prefix) and `dropout_rate`. positions: int32 [T] absolute
      frame positions (default 0..T-1).
    Returns: [B, T, D].

    Elastic heads: outputs of heads >= num_heads are zeroed before the output projection, equal
    to a model whose Q/K/V/output weights are sliced to the first heads.
    """

    def __init__(self, model_dim: int, num_heads: int, head_dim: int, dropout_rate: float = 0.0,
                 rotary_base: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.model_dim = model_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout_rate = dropout_rate
        self.rotary_base = rotary_base
        inner = num_heads * head_dim
        self.norm = LayerNorm(epsilon=1e-5, name="norm")
        self.query = keras.layers.Dense(inner, name="query")
        self.key = keras.layers.Dense(inner, name="key")
        self.value = keras.layers.Dense(inner, name="value")
        self.output_dense = keras.layers.Dense(model_dim, name="output_dense")

    def build(self, input_shape=None):
        self.norm.build((None, None, self.model_dim))
        for layer in (self.query, self.key, self.value):
            layer.build((None, None, self.model_dim))
        self.output_dense.build((None, None, self.num_heads * self.head_dim))
        self.built = True

    def _split(self, x):
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1], self.num_heads, self.head_dim])  # (B, T, H, d)

    def project_qkv(self, x, positions):
        """Rotated queries/keys and values, each [B, T, H, d]."""
        h = self.norm(x)
        cos, sin = rotary_tables(positions, self.head_dim, self.rotary_base)
        q = apply_rotary(self._split(self.query(h)), cos, sin)
        k = apply_rotary(self._split(self.key(h)), cos, sin)
        return q, k, self._split(self.value(h))

    def attend(self, q, k, v, mask, subnet=None, training=False):
        """q [B, Tq, H, d], k/v [B, Tk, H, d], mask bool [B, Tq, Tk] or None -> [B, Tq, D]."""
        q = tf.transpose(q, [0, 2, 1, 3])  # (B, H, Tq, d)
        k = tf.transpose(k, [0, 2, 3, 1])  # (B, H, d, Tk)
        v = tf.transpose(v, [0, 2, 1, 3])  # (B, H, Tk, d)
        scores = tf.matmul(q, k) * (1.0 / float(np.sqrt(self.head_dim)))  # (B, H, Tq, Tk)
        if mask is not None:
            scores += (1.0 - tf.cast(mask, scores.dtype))[:, tf.newaxis] * NEG_INF
        weights = tf.nn.softmax(scores, axis=-1)
        out = tf.matmul(weights, v)  # (B, H, Tq, d)
        if subnet is not None:
            out *= prefix_mask(subnet["num_heads"], self.num_heads)[tf.newaxis, :, tf.newaxis, tf.newaxis]
        out = tf.transpose(out, [0, 2, 1, 3])
        shape = tf.shape(out)
        out = tf.reshape(out, [shape[0], shape[1], self.num_heads * self.head_dim])  # (B, Tq, H*d)
        rate = self.dropout_rate if subnet is None else subnet["dropout_rate"]
        return dropout(self.output_dense(out), rate, training)

    def call(self, x, attention_mask=None, subnet=None, training=False, positions=None):
        if positions is None:
            positions = tf.range(tf.shape(x)[1])
        q, k, v = self.project_qkv(x, positions)
        return self.attend(q, k, v, attention_mask, subnet, training)

    def get_config(self):
        config = super().get_config()
        config.update(model_dim=self.model_dim, num_heads=self.num_heads, head_dim=self.head_dim,
                      dropout_rate=self.dropout_rate, rotary_base=self.rotary_base)
        return config
