"""Pruned RNN-T (the k2 algorithm, written from its description).

Training with the full joiner costs `[B, T, U+1, J]` activations and `[B, T, U+1, V]` logits.
Pruning keeps only a band of `S` label positions per frame:

1. `rnnt_loss_simple(am, lm, ...)`: exact RNN-T with the trivial joiner
   `logits(t, u) = am[t] + lm[u]`, normalised without building `[B, T, U+1, V]`
   (`logsumexp_v(am[t,v] + lm[u,v]) = log(exp(am - max) @ exp(lm - max)^T) + maxes`, one matmul).
   It also returns the node-transition occupancies (= minus its gradients w.r.t. the lattice
   log-probs), which say where the alignment mass lies.
2. `get_prune_ranges(...)`: per frame, the start `r_t` of the `S`-wide window with the most
   occupancy, then adjusted so that `0 <= r_t <= r_{t+1} <= r_t + S - 1`, `r_0 = 0` and the last
   valid frame's band holds `U_b` (so a path through the band always exists).
3. `pruned_rnnt_loss(pruned_logits [B,T,S,V], ranges, ...)`: the exact RNN-T loss restricted to
   the band: band log-probs are placed in the `[B, T, U+1]` lattice, log(0) elsewhere, and the
   same forward-backward as the exact loss runs on it.

Accuracy: with `S >= U + 1` the band is the whole lattice and the pruned loss equals the exact
loss. With a smaller band the pruned loss sums over a subset of alignments, so it is >= the exact
loss (given the same logits), and the gap shrinks as `S` grows (tests/losses/test_pruned_rnnt.py).
"""

import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.losses.rnnt import (
    NEG_INF,
    LossShapeError,
    check_rank,
    gather_log_probs,
    node_symbols,
    transducer_nll,
    transducer_nll_and_occupancy,
)


def simple_lattice_log_probs(am, lm, labels, blank=BLANK_ID):
    """Lattice log-probs of the trivial joiner `am[t] + lm[u]`, normalised over V.

    Args:
      am: float32 [B, T, V] acoustic-only logits.
      lm: float32 [B, U+1, V] label-context-only logits.
      labels: int32 [B, U].

    Returns:
      (blank_lp [B, T, U+1], label_lp [B, T, U+1]); differentiable by autodiff, peak extra
      memory O(B T U) (no `[B, T, U+1, V]` tensor).
    """
    am_max = tf.stop_gradient(tf.reduce_max(am, axis=-1, keepdims=True))  # (B, T, 1)
    lm_max = tf.stop_gradient(tf.reduce_max(lm, axis=-1, keepdims=True))  # (B, U+1, 1)
    prob_sum = tf.matmul(tf.exp(am - am_max), tf.exp(lm - lm_max), transpose_b=True)
    # The floor only matters when am and lm put their mass on disjoint symbols (< e^-69).
    lse = tf.math.log(tf.maximum(prob_sum, 1e-30)) + am_max + tf.transpose(lm_max, [0, 2, 1])
    width = tf.shape(lm)[1]
    symbols = node_symbols(labels, width)  # (B, U+1)
    am_label = tf.gather(am, symbols, axis=2, batch_dims=1)  # (B, T, U+1)
    lm_label = tf.gather(lm, symbols[..., None], batch_dims=2)[..., 0]  # (B, U+1)
    blank_lp = am[:, :, blank, None] + lm[:, None, :, blank] - lse
    label_lp = am_label + lm_label[:, None, :] - lse
    return blank_lp, label_lp


def rnnt_loss_simple(am, lm, labels, logit_lengths, label_lengths, blank=BLANK_ID,
                     jit_recursion=False):
    """RNN-T loss of the trivial joiner `logits(t, u) = am[t] + lm[u]`.

    Args:
      am: float32 [B, T, V]; lm: float32 [B, U+1, V]; labels: int32 [B, U];
      logit_lengths, label_lengths: int32 [B].
      jit_recursion: XLA-compile the forward-backward recursion
        (`rnnt.transducer_forward_backward(jit=True)`).

    Returns:
      (loss [B], (blank_occupancy [B, T, U+1], label_occupancy [B, T, U+1])). The loss is
      differentiable w.r.t. am and lm; the occupancies are constants (they equal minus the
      gradient of the loss w.r.t. the lattice log-probs, k2's `px_grad` / `py_grad`).
    """
    am = tf.cast(am, tf.float32)
    lm = tf.cast(lm, tf.float32)
    check_rank("am", am, 3, "rnnt_loss_simple")
    check_rank("lm", lm, 3, "rnnt_loss_simple")
    blank_lp, label_lp = simple_lattice_log_probs(am, lm, labels, blank)
    loss, occ_blank, occ_label = transducer_nll_and_occupancy(blank_lp, label_lp, logit_lengths,
                                                              label_lengths, jit=jit_recursion)
    return loss, (occ_blank, occ_label)


