"""Exact RNN-T loss: log-space forward-backward over anti-diagonals with a closed-form gradient.

The loss is built from two small custom-gradient pieces so that nothing is auto-differentiated
through the dynamic programme and no `[B, T, U+1, V]` temporary is created besides the gradient
itself:

1. `gather_log_probs(logits, symbols, blank)`: per lattice node, the log-probability of the
   blank and of the node's label, `[...]` each, with gradient
   `d/dlogits = onehot(blank) g_b + onehot(symbol) g_l - (g_b + g_l) softmax(logits)`, assembled
   with one scatter on the vocabulary axis.
2. `transducer_nll(blank_lp, label_lp, logit_lengths, label_lengths)`: the forward-backward
   recursion on the `[B, T, U+1]` lattice; gradient = minus the transition occupancies.

Lattice convention (same as torchaudio / k2): node (t, u) emits blank to (t+1, u) with
`blank_lp[t, u]` or label `labels[u]` to (t, u+1) with `label_lp[t, u]`; the path starts at
(0, 0) and ends by emitting blank from (T_b - 1, U_b).
"""

import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.losses.shape_buckets import crop, dynamic_axes, pad_axes_to_buckets

NEG_INF = -1e30
"""Stand-in for log(0): finite, so sums of a few of them stay finite in float32."""


class LossShapeError(ValueError):
    """Raised when a loss receives tensors with inconsistent ranks or shapes."""


def check_rank(name, tensor, rank, where):
    """Raises LossShapeError unless `tensor` has static rank `rank`."""
    if tensor.shape.rank is not None and tensor.shape.rank != rank:
        raise LossShapeError(
            f"{where}: {name} must have rank {rank}, got shape {tensor.shape.as_list()}")


def logaddexp(a, b):
    """Elementwise log(exp(a) + exp(b)), stable for the NEG_INF stand-in."""
    big = tf.maximum(a, b)
    return big + tf.math.log1p(tf.exp(tf.minimum(a, b) - big))


# ----------------------------------------------------------------------------------------------
# Diagonal layout helpers. skew: x[b, t, u] -> y[d, b, u] = x[b, d - u, u] (d = t + u);
# positions with d - u outside [0, T) hold `pad`. unskew is the exact inverse.
# ----------------------------------------------------------------------------------------------
def skew(x, pad):
    """[B, T, U1] -> [T + U1 - 1, B, U1] with element (d, b, u) = x[b, d - u, u]."""
    batch, frames, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    xt = tf.transpose(x, [0, 2, 1])  # (B, U1, T)
    xt = tf.pad(xt, [[0, 0], [0, 0], [0, width]], constant_values=pad)  # (B, U1, T + U1)
    flat = tf.reshape(xt, [batch, -1])[:, : width * (frames + width - 1)]
    y = tf.reshape(flat, [batch, width, frames + width - 1])  # (B, U1, D)
    return tf.transpose(y, [2, 0, 1])


def unskew(y, frames):
    """Inverse of `skew`: [D, B, U1] with D = frames + U1 - 1 -> [B, frames, U1]."""
    num_diag, batch, width = tf.shape(y)[0], tf.shape(y)[1], tf.shape(y)[2]
    yt = tf.reshape(tf.transpose(y, [1, 2, 0]), [batch, width * num_diag])
    yt = tf.pad(yt, [[0, 0], [0, width]])
    yt = tf.reshape(yt, [batch, width, num_diag + 1])[:, :, :frames]
    return tf.transpose(yt, [0, 2, 1])


def _valid_nodes(num_diag, width, logit_lengths, label_lengths):
    """[D, B, U1] bool: node (t = d - u, u) lies inside the utterance's lattice."""
    d = tf.range(num_diag)[:, None, None]
    u = tf.range(width)[None, None, :]
    t = d - u
    return ((t >= 0) & (t < logit_lengths[None, :, None])
            & (u <= label_lengths[None, :, None]))


