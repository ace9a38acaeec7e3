"""Alpha-divergence knowledge distillation (AlphaNet's `f_divergence`, written from its description).

Teacher p = softmax(teacher_logits) and the student probabilities q are constants; the gradient
flows only through log q via the surrogate `-sum_k q_k rho_k log q_k`. With importance ratio
r = p / q:

- alpha ~ 0 (|alpha| < 1e-3): r clipped to [0, iw_clip], f = -log r, rho = log r - 1 (KL(q||p)).
- alpha ~ 1 (|alpha - 1| < 1e-3): f = r log r, rho = r (KL(p||q)).
- otherwise: r^alpha clipped to [0, iw_clip], f = r^alpha / (alpha (alpha - 1)),
  f_base = 1 / (alpha (alpha - 1)), rho = r^alpha / alpha + f_base.

Per position the divergence is `sum_k q_k (f_k - f_base)`. The returned tensors carry that value
while their gradient is the surrogate's (which, without clipping, is the divergence's own gradient).
Ratios are handled in log space so that tiny q cannot overflow.
"""

import math

import tensorflow as tf

from tf_todm.losses.rnnt import LossShapeError


def _divergence_and_surrogate(teacher_logits, student_logits, alpha, iw_clip):
    """Per-position (value, surrogate), both [...] (logits [..., V])."""
    log_p = tf.stop_gradient(tf.nn.log_softmax(teacher_logits, axis=-1))
    log_q = tf.nn.log_softmax(student_logits, axis=-1)
    log_q_const = tf.stop_gradient(log_q)
    q = tf.exp(log_q_const)
    log_r = log_p - log_q_const
    log_clip = math.log(iw_clip)
    if abs(alpha) < 1e-3:
        log_r = tf.minimum(log_r, log_clip)
        value = tf.reduce_sum(q * (-log_r), axis=-1)
        rho = log_r - 1.0
        weights = q * rho
    elif abs(alpha - 1.0) < 1e-3:
        p = tf.exp(log_p)
        value = tf.reduce_sum(p * log_r, axis=-1)  # = sum q r log r
        weights = p  # = q * rho with rho = r
    else:
        iw_alpha = tf.exp(tf.minimum(alpha * log_r, log_clip))
        f_base = 1.0 / (alpha * (alpha - 1.0))
        value = tf.reduce_sum(q * (iw_alpha * f_base - f_base), axis=-1)
        weights = q * (iw_alpha / alpha + f_base)
    surrogate = -tf.reduce_sum(weights * log_q, axis=-1)
    return value, surrogate


def _reduce_positions(per_position, mask):
    """[B, ...] -> [B]: mean over the (masked) non-batch positions."""
    rank = per_position.shape.rank
    if rank is None:
        raise LossShapeError("alpha_divergence: logits must have a known rank")
    if rank == 1:
        return per_position if mask is None else per_position * tf.cast(mask, per_position.dtype)
    axes = list(range(1, rank))
    if mask is None:
        return tf.reduce_mean(per_position, axis=axes)
    weight = tf.broadcast_to(tf.cast(mask, per_position.dtype), tf.shape(per_position))
    total = tf.reduce_sum(per_position * weight, axis=axes)
    return total / tf.maximum(tf.reduce_sum(weight, axis=axes), 1.0)


def _with_surrogate_gradient(value, surrogate):
    """Tensor equal to `value` whose gradient is the gradient of `surrogate`."""
    return tf.stop_gradient(value) + surrogate - tf.stop_gradient(surrogate)


def alpha_divergence(teacher_logits, student_logits, alpha, mask=None, iw_clip=5.0):
    """AlphaNet alpha-divergence D_alpha(p_teacher || q_student), averaged over positions.

    Args:
      teacher_logits: float32 [B, ..., V]; no gradient flows into it.
      student_logits: float32 [B, ..., V], same shape.
      alpha: python float. 1 gives KL(p||q), 0 gives KL(q||p) (mode seeking).
      mask: optional bool/float broadcastable to `logits[..., 0]`, e.g. [B, T, U+1] lattice
        validity or [B, T, S] for a pruned band; averaging runs over masked positions.
      iw_clip: upper clip of the importance weight (r^alpha, or r when alpha ~ 0).

    Returns:
      float32 [B]: the divergence value; its gradient w.r.t. student_logits is the AlphaNet
      surrogate gradient `-sum q rho grad(log q)` (averaged the same way).
    """
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    student_logits = tf.cast(student_logits, tf.float32)
    if teacher_logits.shape.rank != student_logits.shape.rank:
        raise LossShapeError(
            f"alpha_divergence: teacher_logits rank {teacher_logits.shape.rank} != "
            f"student_logits rank {student_logits.shape.rank}")
    value, surrogate = _divergence_and_surrogate(teacher_logits, student_logits, float(alpha),
                                                 float(iw_clip))
    return _with_surrogate_gradient(_reduce_positions(value, mask),
                                    _reduce_positions(surrogate, mask))


def adaptive_alpha_divergence(teacher_logits, student_logits, alpha_min=-1.0, alpha_max=1.0,
                              iw_clip=5.0, mask=None):
    """Per sample, the larger of D_{alpha_min} and D_{alpha_max} (AlphaNet's AdaptiveLossSoft).

    Returns:
      float32 [B]: value of the chosen divergence; gradient of the chosen surrogate.
    """
    left = alpha_divergence(teacher_logits, student_logits, alpha_min, mask=mask,
                            iw_clip=iw_clip)
    right = alpha_divergence(teacher_logits, student_logits, alpha_max, mask=mask,
                             iw_clip=iw_clip)
    return tf.where(tf.stop_gradient(left) > tf.stop_gradient(right), left, right)
