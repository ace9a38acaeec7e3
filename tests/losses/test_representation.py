"""Representation losses vs numpy float64."""
import numpy as np
import tensorflow as tf

from tf_todm.losses import representation


def numpy_infonce(student, teacher, temperature):
    s = student / np.linalg.norm(student, axis=-1, keepdims=True)
    t = teacher / np.linalg.norm(teacher, axis=-1, keepdims=True)
    sim = s @ t.T / temperature

    def ce(logits):
        m = logits.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
        return (lse - np.diag(logits)).mean()

    return 0.5 * (ce(sim) + ce(sim.T))


def make(rng):
    student = rng.normal(size=(3, 5, 4)).astype(np.float32)
    teacher = rng.normal(size=(3, 5, 4)).astype(np.float32)
    lengths = np.array([5, 2, 3], np.int32)
    return student, teacher, lengths


def test_mse_matches_numpy_and_ignores_padding():
    student, teacher, lengths = make(np.random.default_rng(0))
    got = representation.mse_representation_loss(student, teacher, lengths).numpy()
    expected = [((student[b, :n].astype(np.float64) - teacher[b, :n]) ** 2).mean()
                for b, n in enumerate(lengths)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    s = tf.constant(student)
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = tf.reduce_sum(representation.mse_representation_loss(s, teacher, lengths))
    grad = tape.gradient(loss, s).numpy()
    assert np.all(grad[1, 2:] == 0) and np.all(grad[2, 3:] == 0)
    np.testing.assert_allclose(grad[0], 2 * (student[0] - teacher[0]) / (5 * 4), rtol=1e-5)


def test_infonce_matches_numpy_over_valid_frames():
    student, teacher, lengths = make(np.random.default_rng(1))
    got = representation.infonce_frame_loss(student, teacher, lengths, temperature=0.3).numpy()
    valid = np.arange(5)[None, :] < lengths[:, None]
    expected = numpy_infonce(student[valid].astype(np.float64), teacher[valid], 0.3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_infonce_is_low_when_student_matches_teacher():
    student, teacher, lengths = make(np.random.default_rng(2))
    same = representation.infonce_frame_loss(teacher, teacher, lengths, temperature=0.05)
    other = representation.infonce_frame_loss(student, teacher, lengths, temperature=0.05)
    assert float(same) < 0.1 < float(other)


def test_infonce_sampling_bounds_frames():
    rng = np.random.default_rng(3)
    student = rng.normal(size=(3, 40, 4)).astype(np.float32)
    lengths = np.array([40, 30, 35], np.int32)
    # With student == teacher, loss at N frames depends on N; here we only check the subset size
    # through the value being finite and the gradient touching at most max_frames frames.
    s = tf.constant(student)
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = representation.infonce_frame_loss(s, student * 2 + 1, lengths, max_frames=17,
                                                 seed=1)
    grad = tape.gradient(loss, s).numpy()
    assert np.isfinite(float(loss))
    assert np.count_nonzero(np.abs(grad).sum(-1)) == 17
