"""Alpha-divergence KD vs numpy float64 (values, KL limits, surrogate gradient, masking)."""
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.losses import distillation


def softmax64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_alpha_parts(teacher, student, alpha, iw_clip):
    """Per-position (value, rho, q) straight from the AlphaNet description (float64)."""
    p, q = softmax64(teacher), softmax64(student)
    r = p / q
    if abs(alpha) < 1e-3:
        r = np.clip(r, 0, iw_clip)
        f, f_base, rho = -np.log(r), 0.0, np.log(r) - 1.0
    elif abs(alpha - 1) < 1e-3:
        f, f_base, rho = r * np.log(r), 0.0, r
    else:
        iw = np.clip(r ** alpha, 0, iw_clip)
        f_base = 1.0 / (alpha * (alpha - 1))
        f, rho = iw * f_base, iw / alpha + f_base
    return (q * (f - f_base)).sum(-1), rho, q


def kl(a, b):
    return (a * (np.log(a) - np.log(b))).sum(-1)


def value_and_grad(fn, teacher, student):
    s = tf.constant(student)
    with tf.GradientTape() as tape:
        tape.watch(s)
        out = fn(tf.constant(teacher), s)
        total = tf.reduce_sum(out * tf.constant([1.0, 2.0, 0.5])[: out.shape[0]])
    return out.numpy(), tape.gradient(total, s).numpy()


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    teacher = (rng.normal(size=(3, 4, 7)) * 2).astype(np.float32)
    student = (rng.normal(size=(3, 4, 7)) * 2).astype(np.float32)
    return teacher, student


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0, 1.7])
@pytest.mark.parametrize("iw_clip", [5.0, 1e6])
def test_value_matches_numpy(logits, alpha, iw_clip):
    teacher, student = logits
    got = distillation.alpha_divergence(teacher, student, alpha, iw_clip=iw_clip).numpy()
    expected = numpy_alpha_parts(teacher, student, alpha, iw_clip)[0].mean(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_kl_limits(logits):
    teacher, student = logits
    p, q = softmax64(teacher), softmax64(student)
    forward_kl, reverse_kl = kl(p, q).mean(-1), kl(q, p).mean(-1)
    for alpha, target in [(1.0, forward_kl), (0.0, reverse_kl)]:
        got = distillation.alpha_divergence(teacher, student, alpha, iw_clip=1e9).numpy()
        np.testing.assert_allclose(got, target, rtol=1e-4)
    # The generic branch converges to the same limits.
    for alpha, target in [(1.0 + 5e-3, forward_kl), (1.0 - 5e-3, forward_kl),
                          (5e-3, reverse_kl), (-5e-3, reverse_kl)]:
        got = distillation.alpha_divergence(teacher, student, alpha, iw_clip=1e9).numpy()
        np.testing.assert_allclose(got, target, rtol=0.05)


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0])
def test_surrogate_gradient_formula_with_clipping(logits, alpha):
    teacher, student = logits
    _, grad = value_and_grad(
        lambda t, s: distillation.alpha_divergence(t, s, alpha, iw_clip=2.0), teacher, student)
    _, rho, q = numpy_alpha_parts(teacher, student, alpha, 2.0)
    # d/dz_j of -sum_k q_k rho_k log q_k(z) with q, rho held constant.
    per_pos = -(q * rho - q * (q * rho).sum(-1, keepdims=True))
    expected = per_pos / teacher.shape[1] * np.array([1.0, 2.0, 0.5])[:, None, None]
    np.testing.assert_allclose(grad, expected, atol=1e-5)


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0])
def test_unclipped_surrogate_is_the_true_gradient(alpha):
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(2, 5)).astype(np.float32)
    student = rng.normal(size=(2, 5)).astype(np.float32)
    _, grad = value_and_grad(
        lambda t, s: distillation.alpha_divergence(t, s, alpha, iw_clip=1e9), teacher, student)
    weights = np.array([1.0, 2.0])
    eps = 1e-6
    fd = np.zeros(student.shape)
    for idx in np.ndindex(student.shape):
        plus, minus = student.astype(np.float64), student.astype(np.float64)
        plus[idx] += eps
        minus[idx] -= eps
        fd[idx] = (weights * (numpy_alpha_parts(teacher, plus, alpha, 1e9)[0]
                              - numpy_alpha_parts(teacher, minus, alpha, 1e9)[0])).sum() / (2 * eps)
    np.testing.assert_allclose(grad, fd, atol=2e-5)


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0])
def test_zero_when_student_equals_teacher(logits, alpha):
    teacher, _ = logits
    value, grad = value_and_grad(
        lambda t, s: distillation.alpha_divergence(t, s, alpha), teacher, teacher.copy())
    np.testing.assert_allclose(value, 0.0, atol=1e-6)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_mask_excludes_positions(logits):
    teacher, student = logits
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    garbage_t, garbage_s = teacher.copy(), student.copy()
    garbage_t[~mask] = 40.0 * np.sign(np.random.default_rng(2).normal(size=garbage_t[~mask].shape))
    garbage_s[~mask] = -7.0
    value, grad = value_and_grad(
        lambda t, s: distillation.alpha_divergence(t, s, 0.5, mask=mask), garbage_t, garbage_s)
    per_pos = numpy_alpha_parts(teacher, student, 0.5, 5.0)[0]
    expected = (per_pos * mask).sum(-1) / mask.sum(-1)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert np.all(grad[~mask] == 0) and np.any(grad[mask] != 0)
    # A lattice-shaped mask [B, T, U+1] broadcast against logits [B, T, U+1, V].
    lattice_t = np.repeat(teacher[:, :, None, :], 3, axis=2)
    lattice_s = np.repeat(student[:, :, None, :], 3, axis=2)
    lattice_mask = np.repeat(mask[:, :, None], 3, axis=2)
    got = distillation.alpha_divergence(lattice_t, lattice_s, 0.5, mask=lattice_mask).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_adaptive_takes_the_larger_divergence_per_sample(logits):
    teacher, student = logits
    value, grad = value_and_grad(
        lambda t, s: distillation.adaptive_alpha_divergence(t, s, -1.0, 1.0), teacher, student)
    _, grad_left = value_and_grad(
        lambda t, s: distillation.alpha_divergence(t, s, -1.0), teacher, student)
    _, grad_right = value_and_grad(
        lambda t, s: distillation.alpha_divergence(t, s, 1.0), teacher, student)
    left = numpy_alpha_parts(teacher, student, -1.0, 5.0)[0].mean(-1)
    right = numpy_alpha_parts(teacher, student, 1.0, 5.0)[0].mean(-1)
    np.testing.assert_allclose(value, np.maximum(left, right), rtol=1e-5)
    for b in range(3):
        chosen = grad_left if left[b] > right[b] else grad_right
        np.testing.assert_allclose(grad[b], chosen[b], atol=1e-7)
    # Both branches must actually occur in this check to mean anything.
    rng = np.random.default_rng(3)
    t2, s2 = rng.normal(size=(40, 6)) * 3, rng.normal(size=(40, 6)) * 3
    l2 = numpy_alpha_parts(t2, s2, -1.0, 5.0)[0]
    r2 = numpy_alpha_parts(t2, s2, 1.0, 5.0)[0]
    got = distillation.adaptive_alpha_divergence(t2.astype(np.float32), s2.astype(np.float32))
    assert np.any(l2 > r2) and np.any(l2 < r2)
    np.testing.assert_allclose(got.numpy(), np.maximum(l2, r2), rtol=1e-4)
