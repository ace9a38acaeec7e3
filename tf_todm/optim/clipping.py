"""ScaledAdam's median-window gradient clipping, as pure TensorFlow functions.

The rule (icefall `ScaledAdam._get_clipping_scale`, re-derived from its description):

- The whole-model norm weights each non-scalar gradient by its tensor's RMS value and each scalar
  gradient by `scalar_lr_scale`, because those are the factors ScaledAdam multiplies the update by:
  `tot_norm = sqrt(sum_i ||g_i * rms_i||^2 + sum_scalars ||g||^2 * scalar_lr_scale^2)`.
- From step 1 on (step 0 is never clipped nor recorded) `tot_norm` is written into a ring buffer of
  `clipping_update_period` entries at slot `step % clipping_update_period`.
- The threshold is refreshed at every step that is a multiple of `clipping_update_period`, and at the
  "irregular" steps 10, 20 and 40 (those below the period): it is
  `clipping_scale * median(window)`, doubled at the irregular steps. The window is the whole buffer,
  or at irregular step s the s largest entries of the sorted buffer (= the s norms recorded so far,
  the rest of the buffer still being zeros). The median is the sorted window's element at index
  `(n // 4) * 2` (n = window size), as icefall computes it (the upper median for n = 100; below
  the median for small windows, e.g. the 3rd smallest of 7).
- Until the first refresh the threshold is +inf (no clipping). Gradients are scaled by
  `min(1, threshold / (tot_norm + 1e-20))`.

Difference from icefall, by design: a non-finite `tot_norm` is never recorded (ScaledAdam skips that
step entirely), so the median is always finite and the "Too many grads were not finite" error
cannot occur.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import tensorflow as tf

IRREGULAR_ESTIMATE_STEPS = (10, 20, 40)
_NORM_EPS = 1.0e-20


def scaled_grad_norm(
    grads: Sequence[tf.Tensor],
    param_rms: Sequence[Optional[tf.Tensor]],
    scalar_lr_scale: float,
) -> tf.Tensor:
    """Whole-model gradient norm, each tensor weighted by its parameter RMS.

    Args:
      grads: gradients, any shapes.
      param_rms: per gradient, a float scalar RMS of its parameter, or None for a scalar parameter
        (one element), which is weighted by `scalar_lr_scale` instead.
      scalar_lr_scale: weight of the scalar parameters' gradients.

    Returns:
      float32 scalar `tot_norm` (inf/nan if any gradient is non-finite).
    """
    if len(grads) != len(param_rms):
        raise ValueError(
            f"scaled_grad_norm: got {len(grads)} gradients but {len(param_rms)} param_rms entries"
        )
    sumsq = tf.constant(0.0, tf.float32)
    for grad, rms in zip(grads, param_rms):
        g = tf.cast(grad, tf.float32)
        if rms is None:
            sumsq += tf.reduce_sum(tf.square(g)) * (scalar_lr_scale**2)
        else:
            sumsq += tf.reduce_sum(tf.square(g * tf.cast(rms, tf.float32)))
    return tf.sqrt(sumsq)


def update_norm_history(
    norm_history: tf.Tensor,
    threshold: tf.Tensor,
    tot_norm: tf.Tensor,
    step: tf.Tensor,
    clipping_scale: float,
    clipping_update_period: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Records `tot_norm` and refreshes the clipping threshold when due (see module docstring).

    Args:
      norm_history: float32 `[clipping_update_period]` ring buffer (zeros initially).
      threshold: float32 scalar, current threshold (+inf until first set).
      tot_norm: float32 scalar, this step's `scaled_grad_norm` (must be finite).
      step: int scalar, 0-based optimizer step.
      clipping_scale: threshold = clipping_scale * median.
      clipping_update_period: buffer length / refresh period, in steps.

    Returns:
      `(new_norm_history, new_threshold)`.
    """
    period = int(clipping_update_period)
    step = tf.cast(step, tf.int64)
    record = step > 0
    slot = tf.math.floormod(step, period)
    recorded = tf.tensor_scatter_nd_update(
        norm_history, tf.reshape(slot, [1, 1]), tf.reshape(tf.cast(tot_norm, tf.float32), [1])
    )
    new_history = tf.where(record, recorded, norm_history)

    irregular = [s for s in IRREGULAR_ESTIMATE_STEPS if s < period]
    is_irregular = tf.constant(False)
    for s in irregular:
        is_irregular = tf.logical_or(is_irregular, tf.equal(step, s))
    refresh = tf.logical_and(record, tf.logical_or(tf.equal(slot, 0), is_irregular))

    window = tf.where(is_irregular, step, tf.constant(period, tf.int64))
    median_index = (period - window) + (window // 4) * 2
    median_index = tf.clip_by_value(median_index, 0, period - 1)
    median = tf.gather(tf.sort(new_history), median_index)
    candidate = clipping_scale * median * tf.where(is_irregular, 2.0, 1.0)
    new_threshold = tf.where(refresh, candidate, tf.cast(threshold, tf.float32))
    return new_history, new_threshold


def clipping_factor(threshold: tf.Tensor, tot_norm: tf.Tensor) -> tf.Tensor:
    """`min(1, threshold / (tot_norm + 1e-20))`; 1 while the threshold is +inf."""
    factor = tf.cast(threshold, tf.float32) / (tf.cast(tot_norm, tf.float32) + _NORM_EPS)
    return tf.minimum(1.0, factor)


class ClipResult(NamedTuple):
    """Output of `median_window_clip`."""

    grads: list  # clipped gradients (meaningless when not finite: the caller must skip the step)
    tot_norm: tf.Tensor  # float32 scalar, pre-clipping scaled norm
    factor: tf.Tensor  # float32 scalar in [0, 1] the gradients were multiplied by
    finite: tf.Tensor  # bool scalar, is tot_norm finite
    norm_history: tf.Tensor  # updated ring buffer (unchanged when not finite)
    threshold: tf.Tensor  # updated threshold (unchanged when not finite)


def median_window_clip(
    grads: Sequence[tf.Tensor],
    param_rms: Sequence[Optional[tf.Tensor]],
    norm_history: tf.Tensor,
    threshold: tf.Tensor,
    step: tf.Tensor,
    *,
    clipping_scale: Optional[float],
    clipping_update_period: int,
    scalar_lr_scale: float,
) -> ClipResult:
    """One step of median-window clipping over the whole gradient list (pure; no variables).

    With `clipping_scale=None` only the norm and the finiteness flag are computed (factor 1).
    When the norm is not finite nothing is recorded and the factor is 0.
    """
    tot_norm = scaled_grad_norm(grads, param_rms, scalar_lr_scale)
    finite = tf.math.is_finite(tot_norm)
    if clipping_scale is None:
        factor = tf.constant(1.0, tf.float32)
        new_history, new_threshold = norm_history, threshold
    else:
        safe_norm = tf.where(finite, tot_norm, 0.0)
        new_history, new_threshold = update_norm_history(
            norm_history, threshold, safe_norm, step, clipping_scale, clipping_update_period
        )
        new_history = tf.where(finite, new_history, norm_history)
        new_threshold = tf.where(finite, new_threshold, threshold)
        factor = tf.where(
            tf.cast(step, tf.int64) > 0, clipping_factor(new_threshold, safe_norm), 1.0
        )
    factor = tf.where(finite, factor, 0.0)
    clipped = [g * tf.cast(factor, g.dtype) for g in grads]
    return ClipResult(clipped, tot_norm, factor, finite, new_history, new_threshold)
