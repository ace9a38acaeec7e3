"""SpecAugment (Park et al. 2019/2020): frequency masks and adaptive time masks, length-aware."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tf_todm")
class SpecAugment(keras.layers.Layer):
    """Masks bands of a batch of features; identity unless `training=True`.

    Per example: `num_freq_masks` bands of width ~ U{0..max_freq_width} over all valid frames, and
    `min(max_time_masks, floor(time_mask_multiplicity * length))` bands of width
    ~ U{0..floor(max_time_ratio * length)} frames (adaptive masking), all inside `[0, length)`.
    Frames at or past `length` are never changed. Masked cells are set to `mask_value`: a float, or
    one float per bin (the training tasks pass the per-bin training mean of the raw log-mel, which
    the model's `FeatureNormalizer` maps to 0; a constant 0 on raw log-mel would be a loud band).

    Args:
        num_freq_masks: int (2). max_freq_width: int F (27).
        max_time_masks: int (10), cap on time masks. time_mask_multiplicity: float p_M (0.04).
        max_time_ratio: float p_S (0.05). mask_value: float or `[F]` floats (0.0). seed: int or None.

    Call args:
        features: float32 `[B, T, F]`; feature_lengths: int32 `[B]` (default: all T);
        training: bool; seed: optional int32 `[2]` tensor → stateless draws (used by tf.data
        pipelines for per-batch reproducibility); otherwise the layer's seed generator.
    Returns:
        features of the same shape (and `feature_lengths` unchanged when given).
    """

    def __init__(self, num_freq_masks=2, max_freq_width=27, max_time_masks=10, time_mask_multiplicity=0.04,
                 max_time_ratio=0.05, mask_value=0.0, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_freq_masks = int(num_freq_masks)
        self.max_freq_width = int(max_freq_width)
        self.max_time_masks = int(max_time_masks)
        self.time_mask_multiplicity = float(time_mask_multiplicity)
        self.max_time_ratio = float(max_time_ratio)
        self.mask_value = (float(mask_value) if np.ndim(mask_value) == 0
                           else [float(v) for v in np.asarray(mask_value).reshape(-1)])
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, shape, seed):
        if seed is not None:
            return tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int32))
        return keras.random.uniform(shape, seed=self.seed_generator)

    def mask(self, feature_lengths, num_frames, num_bins, seed=None):
        """Boolean mask `[B, T, F]` of the cells to overwrite."""
        batch = tf.shape(feature_lengths)[0]
        nf, nt = self.num_freq_masks, self.max_time_masks
        u = self._uniform(tf.stack([batch, 2 * (nf + nt)]), seed)
        lengths = tf.cast(feature_lengths, tf.float32)[:, None]  # (B, 1)

        def band(u_width, u_start, max_width, extent, size):
            # widths in [0, max_width], starts in [0, extent - width]; bands as [B, K, size] booleans.
            width = tf.minimum(tf.floor(u_width * (max_width + 1.0)), max_width)
            start = tf.floor(u_start * tf.maximum(extent - width + 1.0, 1.0))
            pos = tf.cast(tf.range(size), tf.float32)[None, None, :]
            return (pos >= start[:, :, None]) & (pos < (start + width)[:, :, None])

        bins = tf.cast(num_bins, tf.float32)
        freq = band(u[:, :nf], u[:, nf:2 * nf], tf.minimum(float(self.max_freq_width), bins), bins, num_bins)
        freq = tf.reduce_any(freq, axis=1)  # (B, F)
        max_width = tf.floor(self.max_time_ratio * lengths)  # (B, 1)
        time = band(u[:, 2 * nf:2 * nf + nt], u[:, 2 * nf + nt:], max_width, lengths, num_frames)
        count = tf.minimum(float(nt), tf.floor(self.time_mask_multiplicity * lengths))  # (B, 1)
        active = tf.cast(tf.range(nt), tf.float32)[None, :] < count  # (B, K)
        time = tf.reduce_any(time & active[:, :, None], axis=1)  # (B, T)
        valid = tf.sequence_mask(feature_lengths, num_frames)  # (B, T)
        return valid[:, :, None] & (time[:, :, None] | freq[:, None, :])

    def call(self, features, feature_lengths=None, training=None, seed=None):
        if not training:
            return features if feature_lengths is None else (features, feature_lengths)
        shape = tf.shape(features)
        lengths = (tf.fill([shape[0]], shape[1]) if feature_lengths is None
                   else tf.cast(feature_lengths, tf.int32))
        mask = self.mask(lengths, shape[1], shape[2], seed)
        out = tf.where(mask, tf.cast(self.mask_value, features.dtype), features)
        return out if feature_lengths is None else (out, feature_lengths)

    def compute_output_spec(self, features, feature_lengths=None, training=None, seed=None):
        out = keras.KerasTensor(features.shape, dtype=features.dtype)
        return out if feature_lengths is None else (out, keras.KerasTensor(feature_lengths.shape, dtype="int32"))

    def get_config(self):
        config = super().get_config()
        config.update(num_freq_masks=self.num_freq_masks, max_freq_width=self.max_freq_width,
                      max_time_masks=self.max_time_masks, time_mask_multiplicity=self.time_mask_multiplicity,
                      max_time_ratio=self.max_time_ratio, mask_value=self.mask_value, seed=self.seed)
        return config
