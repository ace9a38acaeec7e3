"""Transducer joiner with separable input projections (for step-wise decoding)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_todm.models.elastic import prefix_mask


@keras.saving.register_keras_serializable(package="tf_todm")
class Joiner(keras.layers.Layer):
    """logits = W_out tanh(W_enc enc + W_pred pred).

    Args: encoder_dim D, predictor_dim P, joiner_dim J (max), vocab_size V.
    Elastic width: `project_encoder` / `project_predictor` zero the units >= joiner_dim, and
    tanh(0) = 0, so `join` equals the sliced joiner without further masking.
    """

    def __init__(self, encoder_dim: int, predictor_dim: int, joiner_dim: int, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder_dim = encoder_dim
        self.predictor_dim = predictor_dim
        self.joiner_dim = joiner_dim
        self.vocab_size = vocab_size
        self.encoder_proj = keras.layers.Dense(joiner_dim, name="encoder_proj")
        self.predictor_proj = keras.layers.Dense(joiner_dim, name="predictor_proj")
        self.output_dense = keras.layers.Dense(vocab_size, name="output_dense")

    def build(self, input_shape=None):
        self.encoder_proj.build((None, self.encoder_dim))
        self.predictor_proj.build((None, self.predictor_dim))
        self.output_dense.build((None, self.joiner_dim))
        self.built = True

    def _mask(self, x, subnet):
        if subnet is None:
            return x
        return x * prefix_mask(subnet["joiner_dim"], self.joiner_dim)

    def project_encoder(self, enc, subnet=None):
        """enc [..., D] -> [..., J]."""
        return self._mask(self.encoder_proj(enc), subnet)

    def project_predictor(self, pred, subnet=None):
        """pred [..., P] -> [..., J]."""
        return self._mask(self.predictor_proj(pred), subnet)

    def join(self, enc_proj, pred_proj):
        """Broadcasting join: e.g. [B, T', 1, J] + [B, 1, U+1, J] -> [B, T', U+1, V]."""
        return self.output_dense(tf.tanh(enc_proj + pred_proj))

    def call(self, enc, pred, subnet=None):
        """Full lattice: enc [B, T', D], pred [B, U+1, P] -> [B, T', U+1, V]."""
        return self.join(self.project_encoder(enc, subnet)[:, :, tf.newaxis],
                         self.project_predictor(pred, subnet)[:, tf.newaxis])

    def get_config(self):
        config = super().get_config()
        config.update(encoder_dim=self.encoder_dim, predictor_dim=self.predictor_dim,
                      joiner_dim=self.joiner_dim, vocab_size=self.vocab_size)
        return config