def _cummin(x, reverse=False):
    """Cumulative minimum along axis 1 of int32 [B, T] (log-step doubling, no loop over T)."""
    if reverse:
        x = tf.reverse(x, [1])
    frames = tf.shape(x)[1]
    big = tf.int32.max

    def body(shift, y):
        shifted = tf.pad(y, [[0, 0], [shift, 0]], constant_values=big)[:, :frames]
        return shift * 2, tf.minimum(y, shifted)

    _, x = tf.while_loop(lambda shift, _: shift < frames, body, [tf.constant(1), x])
    return tf.reverse(x, [1]) if reverse else x


def get_prune_ranges(occupancy, logit_lengths, label_lengths, prune_range):
    """Band of label positions to keep per frame.

    Args:
      occupancy: (blank_occupancy, label_occupancy), each float [B, T, U+1], as returned by
        `rnnt_loss_simple` (only their sum, the node occupancy, is used).
      logit_lengths, label_lengths: int32 [B].
      prune_range: python int S >= 2, band width.

    Returns:
      int32 [B, T, S], `ranges[b, t, s] = r[b, t] + s`, with `r` non-decreasing, `r[b, 0] = 0`,
      `r[b, t+1] <= r[b, t] + S - 1`, and band values clipped to `[0, U]`.
      Entries above `label_lengths[b]` are outside the lattice and ignored by the pruned loss.
      A band path needs `U_b + 1 - S <= (S - 1) (T_b - 1)`; otherwise the pruned loss is
      >= 1e29 with zero gradient (choose S, or the frame rate, so that this cannot happen).
    """
    if prune_range < 2:
        raise LossShapeError(f"get_prune_ranges: prune_range must be >= 2, got {prune_range}")
    node_occ = tf.stop_gradient(occupancy[0] + occupancy[1])  # (B, T, U+1)
    frames, width = tf.shape(node_occ)[1], tf.shape(node_occ)[2]
    logit_lengths = tf.cast(logit_lengths, tf.int32)
    label_lengths = tf.cast(label_lengths, tf.int32)
    s = prune_range
    # Window sums over [r, r + S) for every start r (zero columns pad the right edge).
    padded = tf.pad(node_occ, [[0, 0], [0, 0], [1, s]])
    csum = tf.cumsum(padded, axis=2)
    window = csum[:, :, s:s + width] - csum[:, :, :width]  # (B, T, U+1), start r = 0..U
    max_start = tf.maximum(label_lengths + 1 - s, 0)  # (B,)
    starts = tf.range(width)[None, None, :]
    window = tf.where(starts <= max_start[:, None, None], window, -1.0)
    best = tf.cast(tf.argmax(window, axis=2), tf.int32)  # (B, T)

    t = tf.range(frames)[None, :]
    last = logit_lengths[:, None] - 1
    lower = tf.maximum(max_start[:, None] - (s - 1) * (last - t), 0)
    upper = tf.minimum(max_start[:, None], (s - 1) * t)
    # Padded frames must not pull valid ones down in the backward pass below.
    best = tf.where(t > last, max_start[:, None], best)
    best = tf.minimum(tf.maximum(best, lower), upper)
    # Largest sequence <= best with r_{t+1} <= r_t + S - 1 (forward) and r_t <= r_{t+1} (backward).
    slope = (s - 1) * t
    best = _cummin(best - slope) + slope
    best = _cummin(best, reverse=True)
    ranges = best[:, :, None] + tf.range(s)[None, None, :]
    return tf.minimum(ranges, width - 1)


def band_to_lattice(band_values, ranges, label_lengths, width):
    """Scatter [B, T, S] band values into a [B, T, width] lattice, NEG_INF outside the band."""
    batch, frames, s = tf.shape(ranges)[0], tf.shape(ranges)[1], tf.shape(ranges)[2]
    in_band = ranges <= tf.cast(label_lengths, tf.int32)[:, None, None]
    # Clipping at U can repeat the last position; keep only its first occurrence.
    fresh = tf.concat([tf.ones_like(ranges[:, :, :1], tf.bool),
                       ranges[:, :, 1:] > ranges[:, :, :-1]], axis=2)
    in_band = in_band & fresh
    # Out-of-lattice band entries go to a spare column `width` that is cut off afterwards.
    cols = tf.where(in_band, ranges, width)
    b_idx = tf.broadcast_to(tf.range(batch)[:, None, None], [batch, frames, s])
    t_idx = tf.broadcast_to(tf.range(frames)[None, :, None], [batch, frames, s])
    idx = tf.stack([b_idx, t_idx, cols], axis=-1)
    shape = tf.stack([batch, frames, width + 1])
    values = tf.scatter_nd(idx, tf.where(in_band, band_values, 0.0), shape)[:, :, :width]
    mask = tf.scatter_nd(idx, tf.cast(in_band, tf.float32), shape)[:, :, :width] > 0
    return tf.where(mask, values, NEG_INF)


