"""tf_todm.data."""
