"""tf_todm.training."""
