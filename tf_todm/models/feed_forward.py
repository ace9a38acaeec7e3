"""Macaron feed-forward module with an elastic hidden width."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_todm.models.elastic import dropout, prefix_mask
from tf_todm.models.layer_norm import LayerNorm


def swish(x):
    """x * sigmoid(x), written out so TFLite gets LOGISTIC + MUL builtins."""
    return x * tf.sigmoid(x)


@keras.saving.register_keras_serializable(package="tf_todm")
class FeedForward(keras.layers.Layer):
    """LayerNorm -> Dense(D -> F) -> swish -> dropout -> Dense(F -> D) -> dropout (residual branch).

    Args: model_dim: D. ff_dim: F (max). dropout_rate: rate of the full model.
    Call args: x [B, T, D]; subnet: None or dict with scalar `ff_dim`, `dropout_rate`.
    Returns: [B, T, D]. Hidden units >= ff_dim are zeroed after the activation, equal to slicing
    the first `ff_dim` columns of the first kernel and rows of the second.
    """

    def __init__(self, model_dim: int, ff_dim: int, dropout_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.model_dim = model_dim
        self.ff_dim = ff_dim
        self.dropout_rate = dropout_rate
        self.norm = LayerNorm(epsilon=1e-5, name="norm")
        self.inner = keras.layers.Dense(ff_dim, name="inner")
        self.outer = keras.layers.Dense(model_dim, name="outer")

    def build(self, input_shape=None):
        self.norm.build((None, None, self.model_dim))
        self.inner.build((None, None, self.model_dim))
        self.outer.build((None, None, self.ff_dim))
        self.built = True

    def call(self, x, subnet=None, training=False):
        h = swish(self.inner(self.norm(x)))
        rate = self.dropout_rate
        if subnet is not None:
            h *= prefix_mask(subnet["ff_dim"], self.ff_dim)
            rate = subnet["dropout_rate"]
        h = dropout(h, rate, training)
        return dropout(self.outer(h), rate, training)

    def get_config(self):
        config = super().get_config()
        config.update(model_dim=self.model_dim, ff_dim=self.ff_dim, dropout_rate=self.dropout_rate)
        return config
