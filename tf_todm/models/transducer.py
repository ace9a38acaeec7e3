"""The Conformer-Transducer (supernet and extracted subnets alike)."""

from __future__ import annotations

from typing import Union

import keras
import tensorflow as tf

from tf_todm.models.config import TransducerConfig
from tf_todm.models.conformer import ConformerEncoder
from tf_todm.models.joiner import Joiner
from tf_todm.models.predictor import LstmPredictor, StatelessPredictor


def build_encoder(config: TransducerConfig) -> ConformerEncoder:
    dims = [config.block_dims(i) for i in range(config.num_blocks)]
    return ConformerEncoder(
        input_dim=config.input_dim, subsampling_channels=config.subsampling_channels,
        model_dim=config.model_dim, ff_dims=[d[0] for d in dims], num_heads=[d[1] for d in dims],
        head_dim=config.resolved_head_dim, conv_dims=[d[2] for d in dims],
        conv_kernel_size=config.conv_kernel_size, causal_conv=config.causal_conv,
        dropout_rate=config.dropout, rotary_base=config.rotary_base, chunk_size=config.chunk_size,
        left_context=config.left_context, conv_norm=config.conv_norm,
        subsampling_output_scale=config.subsampling_output_scale, subsampling=config.subsampling,
        name="encoder")


def build_predictor(config: TransducerConfig):
    if config.predictor_type == "lstm":
        return LstmPredictor(config.vocab_size, config.predictor_dim, config.dropout, name="predictor")
    return StatelessPredictor(config.vocab_size, config.predictor_dim, config.predictor_context,
                              config.dropout, name="predictor")


@keras.saving.register_keras_serializable(package="tf_todm")
class Transducer(keras.Model):
    """Conformer encoder + predictor + joiner, plus the pruned loss' simple heads and a CTC head.

    Args:
      config: a `TransducerConfig` (or its dict).

    All weights are created in the constructor (shapes come from the config).
    `subnet` arguments take `encode_subnet(config, subnet_config)` (None = full model).
    Note: `predict` is the prediction network (it shadows `keras.Model.predict`, which this model
    does not use).
    """

    def __init__(self, config: Union[TransducerConfig, dict], **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = TransducerConfig.from_dict(config)
        self.config = config
        self.encoder = build_encoder(config)
        self.predictor = build_predictor(config)
        self.joiner = Joiner(config.model_dim, config.predictor_dim, config.joiner_dim, config.vocab_size,
                             name="joiner")
        self.simple_am = keras.layers.Dense(config.vocab_size, name="simple_am")
        self.simple_lm = keras.layers.Dense(config.vocab_size, name="simple_lm")
        self.ctc_head = (keras.layers.Dense(config.vocab_size, name="ctc_head")
                         if config.use_ctc_head else None)
        self.build()

    def build(self, input_shape=None):
        self.encoder.build()
        self.predictor.build()
        self.joiner.build()
        self.simple_am.build((None, self.config.model_dim))
        self.simple_lm.build((None, self.config.predictor_dim))
        if self.ctc_head is not None:
            self.ctc_head.build((None, self.config.model_dim))
        self.built = True

    def encode(self, features, feature_lengths, subnet=None, training=False):
        """features [B, T, F], feature_lengths [B] -> (enc [B, T', D], enc_lengths int32 [B])."""
        features = tf.convert_to_tensor(features, tf.float32)
        feature_lengths = tf.cast(tf.convert_to_tensor(feature_lengths), tf.int32)
        return self.encoder(features, feature_lengths, subnet=subnet, training=training)

    def predict(self, labels, subnet=None, training=False):
        """labels [B, U] -> pred [B, U+1, P] (blank prepended)."""
        labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
        return self.predictor(labels, subnet=subnet, training=training)

    def simple_heads(self, enc, pred):
        """(am [B, T', V], lm [B, U+1, V]): linear heads for the pruned loss' trivial joiner."""
        return self.simple_am(enc), self.simple_lm(pred)

    def ctc_logits(self, enc):
        """[B, T', V] CTC logits from the encoder output."""
        if self.ctc_head is None:
            raise ValueError("Transducer.ctc_logits: config.use_ctc_head is False")
        return self.ctc_head(enc)

    def call(self, inputs, subnet=None, training=False):
        """inputs: dict with features [B, T, F], feature_lengths [B], labels [B, U].

        Returns dict: encoder [B, T', D], encoder_lengths [B], predictor [B, U+1, P].
        """
        enc, enc_lengths = self.encode(inputs["features"], inputs["feature_lengths"], subnet, training)
        pred = self.predict(inputs["labels"], subnet, training)
        return {"encoder": enc, "encoder_lengths": enc_lengths, "predictor": pred}

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