def _forward_backward_body(blank_lp, label_lp, logit_lengths, label_lengths):
    """Returns (nll [B], blank occupancy [B,T,U1], label occupancy [B,T,U1])."""
    batch, frames, width = tf.shape(blank_lp)[0], tf.shape(blank_lp)[1], tf.shape(blank_lp)[2]
    # One extra (all log(0)) frame hosts the virtual end node (T_b, U_b) with beta = 0.
    pad_t = [[0, 0], [0, 1], [0, 0]]
    blank_s = skew(tf.pad(blank_lp, pad_t, constant_values=NEG_INF), NEG_INF)  # (D, B, U1)
    label_s = skew(tf.pad(label_lp, pad_t, constant_values=NEG_INF), NEG_INF)
    num_diag = frames + width  # (frames + 1) + width - 1
    neg_col = tf.fill([batch, 1], tf.constant(NEG_INF, tf.float32))

    alpha0 = tf.concat([tf.zeros([batch, 1]), tf.fill([batch, width - 1], NEG_INF)], axis=1)
    alphas = tf.TensorArray(tf.float32, size=num_diag, clear_after_read=False)
    alphas = alphas.write(0, alpha0)

    def alpha_step(d, prev, arr):
        from_blank = prev + blank_s[d - 1]
        from_label = tf.concat([neg_col, (prev + label_s[d - 1])[:, :-1]], axis=1)
        cur = logaddexp(from_blank, from_label)
        return d + 1, cur, arr.write(d, cur)

    # maximum_iterations: XLA needs the TensorArray's bound when a tape records the loop.
    _, _, alphas = tf.while_loop(
        lambda d, *_: d < num_diag, alpha_step, [tf.constant(1), alpha0, alphas],
        maximum_iterations=num_diag)
    alpha_s = alphas.stack()  # (D, B, U1)

    valid = _valid_nodes(num_diag, width, logit_lengths, label_lengths)
    u_idx = tf.range(width)[None, :]
    end_diag = logit_lengths + label_lengths  # diagonal of the virtual end node (T_b, U_b)

    def terminal(d):
        return (u_idx == label_lengths[:, None]) & (d == end_diag[:, None])

    last = tf.where(terminal(num_diag - 1), 0.0, NEG_INF)
    betas = tf.TensorArray(tf.float32, size=num_diag, clear_after_read=False)
    betas = betas.write(num_diag - 1, last)

    def beta_step(d, nxt, arr):
        via_blank = nxt + blank_s[d]
        via_label = tf.concat([nxt[:, 1:], neg_col], axis=1) + label_s[d]
        cur = tf.where(valid[d], logaddexp(via_blank, via_label), NEG_INF)
        cur = tf.where(terminal(d), 0.0, cur)
        return d - 1, cur, arr.write(d, cur)

    _, _, betas = tf.while_loop(
        lambda d, *_: d >= 0, beta_step, [num_diag - 2, last, betas], maximum_iterations=num_diag)
    beta_s = betas.stack()  # (D, B, U1)

    log_lik = beta_s[0, :, 0]  # (B,)
    beta_next = tf.concat([beta_s[1:], tf.fill([1, batch, width], NEG_INF)], axis=0)
    beta_up = tf.concat([beta_next[:, :, 1:], tf.fill([num_diag, batch, 1], NEG_INF)], axis=2)
    base = alpha_s - log_lik[None, :, None]
    zeros = tf.zeros_like(base)
    # A lattice with no complete path (only possible for a pruned band) has log_lik ~ NEG_INF:
    # its loss is huge and its occupancies are defined as 0.
    valid = valid & (log_lik > 0.5 * NEG_INF)[None, :, None]
    occ_blank = tf.where(valid, tf.exp(tf.minimum(base + blank_s + beta_next, 0.0)), zeros)
    occ_label = tf.where(valid, tf.exp(tf.minimum(base + label_s + beta_up, 0.0)), zeros)
    occ_blank = unskew(occ_blank, frames + 1)[:, :frames]
    occ_label = unskew(occ_label, frames + 1)[:, :frames]
    return -log_lik, occ_blank, occ_label


_LATTICE_SIGNATURE = [
    tf.TensorSpec([None, None, None], tf.float32),
    tf.TensorSpec([None, None, None], tf.float32),
    tf.TensorSpec([None], tf.int32),
    tf.TensorSpec([None], tf.int32),
]
_forward_backward = tf.function(_forward_backward_body, input_signature=_LATTICE_SIGNATURE,
                                reduce_retracing=True)
# The same recursion compiled by XLA: the anti-diagonal loop runs as one compiled loop instead of
# ~10 TF ops per diagonal. Compiled once per input shape, so callers pad to bucket sizes.
_forward_backward_xla = tf.function(_forward_backward_body, input_signature=_LATTICE_SIGNATURE,
                                    jit_compile=True)


