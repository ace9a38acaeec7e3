"""tf_todm.optim: ScaledAdam (with median-window clipping) and the Eden learning-rate schedule."""

from tf_todm.optim.clipping import median_window_clip, scaled_grad_norm, update_norm_history
from tf_todm.optim.eden import Eden
from tf_todm.optim.scaled_adam import ScaledAdam

__all__ = ["Eden", "ScaledAdam", "median_window_clip", "scaled_grad_norm", "update_norm_history"]