def pruned_rnnt_loss(pruned_logits, ranges, labels, logit_lengths, label_lengths,
                     blank=BLANK_ID, jit=True, jit_recursion=False):
    """Exact RNN-T loss over the alignments that stay inside the band `ranges`.

    Args:
      pruned_logits: float32 [B, T, S, V], joiner output at nodes (t, ranges[b, t, s]).
      ranges: int32 [B, T, S] from `get_prune_ranges` (consecutive label positions per frame).
      labels: int32 [B, U]; logit_lengths, label_lengths: int32 [B].
      jit: XLA-fuse the vocabulary-axis work (see `rnnt.gather_log_probs`).
      jit_recursion: XLA-compile the forward-backward recursion (see `rnnt.rnnt_loss`).

    Returns:
      float32 [B] NLL, >= the exact loss; equal when the band covers every node.
    """
    pruned_logits = tf.cast(pruned_logits, tf.float32)
    check_rank("pruned_logits", pruned_logits, 4, "pruned_rnnt_loss")
    check_rank("ranges", ranges, 3, "pruned_rnnt_loss")
    ranges = tf.cast(ranges, tf.int32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    width = tf.shape(labels)[1] + 1
    symbols = tf.gather(node_symbols(labels, width), ranges, batch_dims=1)  # (B, T, S)
    blank_band, label_band = gather_log_probs(pruned_logits, symbols, blank, jit=jit)
    blank_lp = band_to_lattice(blank_band, ranges, label_lengths, width)
    label_lp = band_to_lattice(label_band, ranges, label_lengths, width)
    return transducer_nll(blank_lp, label_lp, logit_lengths, label_lengths, jit=jit_recursion)


def gather_band(pred_proj, ranges):
    """pred_proj [B, U+1, J] -> [B, T, S, J] rows at ranges [B, T, S]."""
    return tf.gather(pred_proj, ranges, batch_dims=1)


def pruned_rnnt_loss_from_parts(enc_proj, pred_proj, join_fn, am, lm, labels, logit_lengths,
                                label_lengths, prune_range=5, blank=BLANK_ID, jit=True,
                                jit_recursion=False):
    """Simple loss + pruned loss in one call, for the trainer.

    Args:
      enc_proj: float32 [B, T, J] (`joiner.project_encoder(enc)`).
      pred_proj: float32 [B, U+1, J] (`joiner.project_predictor(pred)`).
      join_fn: callable (enc [B, T, S, J], pred [B, T, S, J]) -> logits [B, T, S, V]
        (`joiner.join`).
      am: float32 [B, T, V], lm: float32 [B, U+1, V] (`simple_heads(enc, pred)`).
      labels: int32 [B, U]; logit_lengths, label_lengths: int32 [B].
      prune_range: python int S, band width (k2 recipes use 5).
      blank: blank id. jit: XLA-fuse the vocabulary-axis work of the pruned loss.
      jit_recursion: XLA-compile both losses' forward-backward recursions.

    Returns:
      (simple_loss [B], pruned_loss [B], ranges int32 [B, T, S]). Typical training objective:
      `simple_scale * simple_loss + pruned_loss` (k2 warms up with a large simple scale). Ranges
      are chosen from the simple loss' occupancies (no gradient flows through them).
    """
    simple_loss, occupancy = rnnt_loss_simple(am, lm, labels, logit_lengths, label_lengths,
                                              blank, jit_recursion=jit_recursion)
    ranges = get_prune_ranges(occupancy, logit_lengths, label_lengths, prune_range)
    frames = tf.shape(enc_proj)[1]
    enc_band = tf.broadcast_to(enc_proj[:, :, None, :],
                               [tf.shape(enc_proj)[0], frames, prune_range,
                                tf.shape(enc_proj)[2]])
    logits = join_fn(enc_band, gather_band(pred_proj, ranges))
    pruned_loss = pruned_rnnt_loss(logits, ranges, labels, logit_lengths, label_lengths, blank,
                                   jit=jit, jit_recursion=jit_recursion)
    return simple_loss, pruned_loss, ranges
