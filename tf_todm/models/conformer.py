"""Conformer block and the elastic Conformer encoder."""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from tf_todm.models.attention import RotarySelfAttention, attention_mask
from tf_todm.models.conv_module import ConvModule
from tf_todm.models.elastic import block_subnet, dropout
from tf_todm.models.feed_forward import FeedForward
from tf_todm.models.layer_norm import LayerNorm
from tf_todm.models.subsampling import build_subsampling, subsampled_lengths


@keras.saving.register_keras_serializable(package="tf_todm")
class ConformerBlock(keras.layers.Layer):
    """x + FF/2 -> x + MHSA -> x + Conv -> x + FF/2 -> LayerNorm.

    Args: model_dim D, ff_dim, num_heads, head_dim, conv_dim, conv_kernel_size, causal_conv,
      dropout_rate, rotary_base, conv_norm (see `TransducerConfig`).
    Call args: x [B, T, D]; attention_mask bool [B, T, T] or None; time_mask f32 [B, T, 1] or None;
      subnet None or per-block dict (`elastic.block_subnet`).
    Returns: [B, T, D].
    """

    def __init__(self, model_dim: int, ff_dim: int, num_heads: int, head_dim: int, conv_dim: int,
                 conv_kernel_size: int, causal_conv: bool = False, dropout_rate: float = 0.0,
                 rotary_base: float = 10000.0, conv_norm: str = "layer", **kwargs):
        super().__init__(**kwargs)
        self.model_dim = model_dim
        self.conv_norm = conv_norm
        self.ff_dim = ff_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.conv_dim = conv_dim
        self.conv_kernel_size = conv_kernel_size
        self.causal_conv = causal_conv
        self.dropout_rate = dropout_rate
        self.rotary_base = rotary_base
        self.ff1 = FeedForward(model_dim, ff_dim, dropout_rate, name="ff1")
        self.attention = RotarySelfAttention(model_dim, num_heads, head_dim, dropout_rate, rotary_base,
                                             name="attention")
        self.conv = ConvModule(model_dim, conv_dim, conv_kernel_size, causal_conv, dropout_rate, norm=conv_norm,
                               name="conv")
        self.ff2 = FeedForward(model_dim, ff_dim, dropout_rate, name="ff2")
        self.final_norm = LayerNorm(epsilon=1e-5, name="final_norm")

    def build(self, input_shape=None):
        for layer in (self.ff1, self.attention, self.conv, self.ff2):
            layer.build()
        self.final_norm.build((None, None, self.model_dim))
        self.built = True

    def call(self, x, attention_mask=None, time_mask=None, subnet=None, training=False, positions=None):
        x = x + 0.5 * self.ff1(x, subnet=subnet, training=training)
        x = x + self.attention(x, attention_mask=attention_mask, subnet=subnet, training=training, positions=positions)
        x = x + self.conv(x, time_mask=time_mask, subnet=subnet, training=training)
        x = x + 0.5 * self.ff2(x, subnet=subnet, training=training)
        return self.final_norm(x)

    # --- streaming -------------------------------------------------------------------------
    def init_state(self, batch_size: int, left_context: int):
        """(k_cache [B, Lc, H, d], v_cache [B, Lc, H, d], conv_cache [B, k-1, C])."""
        kv = tf.zeros([batch_size, left_context, self.num_heads, self.head_dim])
        return (kv, kv, self.conv.init_state(batch_size))

    def stream_step(self, x, state, positions, cache_valid):
        """One chunk. x [B, t, D]; positions int32 [t] absolute; cache_valid bool [Lc] marks cache
        slots holding real frames. Returns ([B, t, D], new state)."""
        k_cache, v_cache, conv_cache = state
        left = k_cache.shape[1]
        x = x + 0.5 * self.ff1(x)
        q, k, v = self.attention.project_qkv(x, positions)
        keys = tf.concat([k_cache, k], axis=1)
        values = tf.concat([v_cache, v], axis=1)
        t = tf.shape(x)[1]
        key_valid = tf.concat([cache_valid, tf.ones([t], tf.bool)], axis=0)
        mask = tf.broadcast_to(key_valid[tf.newaxis, tf.newaxis, :], [tf.shape(x)[0], t, left + t])
        x = x + self.attention.attend(q, keys, values, mask)
        conv_out, conv_cache = self.conv.stream_step(x, conv_cache)
        x = x + conv_out
        x = x + 0.5 * self.ff2(x)
        new_k = keys[:, tf.shape(keys)[1] - left:]
        new_v = values[:, tf.shape(values)[1] - left:]
        return self.final_norm(x), (new_k, new_v, conv_cache)

    def get_config(self):
        config = super().get_config()
        config.update(model_dim=self.model_dim, ff_dim=self.ff_dim, num_heads=self.num_heads,
                      head_dim=self.head_dim, conv_dim=self.conv_dim,
                      conv_kernel_size=self.conv_kernel_size, causal_conv=self.causal_conv,
                      dropout_rate=self.dropout_rate, rotary_base=self.rotary_base, conv_norm=self.conv_norm)
        return config


