"""Elastic supernet: one trace for all subnets, supernet-with-subnet == extracted, rates, importance sort."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.export.extract import extract_subnet
from tf_todm.models import Transducer, encode_subnet
from tf_todm.models.testing import tiny_batch, tiny_config, tiny_space


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return Transducer(tiny_config())


def test_one_trace_serves_every_subnet(model):
    config = model.config
    space = tiny_space(config)
    traces = []

    @tf.function
    def step(features, lengths, labels, subnet):
        traces.append(1)
        enc, _ = model.encode(features, lengths, subnet=subnet, training=True)
        pred = model.predict(labels, subnet=subnet, training=True)
        return model.joiner(enc, pred, subnet)

    features, lengths, labels = tiny_batch()
    rng = np.random.default_rng(0)
    for i in range(10):
        sub = encode_subnet(config, space.sample(rng), dropout_rate=0.05 * (i % 3), layer_drop_rate=0.1)
        step(features, lengths, labels, sub)
    assert len(traces) == 1


def _outputs(model, features, lengths, labels, subnet=None):
    enc, enc_lengths = model.encode(features, lengths, subnet=subnet)
    pred = model.predict(labels, subnet=subnet)
    logits = model.joiner(enc, pred, subnet)
    am, lm = model.simple_heads(enc, pred)
    return enc.numpy(), enc_lengths.numpy(), logits.numpy(), am.numpy(), lm.numpy()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_supernet_with_subnet_equals_extracted(model, seed):
    features, lengths, labels = tiny_batch(seed)
    space = tiny_space(model.config)
    rng = np.random.default_rng(seed)
    subnet_config = space.smallest() if seed == 0 else space.sample(rng)
    got = _outputs(model, features, lengths, labels, encode_subnet(model.config, subnet_config))
    extracted = extract_subnet(model, subnet_config)
    want = _outputs(extracted, features, lengths, labels)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    # The subnet really differs from the full model (the masks do something).
    full = _outputs(model, features, lengths, labels)
    assert not np.allclose(full[2], got[2], atol=1e-3)


def test_largest_subnet_equals_full_model(model):
    features, lengths, labels = tiny_batch(5)
    got = _outputs(model, features, lengths, labels, encode_subnet(model.config, tiny_space(model.config).largest()))
    want = _outputs(model, features, lengths, labels)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_dropout_and_layer_drop_follow_subnet_rates(model):
    features, lengths, labels = tiny_batch()
    largest = tiny_space(model.config).largest()
    quiet = encode_subnet(model.config, largest, dropout_rate=0.0, layer_drop_rate=0.0)
    a = model.encode(features, lengths, subnet=quiet, training=True)[0].numpy()
    b = model.encode(features, lengths, subnet=quiet)[0].numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    noisy = encode_subnet(model.config, largest, dropout_rate=0.5, layer_drop_rate=0.0)
    c = model.encode(features, lengths, subnet=noisy, training=True)[0].numpy()
    assert np.abs(c - b).max() > 1e-2
    # layer_drop_rate=1 skips every block: the output is the subsampled input (masked).
    skip = encode_subnet(model.config, largest, dropout_rate=0.0, layer_drop_rate=1.0)
    d, enc_lengths = model.encode(features, lengths, subnet=skip, training=True)
    x = model.encoder.subsampling(features).numpy()
    mask = np.arange(x.shape[1])[None, :, None] < enc_lengths.numpy()[:, None, None]
    np.testing.assert_allclose(d.numpy(), x * mask, atol=1e-6)
