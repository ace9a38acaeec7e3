"""Transducer: shapes, join broadcasting, padding invariance, causal predictor."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.models import Transducer, subsampled_lengths
from tf_todm.models.testing import B, T, V, tiny_batch, tiny_config


@pytest.fixture(scope="module", params=["stateless", "lstm"])
def model(request):
    keras.utils.set_random_seed(1)
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
