"""tf_todm.optim."""