@keras.saving.register_keras_serializable(package="tf_todm")
class ConformerEncoder(keras.layers.Layer):
    """Subsampling + Conformer blocks. features [B, T, F] -> (enc [B, T', D], enc_lengths [B]).

    Args:
      input_dim, subsampling_channels, model_dim, conv_kernel_size, causal_conv, dropout_rate,
      rotary_base, chunk_size, left_context, conv_norm, subsampling_output_scale: see
      `TransducerConfig`.
      ff_dims, num_heads, conv_dims: per-block widths (lists of length L); head_dim: d.

    Depth elasticity: with a subnet, block i runs under `tf.cond(block_active[i] > 0 and not
    layer-dropped)`, so skipped blocks cost nothing (identity). Without a subnet every block runs
    (no cond, no masks: the extracted/exported graph is plain). Padded frames of the output are 0.
    """

    def __init__(self, input_dim: int, subsampling_channels: int, model_dim: int,
                 ff_dims: Sequence[int], num_heads: Sequence[int], head_dim: int,
                 conv_dims: Sequence[int], conv_kernel_size: int, causal_conv: bool = False,
                 dropout_rate: float = 0.0, rotary_base: float = 10000.0,
                 chunk_size: Optional[int] = None, left_context: Optional[int] = None,
                 conv_norm: str = "layer", subsampling_output_scale: float = 1.0,
                 subsampling: str = "conv2d", **kwargs):
        super().__init__(**kwargs)
        self.subsampling_kind = subsampling
        self.conv_norm = conv_norm
        self.subsampling_output_scale = float(subsampling_output_scale)
        self.input_dim = input_dim
        self.subsampling_channels = subsampling_channels
        self.model_dim = model_dim
        self.ff_dims = [int(v) for v in ff_dims]
        self.num_heads = [int(v) for v in num_heads]
        self.head_dim = head_dim
        self.conv_dims = [int(v) for v in conv_dims]
        self.conv_kernel_size = conv_kernel_size
        self.causal_conv = causal_conv
        self.dropout_rate = dropout_rate
        self.rotary_base = rotary_base
        self.chunk_size = chunk_size
        self.left_context = left_context
        self.subsampling = build_subsampling(subsampling, input_dim, subsampling_channels, model_dim,
                                             self.subsampling_output_scale)
        self.blocks = [
            ConformerBlock(model_dim, ff, heads, head_dim, conv, conv_kernel_size, causal_conv,
                           dropout_rate, rotary_base, conv_norm=conv_norm, name=f"block_{i}")
            for i, (ff, heads, conv) in enumerate(zip(self.ff_dims, self.num_heads, self.conv_dims))]
        # Keras 3 wraps lists in a TrackedList that tf.train.Checkpoint cannot see; a named attribute
        # per block puts every block's weights into checkpoints (tests/models/test_checkpointing.py).
        for i, block in enumerate(self.blocks):
            setattr(self, f"block_{i}", block)

    def build(self, input_shape=None):
        self.subsampling.build()
        for block in self.blocks:
            block.build()
        self.built = True

    def call(self, features, feature_lengths, subnet=None, training=False):
        x = self.subsampling(features, feature_lengths)
        x = dropout(x, self.dropout_rate if subnet is None else subnet["dropout_rate"], training)
        lengths = subsampled_lengths(tf.cast(feature_lengths, tf.int32))
        max_length = tf.shape(x)[1]
        mask = attention_mask(lengths, max_length, self.chunk_size, self.left_context)
        time_mask = tf.cast(tf.sequence_mask(lengths, max_length), x.dtype)[..., tf.newaxis]  # (B, T', 1)
        for i, block in enumerate(self.blocks):
            if subnet is None:
                x = block(x, attention_mask=mask, time_mask=time_mask, training=training)
                continue
            run = subnet["block_active"][i] > 0
            if training:
                run = tf.logical_and(run, tf.random.uniform([]) >= subnet["layer_drop_rate"])
            sub = block_subnet(subnet, i)
            x = tf.cond(run,
                        lambda b=block, s=sub, h=x: b(h, attention_mask=mask, time_mask=time_mask, subnet=s,
                                                      training=training),
                        lambda h=x: tf.identity(h))
        return x * time_mask, lengths

    # --- streaming -------------------------------------------------------------------------
    def _check_streaming(self):
        if self.chunk_size is None or self.left_context is None or not self.causal_conv:
            raise ValueError("ConformerEncoder streaming needs chunk_size, left_context and causal_conv=True "
                             f"(got {self.chunk_size}, {self.left_context}, {self.causal_conv})")

    def init_state(self, batch_size: int):
        """Zero streaming state, a flat tuple of 1 + S + 3L tensors (S = subsampling states):

        state[0]  frames_done int32 []: encoder frames emitted so far (rotary offset, cache validity)
        "conv2d" subsampling (S = 2; "stack" has none):
        state[1]  subsampling conv1 input cache f32 [B, 2, F, 1]
        state[2]  subsampling conv2 input cache f32 [B, 2, F1, subsampling_channels], F1 = (F-3)//2+1
        per block i, state[1+S+3i : 4+S+3i]:
                  key cache   f32 [B, left_context, H_i, head_dim] (keys already rotated)
                  value cache f32 [B, left_context, H_i, head_dim]
                  conv cache  f32 [B, conv_kernel_size - 1, C_i] (GLU outputs)
        """
        self._check_streaming()
        state = [tf.zeros([], tf.int32), *self.subsampling.init_state(batch_size)]
        for block in self.blocks:
            state.extend(block.init_state(batch_size, self.left_context))
        return tuple(state)

    def stream_step(self, features, state):
        """features [B, 4 * chunk_size, F] -> (enc [B, chunk_size, D], new state).

        Equals `call` with the chunked mask on the frames of this chunk (all frames valid).
        """
        self._check_streaming()
        frames_done = state[0]
        first = 1 + len(self.subsampling.state_names)
        x, sub_state = self.subsampling.stream_step(features, tuple(state[1:first]))
        t = tf.shape(x)[1]
        positions = frames_done + tf.range(t)
        left = self.left_context
        cache_valid = tf.range(left) >= left - frames_done  # slot j holds frame frames_done - left + j
        new_state = [frames_done + t, *sub_state]
        for i, block in enumerate(self.blocks):
            block_state = tuple(state[first + 3 * i: first + 3 + 3 * i])
            x, block_state = block.stream_step(x, block_state, positions, cache_valid)
            new_state.extend(block_state)
        return x, tuple(new_state)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, subsampling_channels=self.subsampling_channels,
                      model_dim=self.model_dim, ff_dims=self.ff_dims, num_heads=self.num_heads,
                      head_dim=self.head_dim, conv_dims=self.conv_dims,
                      conv_kernel_size=self.conv_kernel_size, causal_conv=self.causal_conv,
                      dropout_rate=self.dropout_rate, rotary_base=self.rotary_base,
                      chunk_size=self.chunk_size, left_context=self.left_context, conv_norm=self.conv_norm,
                      subsampling_output_scale=self.subsampling_output_scale, subsampling=self.subsampling_kind)
        return config
