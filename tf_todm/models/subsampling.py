"""4x time subsampling front ends, both after global feature normalisation:

* `ConvSubsampling` ("conv2d"): two time-causal 3x3 stride-2 Conv2D layers and a linear projection;
* `StackSubsampling` ("stack"): 4 frames stacked, Dense + ReLU, linear projection (a stride-4
  Conv1D with kernel 4, as in DeepSpeech-style front ends): no streaming cache, ~1/6 the MACs.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_todm.data.features import FeatureNormalizer


def subsampled_lengths(lengths):
    """Encoder frames for `lengths` feature frames: ceil(ceil(T / 2) / 2) = ceil(T / 4).

    Works on Python ints, numpy arrays and int32 tensors.
    """
    return (lengths + 3) // 4


@keras.saving.register_keras_serializable(package="tf_todm")
class ConvSubsampling(keras.layers.Layer):
    """Features [B, T, F] -> [B, ceil(T/4), D].

    The features are first normalised with fixed per-bin training statistics (`feature_norm`, a
    `FeatureNormalizer`; identity until `set_statistics` is called, normally by the training task),
    so the conv stack sees zero-mean unit-variance inputs and the left padding (zeros) is the mean.
    Each conv pads 2 frames on the LEFT in time only (none on the right, none in frequency), so
    output frame t of a conv sees input frames 2t-2 .. 2t: valid outputs never read padded inputs,
    and a chunked run with a 2-frame cache per conv is exact.

    The projection's output is multiplied by `output_scale` (ESPnet scales by sqrt(D): the
    Glorot-initialised stack gives an output RMS of ~0.1, which the first attention module's
    near time-constant output, RMS ~1, would otherwise drown).

    Args:
      input_dim: F. channels: conv channels. model_dim: D. output_scale: constant factor.

    Streaming state (see `init_state` / `stream_step`): (cache1 [B, 2, F, 1], cache2 [B, 2, F1, C])
    with F1 = (F - 3) // 2 + 1; chunks must hold a multiple of 4 feature frames.
    """

    def __init__(self, input_dim: int, channels: int, model_dim: int, output_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.output_scale = float(output_scale)
        self.input_dim = input_dim
        self.channels = channels
        self.model_dim = model_dim
        self.conv1 = keras.layers.Conv2D(channels, 3, strides=2, padding="valid", activation="relu", name="conv1")
        self.conv2 = keras.layers.Conv2D(channels, 3, strides=2, padding="valid", activation="relu", name="conv2")
        self.freq1 = (input_dim - 3) // 2 + 1
        self.freq2 = (self.freq1 - 3) // 2 + 1
        self.proj = keras.layers.Dense(model_dim, name="proj")
        self.feature_norm = FeatureNormalizer(input_dim, name="feature_norm")

    def build(self, input_shape=None):
        self.conv1.build((None, None, self.input_dim, 1))
        self.conv2.build((None, None, self.freq1, self.channels))
        self.proj.build((None, None, self.freq2 * self.channels))
        self.built = True

    def _project(self, x):
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], self.freq2 * self.channels])  # (B, T', F2*C)
        x = self.proj(x)
        return x if self.output_scale == 1.0 else x * self.output_scale

    state_names = ("subsample_cache_1", "subsample_cache_2")

    def call(self, features, feature_lengths=None):
        """`feature_lengths` is unused: the causal convs never read frames past a valid one."""
        x = self.feature_norm(features)[..., tf.newaxis]  # (B, T, F, 1)
        x = self.conv1(tf.pad(x, [[0, 0], [2, 0], [0, 0], [0, 0]]))
        x = self.conv2(tf.pad(x, [[0, 0], [2, 0], [0, 0], [0, 0]]))
        return self._project(x)

    def init_state(self, batch_size: int):
        return (tf.zeros([batch_size, 2, self.input_dim, 1]),
                tf.zeros([batch_size, 2, self.freq1, self.channels]))

    def stream_step(self, features, state):
        """features [B, 4k, F] (a chunk continuing the previous ones) -> ([B, k, D], new state)."""
        x = tf.concat([state[0], self.feature_norm(features)[..., tf.newaxis]], axis=1)
        new1 = x[:, -2:]
        x = self.conv1(x)
        x = tf.concat([state[1], x], axis=1)
        new2 = x[:, -2:]
        x = self.conv2(x)
        return self._project(x), (new1, new2)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, channels=self.channels, model_dim=self.model_dim,
                      output_scale=self.output_scale)
        return config


@keras.saving.register_keras_serializable(package="tf_todm")
class StackSubsampling(keras.layers.Layer):
    """Features [B, T, F] -> [B, ceil(T/4), D]: normalise, stack frames 4t..4t+3, Dense(4F -> H) +
    ReLU, Dense(H -> D), times `output_scale`.

    Normalised padded frames (past `feature_lengths`, and the tail up to a multiple of 4) are set to
    0, the training mean, so an utterance's last encoder frame is the same in any batch. Encoder
    frame t reads feature frames 4t..4t+3 only: a chunk of 4k frames streams exactly with no state.

    Args:
      input_dim: F. hidden_dim: H. model_dim: D. output_scale: constant factor on the output.
    """

    state_names = ()

    def __init__(self, input_dim: int, hidden_dim: int, model_dim: int, output_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.model_dim = model_dim
        self.output_scale = float(output_scale)
        self.hidden = keras.layers.Dense(hidden_dim, activation="relu", name="hidden")
        self.proj = keras.layers.Dense(model_dim, name="proj")
        self.feature_norm = FeatureNormalizer(input_dim, name="feature_norm")

    def build(self, input_shape=None):
        self.hidden.build((None, None, 4 * self.input_dim))
        self.proj.build((None, None, self.hidden_dim))
        self.built = True

    def _stack(self, x):
        shape = tf.shape(x)
        frames = subsampled_lengths(shape[1])
        x = tf.pad(x, [[0, 0], [0, 4 * frames - shape[1]], [0, 0]])
        x = tf.reshape(x, [shape[0], frames, 4 * self.input_dim])  # (B, T', 4F)
        x = self.proj(self.hidden(x))
        return x if self.output_scale == 1.0 else x * self.output_scale

    def call(self, features, feature_lengths=None):
        x = self.feature_norm(features)
        if feature_lengths is not None:
            x *= tf.sequence_mask(feature_lengths, tf.shape(x)[1], x.dtype)[..., tf.newaxis]
        return self._stack(x)

    def init_state(self, batch_size: int):
        return ()

    def stream_step(self, features, state):
        """features [B, 4k, F] -> ([B, k, D], ())."""
        return self._stack(self.feature_norm(features)), ()

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, hidden_dim=self.hidden_dim, model_dim=self.model_dim,
                      output_scale=self.output_scale)
        return config


def build_subsampling(kind: str, input_dim: int, channels: int, model_dim: int, output_scale: float = 1.0,
                      name: str = "subsampling"):
    """"conv2d" -> `ConvSubsampling(channels)`; "stack" -> `StackSubsampling(hidden_dim=channels)`."""
    if kind == "conv2d":
        return ConvSubsampling(input_dim, channels, model_dim, output_scale=output_scale, name=name)
    if kind == "stack":
        return StackSubsampling(input_dim, channels, model_dim, output_scale=output_scale, name=name)
    raise ValueError(f"subsampling={kind!r}: expected 'conv2d' or 'stack'")