def _padded_forward_backward_xla(blank_lp, label_lp, logit_lengths, label_lengths):
    """`_forward_backward_xla` on [B, T, U1] padded to bucket sizes (padded utterances have 0
    frames and 0 labels, padded nodes log(0)); results cropped back. Exact: nodes past an
    utterance's lengths never enter its likelihood or occupancies."""
    shape = tf.shape(blank_lp)
    # The gradient comes from the occupancies (transducer_nll_and_occupancy), never from autodiff
    # through the loop, so no tape needs to record the compiled recursion.
    blank_lp, label_lp = tf.stop_gradient(blank_lp), tf.stop_gradient(label_lp)
    blank_p = pad_axes_to_buckets(blank_lp, [0, 1, 2], NEG_INF)
    label_p = pad_axes_to_buckets(label_lp, [0, 1, 2], NEG_INF)
    logit_p = pad_axes_to_buckets(logit_lengths, [0], 0)
    label_len_p = pad_axes_to_buckets(label_lengths, [0], 0)
    nll, occ_blank, occ_label = _forward_backward_xla(blank_p, label_p, logit_p, label_len_p)
    return crop(nll, shape[:1]), crop(occ_blank, shape), crop(occ_label, shape)


def transducer_forward_backward(blank_lp, label_lp, logit_lengths, label_lengths, jit=False):
    """Forward-backward on a transducer lattice (no gradient).

    Args:
      blank_lp: float32 [B, T, U+1], log-prob of emitting blank at node (t, u).
      label_lp: float32 [B, T, U+1], log-prob of emitting labels[u] at (t, u) (column U unused).
      logit_lengths, label_lengths: int32 [B].
      jit: run the recursion compiled by XLA on bucket-padded shapes (same values). On the
        issue-3 recipe it was not faster than the plain TF while loops (False) on 2 CPU cores
        (WORKSPACE.md, "Training step").

    Returns:
      (nll [B], occupancy of each blank transition [B,T,U+1], of each label transition
      [B,T,U+1]); occupancies are 0 outside the utterance's lattice.
    """
    args = (tf.cast(blank_lp, tf.float32), tf.cast(label_lp, tf.float32),
            tf.cast(logit_lengths, tf.int32), tf.cast(label_lengths, tf.int32))
    return _padded_forward_backward_xla(*args) if jit else _forward_backward(*args)


def transducer_nll_and_occupancy(blank_lp, label_lp, logit_lengths, label_lengths, jit=False):
    """Like `transducer_forward_backward` (same `jit`), but the NLL is differentiable.

    Returns:
      (nll [B], blank occupancy, label occupancy); the gradient of nll w.r.t.
      (blank_lp, label_lp) is minus the occupancies (times the upstream gradient). The
      occupancies themselves are constants.
    """

    @tf.custom_gradient
    def _nll(blank_lp, label_lp):
        nll, occ_blank, occ_label = transducer_forward_backward(
            blank_lp, label_lp, logit_lengths, label_lengths, jit=jit)

        def grad(dy, *unused_occupancy_grads):
            scale = -dy[:, None, None]
            return occ_blank * scale, occ_label * scale

        return (nll, tf.identity(occ_blank), tf.identity(occ_label)), grad

    nll, occ_blank, occ_label = _nll(blank_lp, label_lp)
    return nll, tf.stop_gradient(occ_blank), tf.stop_gradient(occ_label)


def transducer_nll(blank_lp, label_lp, logit_lengths, label_lengths, jit=False):
    """Differentiable lattice NLL [B]; gradient w.r.t. (blank_lp, label_lp) = -occupancies."""
    return transducer_nll_and_occupancy(blank_lp, label_lp, logit_lengths, label_lengths, jit=jit)[0]


@tf.function(jit_compile=True, reduce_retracing=True)
def _fused_log_probs(logits, symbols, blank):
    """XLA-fused lse + the two gathers (one read of the [..., V] logits)."""
    lse = tf.reduce_logsumexp(logits, axis=-1)
    label = tf.gather(logits, symbols[..., None], batch_dims=symbols.shape.rank)[..., 0]
    return lse, tf.gather(logits, blank, axis=-1) - lse, label - lse


@tf.function(jit_compile=True, reduce_retracing=True)
def _fused_log_probs_grad(logits, lse, symbols, blank, g_blank, g_label):
    """XLA-fused closed-form gradient: one pass writing [..., V], no one-hot tensor."""
    vocab_ids = tf.range(tf.shape(logits)[-1])
    zero = tf.zeros([], logits.dtype)
    grad = tf.exp(logits - lse[..., None]) * (-(g_blank + g_label))[..., None]
    grad += tf.where(vocab_ids == symbols[..., None], g_label[..., None], zero)
    return grad + tf.where(vocab_ids == blank, g_blank[..., None], zero)


