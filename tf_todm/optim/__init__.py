"""tf_todm.optim: ScaledAdam (with median-window clipping), the Eden learning-rate schedule and its
decay over the end of a wall-clock budget."""

from tf_todm.optim.clipping import median_window_clip, scaled_grad_norm, update_norm_history
from tf_todm.optim.eden import Eden
from tf_todm.optim.scaled_adam import ScaledAdam
from tf_todm.optim.time_budget import TimeBudgetDecay, time_budget_lr_factor

__all__ = ["Eden", "ScaledAdam", "TimeBudgetDecay", "median_window_clip", "scaled_grad_norm",
           "time_budget_lr_factor", "update_norm_history"]
