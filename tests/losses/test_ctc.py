"""CTC loss vs brute-force enumeration of frame-level paths (float64)."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.losses import ctc


def collapse(path, blank):
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def brute_force_ctc(logits, labels, blank):
    lp = logits.astype(np.float64)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    scores = [sum(lp[t, s] for t, s in enumerate(path))
              for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0])
              if collapse(path, blank) == list(labels)]
    return -np.logaddexp.reduce(scores)


@pytest.mark.parametrize("blank", [0, 4])
def test_matches_brute_force(blank):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(3, 5, 5)) * 2).astype(np.float32)
    choices = [v for v in range(5) if v != blank]
    labels = rng.choice(choices, size=(3, 3)).astype(np.int32)
    labels[0, 1] = labels[0, 0]  # a repeat needs a blank in between
    logit_lengths = np.array([5, 4, 3], np.int32)
    label_lengths = np.array([3, 2, 1], np.int32)
    loss = ctc.ctc_loss(logits, labels, logit_lengths, label_lengths, blank=blank).numpy()
    expected = [brute_force_ctc(logits[b, : logit_lengths[b]], labels[b, : label_lengths[b]],
                                blank) for b in range(3)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_gradient_is_finite_and_padding_free():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 6, 7)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = ctc.ctc_loss(x, np.array([[1, 2], [3, 0]], np.int32), np.array([6, 4]),
                            np.array([2, 1]))
    grad = tape.gradient(loss, x).numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[1, 4:], 0.0, atol=1e-7)


def test_rank_error():
    with pytest.raises(ValueError, match="ctc_loss: logits"):
        ctc.ctc_loss(np.zeros((2, 3), np.float32), np.zeros((2, 1), np.int32), [3, 3], [1, 1])
