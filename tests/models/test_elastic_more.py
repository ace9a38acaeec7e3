"""Elastic supernet, continued: importance sort, gradients of a subnet, LSTM-predictor subnets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.export.extract import extract_subnet
from tf_todm.models import SubnetConfig, Transducer, encode_subnet, sort_by_importance
from tf_todm.models.testing import tiny_batch, tiny_config, tiny_space


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return Transducer(tiny_config())


def _outputs(model, features, lengths, labels, subnet=None):
    enc, enc_lengths = model.encode(features, lengths, subnet=subnet)
    pred = model.predict(labels, subnet=subnet)
    logits = model.joiner(enc, pred, subnet)
    am, lm = model.simple_heads(enc, pred)
    return enc.numpy(), enc_lengths.numpy(), logits.numpy(), am.numpy(), lm.numpy()


def test_sort_by_importance_keeps_full_model_outputs():
    keras.utils.set_random_seed(3)
    model = Transducer(tiny_config())
    features, lengths, labels = tiny_batch(7)
    before = _outputs(model, features, lengths, labels)
    sub = encode_subnet(model.config, tiny_space(model.config).smallest())
    small_before = _outputs(model, features, lengths, labels, sub)
    sort_by_importance(model)
    after = _outputs(model, features, lengths, labels)
    for g, w in zip(after, before):
        np.testing.assert_allclose(g, w, atol=1e-5)
    small_after = _outputs(model, features, lengths, labels, sub)
    assert not np.allclose(small_after[2], small_before[2], atol=1e-4)
    # Prefixes are now ordered: L1 norms of FF output rows are non-increasing.
    norms = np.abs(model.encoder.blocks[0].ff1.outer.kernel.numpy()).sum(axis=1)
    assert np.all(np.diff(norms) <= 1e-7)
    head_norms = np.abs(model.encoder.blocks[1].attention.output_dense.kernel.numpy()).reshape(3, -1).sum(axis=1)
    assert np.all(np.diff(head_norms) <= 1e-7)


def test_lstm_predictor_subnet_equals_extracted():
    keras.utils.set_random_seed(2)
    model = Transducer(tiny_config(predictor_type="lstm"))
    features, lengths, labels = tiny_batch(4)
    subnet_config = tiny_space(model.config).sample(np.random.default_rng(4))
    got = _outputs(model, features, lengths, labels, encode_subnet(model.config, subnet_config))
    want = _outputs(extract_subnet(model, subnet_config), features, lengths, labels)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_gradients_reach_only_the_active_subnet(model):
    """Inside one tf.function: inactive blocks and masked units get exactly zero gradient, active
    ones non-zero; every trainable variable gets a gradient tensor (no None)."""
    features, lengths, labels = tiny_batch(2)
    subnet_config = SubnetConfig(1, (3,), (1,), (5,), 3, 4)
    subnet = encode_subnet(model.config, subnet_config, dropout_rate=0.0)

    @tf.function
    def grads(features, lengths, labels, subnet):
        with tf.GradientTape() as tape:
            enc, _ = model.encode(features, lengths, subnet=subnet, training=True)
            pred = model.predict(labels, subnet=subnet, training=True)
            logits = model.joiner(enc, pred, subnet)
            am, lm = model.simple_heads(enc, pred)
            loss = sum(tf.reduce_mean(tf.square(x)) for x in (logits, am, lm, model.ctc_logits(enc)))
        return tape.gradient(loss, model.trainable_variables)

    result = grads(features, lengths, labels, subnet)
    missing = [v.path for v, x in zip(model.trainable_variables, result) if x is None]
    assert not missing, missing
    grad = {id(v): tf.convert_to_tensor(x).numpy() for v, x in zip(model.trainable_variables, result)}
    blocks = model.encoder.blocks
    assert np.abs(grad[id(blocks[1].ff1.inner.kernel)]).max() == 0.0
    inner = grad[id(blocks[0].ff1.inner.kernel)]
    assert np.abs(inner[:, :3]).max() > 0 and np.abs(inner[:, 3:]).max() == 0.0
    query = grad[id(blocks[0].attention.query.kernel)]
    assert np.abs(query[:, :4]).max() > 0 and np.abs(query[:, 4:]).max() == 0.0
    joiner_out = grad[id(model.joiner.output_dense.kernel)]
    assert np.abs(joiner_out[:4]).max() > 0 and np.abs(joiner_out[4:]).max() == 0.0
