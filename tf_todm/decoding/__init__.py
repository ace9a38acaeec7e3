"""tf_todm.decoding."""
