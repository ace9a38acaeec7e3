"""Transducer supernet: shapes, padding invariance, one trace for all subnets, supernet == extracted."""

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.export.extract import extract_subnet
from tf_todm.models import Transducer, encode_subnet, sort_by_importance, subsampled_lengths
from tf_todm.models.testing import B, F, T, V, tiny_batch, tiny_config, tiny_space


@pytest.fixture(scope="module", params=["stateless", "lstm"])
def model(request):
    tf.random.set_seed(1)
    return Transducer(tiny_config(predictor_type=request.param))


def test_shapes(model):
    features, lengths, labels = tiny_batch()
    enc, enc_lengths = model.encode(features, lengths)
    t_enc = subsampled_lengths(T)
    assert enc.shape == (B, t_enc, 12)
    np.testing.assert_array_equal(enc_lengths.numpy(), subsampled_lengths(lengths))
    pred = model.predict(labels)
    assert pred.shape == (B, labels.shape[1] + 1, 8)
    e, p = model.joiner.project_encoder(enc), model.joiner.project_predictor(pred)
    lattice = model.joiner.join(e[:, :, None], p[:, None])
    assert lattice.shape == (B, t_enc, labels.shape[1] + 1, V)
    # Pairs form: [B, T', S, J] with S predictor positions gathered per frame.
    idx = np.array([0, 2])
    pairs = model.joiner.join(e[:, :, None], tf.gather(p, idx, axis=1)[:, None])
    np.testing.assert_allclose(pairs.numpy(), tf.gather(lattice, idx, axis=2).numpy(), atol=1e-6)
    am, lm = model.simple_heads(enc, pred)
    assert am.shape == (B, t_enc, V) and lm.shape == (B, labels.shape[1] + 1, V)
    assert model.ctc_logits(enc).shape == (B, t_enc, V)
    out = model({"features": features, "feature_lengths": lengths, "labels": labels})
    np.testing.assert_allclose(out["encoder"].numpy(), enc.numpy(), atol=1e-6)


def test_padded_frames_do_not_influence_valid_frames(model):
    features, lengths, _ = tiny_batch()
    enc, enc_lengths = model.encode(features, lengths)
    garbage = features.copy()
    for b, n in enumerate(lengths):
        garbage[b, n:] = 100.0 * np.random.default_rng(b).normal(size=garbage[b, n:].shape)
    enc2, _ = model.encode(garbage, lengths)
    for b, n in enumerate(enc_lengths.numpy()):
        np.testing.assert_allclose(enc2[b, :n].numpy(), enc[b, :n].numpy(), atol=1e-5)
        assert np.all(enc2[b, n:].numpy() == 0.0)
    # Each utterance alone (no padding at all) gives the same valid frames.
    for b, n in enumerate(lengths):
        alone, _ = model.encode(features[b:b + 1, :n], lengths[b:b + 1])
        np.testing.assert_allclose(alone[0].numpy(), enc[b, :alone.shape[1]].numpy(), atol=1e-5)


def test_label_padding_is_causal(model):
    _, _, labels = tiny_batch()
    pred = model.predict(labels)
    other = labels.copy()
    other[2, 3:] = 5
    pred2 = model.predict(other)
    np.testing.assert_allclose(pred2[2, :4].numpy(), pred[2, :4].numpy(), atol=1e-6)
    assert not np.allclose(pred2[2, 4:].numpy(), pred[2, 4:].numpy())


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


def test_sort_by_importance_keeps_full_model_outputs():
    tf.random.set_seed(3)
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
