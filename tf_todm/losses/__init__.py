"""tf_todm.losses: transducer (exact and pruned), CTC, distillation and representation losses."""

from tf_todm.losses.ctc import ctc_loss
from tf_todm.losses.distillation import adaptive_alpha_divergence, alpha_divergence
from tf_todm.losses.pruned_rnnt import (
    get_prune_ranges,
    pruned_rnnt_loss,
    pruned_rnnt_loss_from_parts,
    rnnt_loss_simple,
)
from tf_todm.losses.representation import infonce_frame_loss, mse_representation_loss
from tf_todm.losses.rnnt import (
    LossShapeError,
    gather_log_probs,
    rnnt_loss,
    transducer_forward_backward,
    transducer_nll,
)

__all__ = [
    "adaptive_alpha_divergence",
    "alpha_divergence",
    "ctc_loss",
    "LossShapeError",
    "gather_log_probs",
    "infonce_frame_loss",
    "mse_representation_loss",
    "get_prune_ranges",
    "pruned_rnnt_loss",
    "pruned_rnnt_loss_from_parts",
    "rnnt_loss_simple",
    "rnnt_loss",
    "transducer_forward_backward",
    "transducer_nll",
]
