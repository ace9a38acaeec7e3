"""Transducer predictors (prediction networks): stateless (default) and LSTM.

Both map labels [B, U] to [B, U+1, P] with the blank id prepended as the start symbol, and offer a
single-step form `step(tokens [B], state) -> (out [B, P], state)` with tuple state for decoding
and on-device export.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.models.elastic import dropout, prefix_mask


def embed(embedding, tokens):
    """Embedding lookup as `tf.gather` on the weight ([V, P] at int32 ids [...] -> [..., P]).

    Keras' `Embedding.call` lowers to LESS + SELECT (negative-index handling), which TFLite-Micro
    cannot run; GATHER is a builtin everywhere.
    """
    return tf.gather(embedding.embeddings, tf.cast(tokens, tf.int32))


def prepend_blank(labels):
    """[B, U] int -> [B, U+1] int32 with BLANK_ID first."""
    labels = tf.cast(labels, tf.int32)
    return tf.pad(labels, [[0, 0], [1, 0]], constant_values=BLANK_ID)


@keras.saving.register_keras_serializable(package="tf_todm")
class StatelessPredictor(keras.layers.Layer):
    """Embedding(V, P) -> causal depthwise conv over `context` tokens (no bias) -> ReLU.

    Args: vocab_size V, predictor_dim P (max), context (tokens seen, >= 1), dropout_rate.
    Elastic width: embedding channels >= predictor_dim are zeroed; the depthwise conv is per
    channel without bias, so outputs equal a model with sliced embedding/conv channels.
    State: (emb_cache [B, context-1, P],), the previous embeddings (zeros before the start).
    """

    def __init__(self, vocab_size: int, predictor_dim: int, context: int = 2, dropout_rate: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.predictor_dim = predictor_dim
        self.context = context
        self.dropout_rate = dropout_rate
        self.embedding = keras.layers.Embedding(vocab_size, predictor_dim, name="embedding")
        self.context_conv = keras.layers.DepthwiseConv1D(context, padding="valid", use_bias=False,
                                                         name="context_conv")

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        self.context_conv.build((None, None, self.predictor_dim))
        self.built = True

    def _embed(self, tokens, subnet, training):
        e = embed(self.embedding, tokens)
        rate = self.dropout_rate
        if subnet is not None:
            e *= prefix_mask(subnet["predictor_dim"], self.predictor_dim)
            rate = subnet["dropout_rate"]
        return dropout(e, rate, training)

    def call(self, labels, subnet=None, training=False):
        e = self._embed(prepend_blank(labels), subnet, training)  # (B, U+1, P)
        e = tf.pad(e, [[0, 0], [self.context - 1, 0], [0, 0]])
        return tf.nn.relu(self.context_conv(e))

    def init_state(self, batch_size: int):
        return (tf.zeros([batch_size, self.context - 1, self.predictor_dim]),)

    def step(self, tokens, state, subnet=None):
        """tokens int32 [B] -> (out [B, P], new state)."""
        e = self._embed(tf.cast(tokens, tf.int32)[:, tf.newaxis], subnet, False)  # (B, 1, P)
        window = tf.concat([state[0], e], axis=1)  # (B, context, P)
        out = tf.nn.relu(self.context_conv(window))[:, 0]
        return out, (window[:, 1:],)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, predictor_dim=self.predictor_dim, context=self.context,
                      dropout_rate=self.dropout_rate)
        return config


@keras.saving.register_keras_serializable(package="tf_todm")
class LstmPredictor(keras.layers.Layer):
    """Embedding(V, P) -> one LSTM layer of P units.

    Its width is NOT elastic (a subnet must keep `predictor_dim == P`; `search_space` gives a
    single predictor choice for it). State: (h [B, P], c [B, P]).
    """

    def __init__(self, vocab_size: int, predictor_dim: int, dropout_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.predictor_dim = predictor_dim
        self.dropout_rate = dropout_rate
        self.embedding = keras.layers.Embedding(vocab_size, predictor_dim, name="embedding")
        self.lstm = keras.layers.LSTM(predictor_dim, return_sequences=True, name="lstm")

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        self.lstm.build((None, None, self.predictor_dim))
        self.built = True

    def call(self, labels, subnet=None, training=False):
        rate = self.dropout_rate if subnet is None else subnet["dropout_rate"]
        e = dropout(embed(self.embedding, prepend_blank(labels)), rate, training)
        return dropout(self.lstm(e), rate, training)

    def init_state(self, batch_size: int):
        zeros = tf.zeros([batch_size, self.predictor_dim])
        return (zeros, zeros)

    def step(self, tokens, state, subnet=None):
        """tokens int32 [B] -> (out [B, P], (h, c))."""
        e = embed(self.embedding, tokens)
        h, (h2, c) = self.lstm.cell(e, list(state))
        return h, (h2, c)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, predictor_dim=self.predictor_dim,
                      dropout_rate=self.dropout_rate)
        return config
