"""Pruned RNN-T: simple loss, prune ranges, band loss, and its accuracy relative to the exact loss."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.losses import pruned_rnnt, rnnt


def log_softmax64(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def band_brute_force(band_logits, ranges, labels, num_frames, num_labels, blank):
    """Sum over alignments whose every visited node (t, u) lies in the band (float64)."""
    lp = log_softmax64(band_logits)
    scores = []
    for label_steps in itertools.combinations(range(num_frames + num_labels - 1), num_labels):
        t = u = 0
        score = 0.0
        ok = True
        for step in range(num_frames + num_labels):
            where = np.nonzero(ranges[t] == u)[0]
            if where.size == 0:
                ok = False
                break
            s = where[0]
            if step == num_frames + num_labels - 1:
                score += lp[t, s, blank]
            elif step in label_steps:
                score += lp[t, s, labels[u]]
                u += 1
            else:
                score += lp[t, s, blank]
                t += 1
        if ok:
            scores.append(score)
    return -np.logaddexp.reduce(scores) if scores else np.inf


def random_case(rng, batch=3, frames=7, num_labels=4, vocab=6):
    labels = rng.integers(1, vocab, size=(batch, num_labels)).astype(np.int32)
    logit_lengths = np.array([frames, frames - 2, 3][:batch], np.int32)
    label_lengths = np.array([num_labels, num_labels - 1, 2][:batch], np.int32)
    return labels, logit_lengths, label_lengths


def peaked_logits(rng, labels, logit_lengths, label_lengths, frames, vocab, sharpness=6.0):
    """Joiner logits whose alignment mass follows the diagonal u ~ t * U / T."""
    batch, num_labels = labels.shape
    logits = rng.normal(size=(batch, frames, num_labels + 1, vocab)).astype(np.float32)
    for b in range(batch):
        for t in range(frames):
            target = (t + 0.5) * label_lengths[b] / max(logit_lengths[b], 1)
            for u in range(num_labels + 1):
                if u < label_lengths[b] and u < target:
                    logits[b, t, u, labels[b, u]] += sharpness
                else:
                    logits[b, t, u, 0] += sharpness
    return logits


def exact_occupancy(logits, labels, logit_lengths, label_lengths):
    width = logits.shape[2]
    symbols = np.broadcast_to(np.pad(labels, [[0, 0], [0, 1]])[:, None, :], logits.shape[:3])
    blank_lp, label_lp = rnnt.gather_log_probs(tf.constant(logits), tf.constant(symbols), 0)
    _, occ_b, occ_l = rnnt.transducer_forward_backward(blank_lp, label_lp, logit_lengths,
                                                       label_lengths)
    assert occ_b.shape[2] == width
    return occ_b, occ_l


def band_logits(logits, ranges):
    return tf.gather(tf.constant(logits), ranges, batch_dims=2).numpy()


def test_simple_lattice_log_probs_match_numpy():
    rng = np.random.default_rng(0)
    am = (rng.normal(size=(3, 5, 7)) * 3).astype(np.float32)
    lm = (rng.normal(size=(3, 3, 7)) * 3).astype(np.float32)
    labels = rng.integers(1, 7, size=(3, 2)).astype(np.int32)
    blank_lp, label_lp = pruned_rnnt.simple_lattice_log_probs(am, lm, labels, blank=2)
    full = log_softmax64(am[:, :, None, :].astype(np.float64) + lm[:, None, :, :])
    np.testing.assert_allclose(blank_lp.numpy(), full[..., 2], atol=1e-5)
    for u in range(2):
        expected = full[np.arange(3), :, u, labels[:, u]]
        np.testing.assert_allclose(label_lp.numpy()[:, :, u], expected, atol=1e-5)


def test_simple_loss_equals_exact_loss_of_trivial_joiner_and_gradients():
    rng = np.random.default_rng(1)
    labels, logit_lengths, label_lengths = random_case(rng)
    am = tf.constant(rng.normal(size=(3, 7, 6)).astype(np.float32))
    lm = tf.constant(rng.normal(size=(3, 5, 6)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([am, lm])
        simple, (occ_b, occ_l) = pruned_rnnt.rnnt_loss_simple(am, lm, labels, logit_lengths,
                                                              label_lengths)
        exact = rnnt.rnnt_loss(am[:, :, None, :] + lm[:, None, :, :], labels, logit_lengths,
                               label_lengths)
        w = tf.constant([1.0, 0.3, 2.0])
        s_tot, e_tot = tf.reduce_sum(simple * w), tf.reduce_sum(exact * w)
    np.testing.assert_allclose(simple.numpy(), exact.numpy(), rtol=1e-5)
    for var in (am, lm):
        np.testing.assert_allclose(tape.gradient(s_tot, var).numpy(),
                                   tape.gradient(e_tot, var).numpy(), atol=1e-5)
    # Occupancy sanity (independent of the implementation): every path crosses each valid
    # frame by exactly one blank, and emits each valid label exactly once.
    occ_b, occ_l = occ_b.numpy(), occ_l.numpy()
    for b in range(3):
        np.testing.assert_allclose(occ_b[b, : logit_lengths[b]].sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(occ_l[b, :, : label_lengths[b]].sum(0), 1.0, atol=1e-5)
        assert np.all(occ_b[b, logit_lengths[b]:] == 0)
        assert np.all(occ_l[b, :, label_lengths[b]:] == 0)


@pytest.mark.parametrize("prune_range", [2, 3, 4])
@pytest.mark.parametrize("peaked", [False, True])
def test_prune_ranges_are_valid_bands(prune_range, peaked):
    rng = np.random.default_rng(2 + prune_range)
    labels, logit_lengths, label_lengths = random_case(rng, frames=9, num_labels=5)
    if peaked:
        logits = peaked_logits(rng, labels, logit_lengths, label_lengths, 9, 6)
    else:
        logits = (rng.normal(size=(3, 9, 6, 6)) * 3).astype(np.float32)
    occ = exact_occupancy(logits, labels, logit_lengths, label_lengths)
    ranges = pruned_rnnt.get_prune_ranges(occ, logit_lengths, label_lengths, prune_range).numpy()
    assert ranges.shape == (3, 9, prune_range)
    for b in range(3):
        r = ranges[b, : logit_lengths[b], 0]
        assert r[0] == 0
        assert np.all(np.diff(r) >= 0) and np.all(np.diff(r) <= prune_range - 1)
        assert label_lengths[b] in ranges[b, logit_lengths[b] - 1]
        assert np.all(ranges[b] >= 0) and np.all(ranges[b] <= 5)
    if peaked:
        # The band holds (nearly) all of the alignment mass.
        node = (occ[0] + occ[1]).numpy()
        kept = sum(node[b, t, u] for b, t in np.ndindex(3, 9) for u in set(ranges[b, t]))
        assert kept > 0.9 * node.sum()


@pytest.mark.parametrize("prune_range", [2, 3])
def test_pruned_loss_matches_band_brute_force(prune_range):
    rng = np.random.default_rng(10 + prune_range)
    labels, logit_lengths, label_lengths = random_case(rng, frames=5, num_labels=3)
    logits = (rng.normal(size=(3, 5, 4, 6)) * 2).astype(np.float32)
    occ = exact_occupancy(logits, labels, logit_lengths, label_lengths)
    ranges = pruned_rnnt.get_prune_ranges(occ, logit_lengths, label_lengths, prune_range)
    pruned = band_logits(logits, ranges)
    loss = pruned_rnnt.pruned_rnnt_loss(pruned, ranges, labels, logit_lengths,
                                        label_lengths).numpy()
    expected = [band_brute_force(pruned[b], ranges.numpy()[b], labels[b], logit_lengths[b],
                                 label_lengths[b], 0) for b in range(3)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_full_band_equals_exact_loss_value_and_gradient():
    rng = np.random.default_rng(20)
    labels, logit_lengths, label_lengths = random_case(rng)
    logits = tf.constant((rng.normal(size=(3, 7, 5, 6)) * 2).astype(np.float32))
    for prune_range in (5, 7):  # S = U + 1 and S > U + 1 (clipped, duplicates ignored)
        occ = exact_occupancy(logits.numpy(), labels, logit_lengths, label_lengths)
        ranges = pruned_rnnt.get_prune_ranges(occ, logit_lengths, label_lengths, prune_range)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            pruned = pruned_rnnt.pruned_rnnt_loss(tf.gather(logits, ranges, batch_dims=2),
                                                  ranges, labels, logit_lengths, label_lengths)
            exact = rnnt.rnnt_loss(logits, labels, logit_lengths, label_lengths)
            p_tot, e_tot = tf.reduce_sum(pruned), tf.reduce_sum(exact)
        np.testing.assert_allclose(pruned.numpy(), exact.numpy(), rtol=1e-6)
        np.testing.assert_allclose(tape.gradient(p_tot, logits).numpy(),
                                   tape.gradient(e_tot, logits).numpy(), atol=1e-6)


@pytest.mark.parametrize("peaked", [False, True])
def test_narrow_band_upper_bounds_exact_loss_and_gap_shrinks(peaked):
    rng = np.random.default_rng(30)
    frames, num_labels, vocab = 24, 9, 8
    labels = rng.integers(1, vocab, size=(3, num_labels)).astype(np.int32)
    logit_lengths = np.array([24, 20, 15], np.int32)
    label_lengths = np.array([9, 7, 5], np.int32)
    if peaked:
        logits = peaked_logits(rng, labels, logit_lengths, label_lengths, frames, vocab)
    else:
        logits = rng.normal(size=(3, frames, num_labels + 1, vocab)).astype(np.float32)
    exact = rnnt.rnnt_loss(logits, labels, logit_lengths, label_lengths).numpy()
    occ = exact_occupancy(logits, labels, logit_lengths, label_lengths)
    gaps = []
    for prune_range in (2, 3, 4, 6, 10):
        ranges = pruned_rnnt.get_prune_ranges(occ, logit_lengths, label_lengths, prune_range)
        loss = pruned_rnnt.pruned_rnnt_loss(band_logits(logits, ranges), ranges, labels,
                                            logit_lengths, label_lengths).numpy()
        assert np.all(loss >= exact - 1e-4)
        gaps.append((loss - exact).mean())
    assert all(a >= b - 1e-4 for a, b in zip(gaps, gaps[1:])), gaps
    assert abs(gaps[-1]) < 1e-4
    if peaked:
        assert gaps[2] < 1e-3, gaps  # S = 4 loses almost nothing on peaked alignments
    else:
        assert gaps[0] > 1.0, gaps  # a 2-wide band on diffuse alignments is far from exact


def test_from_parts_with_a_dense_joiner():
    rng = np.random.default_rng(40)
    labels, logit_lengths, label_lengths = random_case(rng)
    joint_dim, vocab = 5, 6
    enc_proj = tf.constant(rng.normal(size=(3, 7, joint_dim)).astype(np.float32))
    pred_proj = tf.constant(rng.normal(size=(3, 5, joint_dim)).astype(np.float32))
    weight = tf.constant(rng.normal(size=(joint_dim, vocab)).astype(np.float32))

    def join_fn(enc, pred):
        return tf.tanh(enc + pred) @ weight

    am = tf.constant(rng.normal(size=(3, 7, vocab)).astype(np.float32))
    lm = tf.constant(rng.normal(size=(3, 5, vocab)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch([enc_proj, pred_proj, am, lm])
        simple, pruned, ranges = pruned_rnnt.pruned_rnnt_loss_from_parts(
            enc_proj, pred_proj, join_fn, am, lm, labels, logit_lengths, label_lengths,
            prune_range=3)
        total = tf.reduce_sum(simple + pruned)
    grads = tape.gradient(total, [enc_proj, pred_proj, am, lm])
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    full = join_fn(enc_proj[:, :, None, :], pred_proj[:, None, :, :])
    expected = pruned_rnnt.pruned_rnnt_loss(tf.gather(full, ranges, batch_dims=2), ranges, labels,
                                            logit_lengths, label_lengths)
    np.testing.assert_allclose(pruned.numpy(), expected.numpy(), rtol=1e-6)
    exact = rnnt.rnnt_loss(full, labels, logit_lengths, label_lengths).numpy()
    assert np.all(pruned.numpy() >= exact - 1e-4)
    # Padded frames of utterance 1 get no gradient through the pruned joiner.
    assert np.all(grads[0].numpy()[2, 3:] == 0)


def test_infeasible_band_gives_huge_loss_and_zero_gradient():
    # 6 labels in 2 frames cannot fit a 2-wide band that moves by at most 1 per frame.
    rng = np.random.default_rng(50)
    labels = rng.integers(1, 5, size=(1, 6)).astype(np.int32)
    logit_lengths, label_lengths = np.array([2], np.int32), np.array([6], np.int32)
    logits = tf.constant(rng.normal(size=(1, 2, 7, 5)).astype(np.float32))
    occ = exact_occupancy(logits.numpy(), labels, logit_lengths, label_lengths)
    ranges = pruned_rnnt.get_prune_ranges(occ, logit_lengths, label_lengths, 2)
    band = tf.gather(logits, ranges, batch_dims=2)
    with tf.GradientTape() as tape:
        tape.watch(band)
        loss = pruned_rnnt.pruned_rnnt_loss(band, ranges, labels, logit_lengths, label_lengths)
    grad = tape.gradient(loss, band).numpy()
    assert float(loss[0]) > 1e29
    assert np.all(grad == 0)