def gather_log_probs(logits, symbols, blank, jit=True):
    """Log-softmax of `logits` read at `blank` and at `symbols`, without a one-hot copy.

    Args:
      logits: float32 [..., V] unnormalised.
      symbols: int32 [...] (same leading shape), the label emitted at each node.
      blank: blank id.
      jit: fuse the V-axis work with XLA (about 2-3x faster on CPU; compiles once per distinct
        input shape, with axes of unknown static size padded to `shape_buckets` sizes). False
        uses plain TF ops (reduce + scatter).

    Returns:
      (blank_lp [...], label_lp [...]); differentiable w.r.t. logits (closed form:
      `onehot(blank) g_b + onehot(symbol) g_l - (g_b + g_l) softmax(logits)`).
    """
    symbols = tf.cast(symbols, tf.int32)
    blank_t = tf.constant(blank, tf.int32)

    @tf.custom_gradient
    def _gather(logits):
        if jit:
            # Axes of unknown size (batch, frames, labels in a training step) are padded to bucket
            # sizes, so XLA compiles a bounded number of shapes; padded nodes are cropped off.
            axes = dynamic_axes(symbols)
            lead = tf.shape(symbols)
            logits_p = pad_axes_to_buckets(logits, axes)
            symbols_p = pad_axes_to_buckets(symbols, axes)
            lse_p, blank_p, label_p = _fused_log_probs(logits_p, symbols_p, blank_t)
            lse, blank_lp, label_lp = crop(lse_p, lead), crop(blank_p, lead), crop(label_p, lead)
        else:
            lse = tf.reduce_logsumexp(logits, axis=-1)
            blank_lp = logits[..., blank] - lse
            label_lp = tf.gather(logits, symbols[..., None],
                                 batch_dims=symbols.shape.rank)[..., 0] - lse

        def grad(g_blank, g_label):
            g_blank = tf.zeros_like(lse) if g_blank is None else g_blank
            g_label = tf.zeros_like(lse) if g_label is None else g_label
            if jit:
                dlogits = _fused_log_probs_grad(logits_p, lse_p, symbols_p, blank_t,
                                                pad_axes_to_buckets(g_blank, axes),
                                                pad_axes_to_buckets(g_label, axes))
                return crop(dlogits, tf.shape(logits))
            vocab = tf.shape(logits)[-1]
            dlogits = tf.exp(logits - lse[..., None]) * (-(g_blank + g_label))[..., None]
            flat = tf.reshape(dlogits, [-1, vocab])
            rows = tf.range(tf.shape(flat)[0])
            cols = tf.concat([tf.fill(tf.shape(rows), blank_t), tf.reshape(symbols, [-1])], 0)
            idx = tf.stack([tf.concat([rows, rows], axis=0), cols], axis=1)
            upd = tf.concat([tf.reshape(g_blank, [-1]), tf.reshape(g_label, [-1])], axis=0)
            return tf.reshape(tf.tensor_scatter_nd_add(flat, idx, upd), tf.shape(logits))

        return (blank_lp, label_lp), grad

    return _gather(logits)


def node_symbols(labels, width):
    """labels [B, U] -> [B, width] with blank-padded tail; symbol emitted by a label step at u."""
    labels = tf.cast(labels, tf.int32)
    pad = width - tf.shape(labels)[1]
    return tf.pad(labels, [[0, 0], [0, pad]])


def rnnt_loss(logits, labels, logit_lengths, label_lengths, blank=BLANK_ID, jit=True,
              jit_recursion=False):
    """Exact RNN-T negative log-likelihood.

    Args:
      logits: float32 [B, T, U+1, V] unnormalised joiner outputs.
      labels: int32 [B, U] padded label ids (never `blank` in the valid part).
      logit_lengths: int32 [B], valid frames per utterance (>= 1).
      label_lengths: int32 [B], valid labels per utterance.
      blank: blank id.
      jit: XLA-fuse the vocabulary-axis work (see `gather_log_probs`).
      jit_recursion: XLA-compile the forward-backward recursion on bucket-padded shapes
        (`transducer_forward_backward(jit=True)`); same values, not faster on 2 CPU cores.

    Returns:
      float32 [B] NLL. Frames/labels beyond the lengths do not affect the value, and their
      gradient is exactly 0.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    check_rank("logits", logits, 4, "rnnt_loss")
    check_rank("labels", labels, 2, "rnnt_loss")
    if (logits.shape[2] is not None and labels.shape[1] is not None
            and logits.shape[2] != labels.shape[1] + 1):
        raise LossShapeError(
            f"rnnt_loss: logits axis 2 must be U+1={labels.shape[1] + 1}, got {logits.shape[2]}")
    frames, width = tf.shape(logits)[1], tf.shape(logits)[2]
    symbols = tf.broadcast_to(node_symbols(labels, width)[:, None, :],
                              [tf.shape(logits)[0], frames, width])
    blank_lp, label_lp = gather_log_probs(logits, symbols, blank, jit=jit)
    return transducer_nll(blank_lp, label_lp, logit_lengths, label_lengths, jit=jit_recursion)
