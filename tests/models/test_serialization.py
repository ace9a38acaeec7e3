"""Every layer: build, call, JSON-identical get_config round trip, same outputs after copying
weights; the Transducer saves and loads as `.keras`."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.models import Transducer
from tf_todm.models.attention import RotarySelfAttention
from tf_todm.models.conformer import ConformerBlock, ConformerEncoder
from tf_todm.models.conv_module import ConvModule
from tf_todm.models.feed_forward import FeedForward
from tf_todm.models.joiner import Joiner
from tf_todm.models.predictor import LstmPredictor, StatelessPredictor
from tf_todm.models.subsampling import ConvSubsampling, StackSubsampling
from tf_todm.models.testing import tiny_batch, tiny_config

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 11, 12)).astype(np.float32)
FEATURES, LENGTHS, LABELS = tiny_batch()

CASES = [
    (ConvSubsampling, dict(input_dim=13, channels=6, model_dim=12), (FEATURES,)),
    (StackSubsampling, dict(input_dim=13, hidden_dim=7, model_dim=12, output_scale=2.0), (FEATURES, LENGTHS)),
    (ConvModule, dict(model_dim=12, conv_dim=10, kernel_size=5, norm="batch"), (X,)),
    (FeedForward, dict(model_dim=12, ff_dim=10, dropout_rate=0.1), (X,)),
    (RotarySelfAttention, dict(model_dim=12, num_heads=3, head_dim=4, dropout_rate=0.1), (X,)),
    (ConvModule, dict(model_dim=12, conv_dim=10, kernel_size=5, causal=True), (X,)),
    (ConformerBlock, dict(model_dim=12, ff_dim=10, num_heads=3, head_dim=4, conv_dim=10,
                          conv_kernel_size=5), (X,)),
    (ConformerEncoder, dict(input_dim=13, subsampling_channels=6, model_dim=12, ff_dims=[10, 7],
                            num_heads=[3, 2], head_dim=4, conv_dims=[10, 5], conv_kernel_size=5,
                            chunk_size=2, left_context=3), (FEATURES, LENGTHS)),
    (StatelessPredictor, dict(vocab_size=7, predictor_dim=8, context=3), (LABELS,)),
    (LstmPredictor, dict(vocab_size=7, predictor_dim=8), (LABELS,)),
    (Joiner, dict(encoder_dim=12, predictor_dim=8, joiner_dim=9, vocab_size=7),
     (X, RNG.normal(size=(3, 4, 8)).astype(np.float32))),
]


def _flat(out):
    return [np.asarray(o) for o in tf.nest.flatten(out)]


@pytest.mark.parametrize("cls, kwargs, inputs", CASES, ids=[c[0].__name__ for c in CASES])
def test_layer_config_round_trip(cls, kwargs, inputs):
    layer = cls(**kwargs)
    layer.build()
    out = layer(*inputs)
    config = layer.get_config()
    clone = cls.from_config(json.loads(json.dumps(config)))
    clone.build()
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    clone.set_weights(layer.get_weights())
    for a, b in zip(_flat(clone(*inputs)), _flat(out)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Registered: the generic Keras (de)serialiser finds the class by name.
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is cls
    # Training mode runs (dropout path) and gives finite values.
    if "dropout_rate" in kwargs:
        assert all(np.isfinite(o).all() for o in _flat(layer(*inputs, training=True)))


@pytest.mark.parametrize("changes", [{}, {"conv_norm": "batch", "subsampling_output_scale": 3.0,
                                          "subsampling": "stack"}])
def test_transducer_keras_save_load(tmp_path, changes):
    model = Transducer(tiny_config(chunk_size=2, left_context=3, **changes))
    for block in model.encoder.blocks:  # non-default statistics must survive the round trip
        for variable in block.conv.non_trainable_variables:
            variable.assign(np.full(variable.shape, 0.6, np.float32))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Transducer)
    assert loaded.config == model.config
    a = model({"features": FEATURES, "feature_lengths": LENGTHS, "labels": LABELS})
    b = loaded({"features": FEATURES, "feature_lengths": LENGTHS, "labels": LABELS})
    for key in a:
        np.testing.assert_allclose(np.asarray(b[key]), np.asarray(a[key]), atol=1e-6)
