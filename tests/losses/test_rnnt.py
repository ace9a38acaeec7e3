"""Exact RNN-T loss vs brute-force alignment enumeration, float64 finite differences and autodiff."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.losses import rnnt


def log_softmax64(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def brute_force_nll(logits, labels, num_frames, num_labels, blank):
    """Sum over every alignment explicitly (one utterance, float64)."""
    lp = log_softmax64(logits)
    scores = []
    for label_steps in itertools.combinations(range(num_frames + num_labels - 1), num_labels):
        t = u = 0
        score = 0.0
        for step in range(num_frames + num_labels - 1):
            if step in label_steps:
                score += lp[t, u, labels[u]]
                u += 1
            else:
                score += lp[t, u, blank]
                t += 1
        scores.append(score + lp[t, u, blank])
    return -np.logaddexp.reduce(scores)


def numpy_dp_nll(logits, labels, num_frames, num_labels, blank):
    """Textbook alpha recursion (one utterance, float64)."""
    lp = log_softmax64(logits)
    alpha = np.full((num_frames, num_labels + 1), -np.inf)
    alpha[0, 0] = 0.0
    for t in range(num_frames):
        for u in range(num_labels + 1):
            if t > 0:
                alpha[t, u] = np.logaddexp(alpha[t, u], alpha[t - 1, u] + lp[t - 1, u, blank])
            if u > 0:
                alpha[t, u] = np.logaddexp(alpha[t, u],
                                           alpha[t, u - 1] + lp[t, u - 1, labels[u - 1]])
    return -(alpha[num_frames - 1, num_labels] + lp[num_frames - 1, num_labels, blank])


def naive_tf_nll(logits, labels, logit_lengths, label_lengths, blank):
    """Naive TF implementation (python loops), differentiated by autodiff."""
    lp = tf.nn.log_softmax(logits, axis=-1)
    out = []
    for b in range(logits.shape[0]):
        num_frames, num_labels = int(logit_lengths[b]), int(label_lengths[b])
        alpha = {(0, 0): tf.constant(0.0)}
        for t in range(num_frames):
            for u in range(num_labels + 1):
                terms = []
                if t > 0:
                    terms.append(alpha[(t - 1, u)] + lp[b, t - 1, u, blank])
                if u > 0:
                    terms.append(alpha[(t, u - 1)] + lp[b, t, u - 1, int(labels[b, u - 1])])
                if terms:
                    alpha[(t, u)] = tf.reduce_logsumexp(tf.stack(terms))
        out.append(-(alpha[(num_frames - 1, num_labels)]
                     + lp[b, num_frames - 1, num_labels, blank]))
    return tf.stack(out)


def make_batch(rng, batch, frames, num_labels, vocab, blank=0, scale=2.0):
    logits = (rng.normal(size=(batch, frames, num_labels + 1, vocab)) * scale).astype(np.float32)
    choices = np.array([v for v in range(vocab) if v != blank])
    labels = rng.choice(choices, size=(batch, num_labels)).astype(np.int32)
    return logits, labels


def loss_and_grad(logits, labels, logit_lengths, label_lengths, blank=0, jit=True,
                  jit_recursion=False):
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = rnnt.rnnt_loss(x, labels, logit_lengths, label_lengths, blank=blank, jit=jit,
                              jit_recursion=jit_recursion)
        total = tf.reduce_sum(loss * tf.constant([1.0, 0.5, 2.0][: logits.shape[0]]))
    return loss.numpy(), tape.gradient(total, x).numpy()


@pytest.mark.parametrize("blank", [0, 3])
def test_value_matches_brute_force(blank):
    rng = np.random.default_rng(1)
    logits, labels = make_batch(rng, 3, 4, 3, 5, blank=blank)
    logit_lengths = np.array([4, 2, 3], np.int32)
    label_lengths = np.array([3, 1, 0], np.int32)
    loss = rnnt.rnnt_loss(logits, labels, logit_lengths, label_lengths, blank=blank).numpy()
    expected = [brute_force_nll(logits[b], labels[b], logit_lengths[b], label_lengths[b], blank)
                for b in range(3)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("jit,jit_recursion", [(True, False), (False, False), (True, True)])
def test_gradient_matches_float64_finite_differences(jit, jit_recursion):
    rng = np.random.default_rng(2)
    logits, labels = make_batch(rng, 2, 3, 2, 5)
    logit_lengths = np.array([3, 2], np.int32)
    label_lengths = np.array([2, 1], np.int32)
    weights = np.array([1.0, 0.5])
    _, grad = loss_and_grad(logits, labels, logit_lengths, label_lengths, jit=jit,
                            jit_recursion=jit_recursion)

    def total(x):
        return sum(weights[b] * numpy_dp_nll(x[b], labels[b], logit_lengths[b],
                                             label_lengths[b], 0) for b in range(2))

    x = logits.astype(np.float64)
    fd = np.zeros_like(x)
    eps = 1e-6
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fd[idx] = (total(plus) - total(minus)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, atol=2e-5)
    # Padded frame 2 of utterance 1 and padded label column 2 get exactly zero gradient.
    assert np.all(grad[1, 2] == 0) and np.all(grad[1, :, 2] == 0)


def test_gradient_matches_naive_autodiff():
    rng = np.random.default_rng(3)
    logits, labels = make_batch(rng, 3, 4, 3, 5, blank=0)
    logit_lengths = np.array([4, 3, 1], np.int32)
    label_lengths = np.array([2, 3, 1], np.int32)
    loss, grad = loss_and_grad(logits, labels, logit_lengths, label_lengths)
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        ref = naive_tf_nll(x, labels, logit_lengths, label_lengths, 0)
        total = tf.reduce_sum(ref * tf.constant([1.0, 0.5, 2.0]))
    np.testing.assert_allclose(loss, ref.numpy(), rtol=1e-5)
    np.testing.assert_allclose(grad, tape.gradient(total, x).numpy(), atol=1e-5)


@pytest.mark.parametrize("jit,jit_recursion", [(True, False), (False, False), (True, True)])
def test_padding_invariance_with_garbage(jit, jit_recursion):
    rng = np.random.default_rng(4)
    logits, labels = make_batch(rng, 3, 3, 2, 7)
    logit_lengths = np.array([3, 2, 1], np.int32)
    label_lengths = np.array([2, 1, 2], np.int32)
    loss, grad = loss_and_grad(logits, labels, logit_lengths, label_lengths, jit=jit,
                               jit_recursion=jit_recursion)
    big_logits = (rng.normal(size=(3, 6, 5, 7)) * 50).astype(np.float32)
    big_logits[:, :3, :3] = logits
    big_labels = rng.integers(0, 7, size=(3, 4)).astype(np.int32)
    big_labels[:, :2] = labels
    big_loss, big_grad = loss_and_grad(big_logits, big_labels, logit_lengths, label_lengths,
                                       jit=jit, jit_recursion=jit_recursion)
    np.testing.assert_allclose(big_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(big_grad[:, :3, :3], grad, atol=1e-7)
    mask = np.zeros(big_grad.shape, bool)
    for b in range(3):
        mask[b, : logit_lengths[b], : label_lengths[b] + 1] = True
    assert np.all(big_grad[~mask] == 0.0)
    assert np.any(big_grad[mask] != 0.0)


def test_long_sequences_are_stable_and_exact():
    rng = np.random.default_rng(5)
    logits, labels = make_batch(rng, 2, 500, 100, 7, scale=3.0)
    logit_lengths = np.array([500, 321], np.int32)
    label_lengths = np.array([100, 77], np.int32)
    loss, grad = loss_and_grad(logits, labels, logit_lengths, label_lengths)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    expected = [numpy_dp_nll(logits[b], labels[b], logit_lengths[b], label_lengths[b], 0)
                for b in range(2)]
    np.testing.assert_allclose(loss, expected, rtol=2e-5)
    # Gradient of a softmax-normalised loss sums to 0 over V at every node.
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=1e-4)


def test_one_trace_serves_many_shapes():
    fn = tf.function(rnnt.rnnt_loss, reduce_retracing=True)
    rng = np.random.default_rng(6)
    spec = [tf.TensorSpec([None, None, None, 5], tf.float32), tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)]
    concrete = fn.get_concrete_function(*spec)
    for frames, num_labels in [(3, 2), (4, 1)]:
        logits, labels = make_batch(rng, 2, frames, num_labels, 5)
        lengths = np.array([frames, frames], np.int32)
        label_lengths = np.array([num_labels, num_labels], np.int32)
        got = concrete(tf.constant(logits), tf.constant(labels), tf.constant(lengths),
                       tf.constant(label_lengths)).numpy()
        expected = [brute_force_nll(logits[b], labels[b], frames, num_labels, 0) for b in range(2)]
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_shape_errors_name_the_field():
    with pytest.raises(rnnt.LossShapeError, match="logits"):
        rnnt.rnnt_loss(np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.int32),
                       np.array([3, 3]), np.array([3, 3]))
    with pytest.raises(rnnt.LossShapeError, match="U\\+1"):
        rnnt.rnnt_loss(np.zeros((2, 3, 3, 5), np.float32), np.zeros((2, 3), np.int32),
                       np.array([3, 3]), np.array([3, 3]))


def test_skew_unskew_round_trip():
    x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    y = rnnt.skew(tf.constant(x), -1.0).numpy()
    for d, b, u in np.ndindex(y.shape):
        t = d - u
        assert y[d, b, u] == (x[b, t, u] if 0 <= t < 5 else -1.0)
    np.testing.assert_array_equal(rnnt.unskew(tf.constant(y), 5).numpy(), x)


def test_bucketed_xla_path_matches_plain_tf_under_unknown_shapes():
    """In a graph with unknown batch/frame/label sizes (as in a training step) the XLA path pads
    every dynamic axis to a bucket size; value and gradient equal the plain-TF path's."""
    spec = [tf.TensorSpec([None, None, None, 6], tf.float32), tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)]

    def value_and_grad(jit):
        @tf.function(input_signature=spec)
        def fn(logits, labels, logit_lengths, label_lengths):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                loss = rnnt.rnnt_loss(logits, labels, logit_lengths, label_lengths, jit=jit,
                                      jit_recursion=jit)
                total = tf.reduce_sum(loss * tf.range(1.0, 1.0 + tf.cast(tf.shape(loss)[0], tf.float32)))
            return loss, tape.gradient(total, logits)
        return fn

    rng = np.random.default_rng(7)
    xla, plain = value_and_grad(True), value_and_grad(False)
    for batch, frames, num_labels in [(3, 11, 4), (9, 37, 13)]:  # 9 x 37 x 14 pads to 16 x 40 x 16
        logits, labels = make_batch(rng, batch, frames, num_labels, 6)
        logit_lengths = rng.integers(1, frames + 1, batch).astype(np.int32)
        logit_lengths[0] = frames
        label_lengths = rng.integers(0, num_labels + 1, batch).astype(np.int32)
        args = (tf.constant(logits), tf.constant(labels), tf.constant(logit_lengths), tf.constant(label_lengths))
        (loss_x, grad_x), (loss_p, grad_p) = xla(*args), plain(*args)
        assert grad_x.shape == logits.shape
        np.testing.assert_allclose(loss_x.numpy(), loss_p.numpy(), rtol=1e-5)
        np.testing.assert_allclose(grad_x.numpy(), grad_p.numpy(), rtol=1e-4, atol=1e-5)  # weights up to 9
        b = int(np.argmax(label_lengths))
        expected = numpy_dp_nll(logits[b], labels[b], logit_lengths[b], label_lengths[b], 0)
        np.testing.assert_allclose(loss_x.numpy()[b], expected, rtol=1e-5)


def test_recursion_is_compiled_only_when_asked(monkeypatch):
    """`jit` (vocabulary-axis fusion) and `jit_recursion` are separate switches: the public
    defaults run the plain-TF recursion (the path benchmark_loss measures)."""
    calls = []
    compiled = rnnt._padded_forward_backward_xla

    def spy(*args):
        calls.append(1)
        return compiled(*args)

    monkeypatch.setattr(rnnt, "_padded_forward_backward_xla", spy)
    rng = np.random.default_rng(8)
    logits, labels = make_batch(rng, 2, 3, 2, 5)
    lengths = (np.array([3, 2], np.int32), np.array([2, 1], np.int32))
    default = rnnt.rnnt_loss(logits, labels, *lengths).numpy()
    assert calls == []
    compiled_loss = rnnt.rnnt_loss(logits, labels, *lengths, jit_recursion=True).numpy()
    assert calls == [1]
    np.testing.assert_allclose(compiled_loss, default, rtol=1e-6)
